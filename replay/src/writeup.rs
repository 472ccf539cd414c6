//! The replay report: `report.md`, `report.html` (self-contained apart from the plot files it
//! shows), `report.json` (summary, skill scores, comparison), `events.json` (every alert event
//! of the baseline run, as on the wire) and a plot per station under `plots/` as SVG (baseline
//! and what-if on the same chart). Stations are shown by name (Chinese by default) with the
//! id beside it.

use crate::diff::Comparison;
use crate::names::{Lang, Names};
use crate::plot::{self, level_colour, Chart, RunMarks, ThresholdLine};
use crate::verify::{self, Episode, Skill};
use crate::whatif::Applied;
use crate::Outcome;
use anyhow::{Context, Result};
use riskwatch_core::{AlertChange, AlertEvent, Level, Registry, Sensor, Timestamp};
use riskwatch_rules::{Feature, Measure, RuleSet};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The reports' style sheet (HTML).
pub const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f4f4f4}.lv{color:#fff;font-weight:bold}img{max-width:100%;border:1px solid #ddd}small code{color:#666}";

/// Default plot size in pixels.
pub const PLOT_SIZE: (u32, u32) = (1200, 480);

/// One run to report.
pub struct RunReport<'a> {
    /// "baseline" or "what-if".
    pub name: &'a str,
    /// The rules it used (file name).
    pub rules: &'a str,
    /// The rules themselves (for the threshold lines of the plots).
    pub rule_set: &'a RuleSet,
    /// The registry it used.
    pub registry: &'a Registry,
    /// Attribute overrides applied.
    pub applied: &'a [Applied],
    /// What it produced.
    pub outcome: &'a Outcome,
    /// Skill scores, if observed events were given.
    pub skill: Option<&'a Skill>,
}

/// Everything the report shows.
pub struct ReportInput<'a> {
    /// The input, as given.
    pub input: &'a str,
    /// The baseline run, then the what-if run if any.
    pub runs: Vec<RunReport<'a>>,
    /// Baseline vs what-if.
    pub comparison: Option<&'a Comparison>,
    /// Plot size.
    pub plot_size: (u32, u32),
    /// Which registry names to show.
    pub lang: Lang,
}

/// The files written.
#[derive(Debug)]
pub struct ReportFiles {
    /// report.md
    pub markdown: PathBuf,
    /// report.html
    pub html: PathBuf,
    /// events.json
    pub events: PathBuf,
    /// Plot files (SVG).
    pub plots: Vec<PathBuf>,
}

/// The threshold lines of a sensor's value bands under `rules` (the value conditions of
/// every rule that applies to it, resolved against its attributes), coloured by level.
pub fn thresholds_for(rules: &RuleSet, sensor: &Sensor) -> Vec<ThresholdLine> {
    let mut out: Vec<ThresholdLine> = Vec::new();
    for rule in rules.rules.iter().filter(|r| r.spec.measure == Measure::Value && r.spec.applies_to.matches(sensor)) {
        for (level, conds) in Level::ALL.iter().zip(&rule.conditions) {
            for c in conds.iter().filter(|c| c.feature == Feature::Value) {
                if let Ok(value) = c.threshold.resolve(&sensor.attributes) {
                    if !out.iter().any(|t| t.value == value && t.level == Some(*level)) {
                        out.push(ThresholdLine {
                            label: format!("{} {value:.2}", level.as_str()),
                            value,
                            level: Some(*level),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Writes the report into `dir` (created if needed).
pub fn write(dir: &Path, input: &ReportInput<'_>) -> Result<ReportFiles> {
    std::fs::create_dir_all(dir.join("plots")).with_context(|| format!("creating {}", dir.display()))?;
    let base = input.runs.first().context("a report needs at least one run")?;
    let names = Names::new(base.registry, input.lang);
    let episodes: Vec<Vec<Episode>> = input
        .runs
        .iter()
        .map(|r| verify::episodes(&r.outcome.events, r.outcome.span.map_or(Timestamp(0), |s| s.1)))
        .collect();
    let mut plots = Vec::new();
    let mut plot_refs: Vec<(String, String)> = Vec::new();
    let span = input.runs.iter().filter_map(|r| r.outcome.span).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    for trace in &base.outcome.traces {
        let (Some(span), Some(sensor)) = (span, base.registry.sensor(trace.sensor.as_str())) else { continue };
        let id = trace.sensor.as_str();
        let runs: Vec<RunMarks<'_>> = input
            .runs
            .iter()
            .zip(&episodes)
            .map(|(run, eps)| RunMarks {
                run: run.name,
                thresholds: run.registry.sensor(id).map_or(Vec::new(), |s| thresholds_for(run.rule_set, s)),
                episodes: eps.iter().filter(|e| e.subject == id).collect(),
            })
            .collect();
        // "汉口" over "hankou-wl · water_level"; an unnamed station's id is the title.
        let name = names.of(id);
        let (title, mut subtitle) = if name.is_empty() {
            (id.to_string(), sensor.kind.as_str().to_string())
        } else {
            (name, format!("{id} · {}", sensor.kind.as_str()))
        };
        if runs.len() > 1 {
            subtitle += " · baseline vs what-if";
        }
        let chart = Chart { title, subtitle, trace, span, runs };
        let path = dir.join("plots").join(format!("{id}.svg"));
        std::fs::write(&path, plot::svg(&chart, input.plot_size)?)
            .with_context(|| format!("writing {}", path.display()))?;
        plot_refs.push((id.to_string(), chart.title));
        plots.push(path);
    }
    let events = dir.join("events.json");
    std::fs::write(&events, serde_json::to_vec_pretty(&base.outcome.events)?)?;
    if let Some(w) = input.runs.get(1) {
        std::fs::write(dir.join("events.what-if.json"), serde_json::to_vec_pretty(&w.outcome.events)?)?;
    }
    let summary = json!({
        "input": input.input,
        "runs": input.runs.iter().map(|r| json!({
            "name": r.name, "rules": r.rules, "overrides": r.applied,
            "readings": r.outcome.readings, "rejected": r.outcome.rejected.len(),
            "span": r.outcome.span.map(|(a, b)| [a.to_rfc3339(), b.to_rfc3339()]),
            "events": r.outcome.events.len(), "skill": r.skill,
        })).collect::<Vec<_>>(),
        "comparison": input.comparison,
    });
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&summary)?)?;
    let markdown = dir.join("report.md");
    std::fs::write(&markdown, markdown_text(input, &names, &plot_refs))?;
    let html = dir.join("report.html");
    std::fs::write(&html, html_text(input, &names, &plot_refs))?;
    Ok(ReportFiles { markdown, html, events, plots })
}

fn markdown_text(input: &ReportInput<'_>, names: &Names<'_>, plots: &[(String, String)]) -> String {
    let mut s = String::from("# Replay report\n\n");
    let _ = writeln!(s, "Input: `{}`\n", input.input);
    s += "| Run | Rules | Overrides | Readings | Rejected | Period (Beijing time) | Alert events |\n|---|---|---|---|---|---|---|\n";
    for r in &input.runs {
        let span =
            r.outcome.span.map_or("–".into(), |(a, b)| format!("{} – {}", a.to_rfc3339_cst(), b.to_rfc3339_cst()));
        let over: Vec<String> = r
            .applied
            .iter()
            .map(|a| format!("{} {} {:.2} → {:.2}", names.markdown(&a.sensor), a.attribute, a.before, a.after))
            .collect();
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} | {span} | {} |",
            r.name,
            r.rules,
            if over.is_empty() { "–".into() } else { over.join("; ") },
            r.outcome.readings,
            r.outcome.rejected.len(),
            r.outcome.events.len()
        );
    }
    if input.runs.iter().any(|r| r.skill.is_some()) {
        s += "\n## Skill scores\n\n| Run | Hits | Misses | False alarms | POD | FAR | CSI | Mean lead (h) | Median lead (h) |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &input.runs {
            if let Some(k) = r.skill {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    k.hits,
                    k.misses,
                    k.false_alarms,
                    verify::show(k.pod),
                    verify::show(k.far),
                    verify::show(k.csi),
                    verify::show(k.mean_lead_hours),
                    verify::show(k.median_lead_hours)
                );
            }
        }
        for r in &input.runs {
            let Some(k) = r.skill else { continue };
            let _ = writeln!(s, "\n{} — observed events (lead window {:.0} h):\n", r.name, k.lead_window_hours);
            s += "| Station | Observed start | Level | Warned at | Lead (h) | Alert |\n|---|---|---|---|---|---|\n";
            for v in &k.verdicts {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    names.markdown(&v.observed.subject),
                    v.observed.start.to_rfc3339_cst(),
                    v.observed.level.as_str(),
                    v.warned_at.map_or("missed".into(), |t| t.to_rfc3339_cst()),
                    verify::show(v.lead_hours),
                    v.alert_id.as_deref().unwrap_or("–")
                );
            }
            if !k.false_alarm_ids.is_empty() {
                let _ = writeln!(s, "\nFalse alarms: {}", k.false_alarm_ids.join(", "));
            }
        }
    }
    if let Some(c) = input.comparison {
        s += "\n## Baseline vs what-if\n\n";
        let _ = writeln!(
            s,
            "Alerts gained: {}; lost: {}; changed: {}.\n",
            c.gained.len(),
            c.lost.len(),
            c.changed().count()
        );
        s += "| | Station | Rule | Raised | Highest level |\n|---|---|---|---|---|\n";
        for (what, list) in [("gained", &c.gained), ("lost", &c.lost)] {
            for e in list.iter() {
                let _ = writeln!(
                    s,
                    "| {what} | {} | {} | {} | {} |",
                    names.markdown(&e.subject),
                    e.rule_id,
                    e.start().to_rfc3339_cst(),
                    e.highest().as_str()
                );
            }
        }
        s += "\n| Station | Level | Baseline first at | What-if first at | What-if earlier by (h) |\n|---|---|---|---|---|\n";
        for m in c.changed() {
            for sh in &m.shifts {
                let at = |t: Option<Timestamp>| t.map_or("never".into(), |t| t.to_rfc3339_cst());
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    names.markdown(&m.subject),
                    sh.level.as_str(),
                    at(sh.baseline),
                    at(sh.what_if),
                    verify::show(sh.earlier_by_hours)
                );
            }
        }
    }
    for r in &input.runs {
        let _ = writeln!(s, "\n## Alert timeline — {}\n", r.name);
        s += "| Time (Beijing) | UTC | Level | Change | Station | 信息 | Message |\n|---|---|---|---|---|---|---|\n";
        for e in r.outcome.events.iter().filter(|e| e.change != AlertChange::Reminder) {
            s += &timeline_row(e, names);
        }
        let reminders = r.outcome.events.iter().filter(|e| e.change == AlertChange::Reminder).count();
        if reminders > 0 {
            let _ = writeln!(
                s,
                "\n{reminders} reminder(s) of unacknowledged alerts are not listed (they are in the events JSON)."
            );
        }
    }
    if !plots.is_empty() {
        s += "\n## Plots\n\n";
        for (sensor, name) in plots {
            let _ = writeln!(s, "![{name} {sensor}](plots/{sensor}.svg)\n");
        }
    }
    s
}

fn timeline_row(e: &AlertEvent, names: &Names<'_>) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        e.ts.to_rfc3339_cst(),
        e.ts.to_rfc3339(),
        e.level.as_str(),
        e.change.as_str(),
        names.markdown(e.subject.as_str()),
        e.message_zh.replace('|', "\\|"),
        e.message_en.replace('|', "\\|")
    )
}

fn html_text(input: &ReportInput<'_>, names: &Names<'_>, plots: &[(String, String)]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>riskwatch replay report</title>\n<style>{STYLE}</style></head><body>\n<h1>Replay report 回放报告</h1>\n"
    );
    let _ = writeln!(s, "<p>Input: <code>{}</code></p>", esc(input.input));
    // The Markdown tables, converted row by row (same content, one source of truth).
    let md = markdown_text(input, names, &[]);
    let body: Vec<&str> = md.lines().skip(2).filter(|l| !l.starts_with("Input:")).collect();
    s += &markdown_html(&body.join("\n"));
    if !plots.is_empty() {
        s += "<h2>Plots</h2>\n";
        for (sensor, name) in plots {
            let _ = writeln!(s, "<p><img src=\"plots/{}.svg\" alt=\"{} {}\"></p>", esc(sensor), esc(name), esc(sensor));
        }
    }
    s + "</body></html>\n"
}

/// Markdown as the reports write it — `## ` headings, pipe tables, paragraphs — as HTML; a
/// table cell that is a level's name is shown on the level's colour, code spans as small code.
pub fn markdown_html(md: &str) -> String {
    let mut s = String::new();
    let mut in_table = false;
    for line in md.lines() {
        if let Some(cells) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) {
            if cells.starts_with("---") {
                continue;
            }
            if !in_table {
                s += "<table>\n";
                in_table = true;
            }
            s += "<tr>";
            for c in cells.split(" | ") {
                let c = c.trim().replace("\\|", "|");
                match Level::ALL.iter().find(|l| l.as_str() == c) {
                    Some(l) => {
                        let _ = write!(s, "<td class=\"lv\" style=\"background:{}\">{c}</td>", hex(*l));
                    }
                    None => {
                        let _ = write!(s, "<td>{}</td>", code_spans(&esc(&c)));
                    }
                }
            }
            s += "</tr>\n";
            continue;
        }
        if in_table {
            s += "</table>\n";
            in_table = false;
        }
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(s, "<h2>{}</h2>", esc(h));
        } else if !line.trim().is_empty() {
            let _ = writeln!(s, "<p>{}</p>", esc(line));
        }
    }
    if in_table {
        s += "</table>\n";
    }
    s
}

/// Text escaped for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown code spans (ids, file names) as small code: "汉口 `hankou-wl`" → "汉口
/// <small><code>hankou-wl</code></small>".
fn code_spans(cell: &str) -> String {
    let mut out = String::new();
    for (i, part) in cell.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<small><code>{part}</code></small>");
        } else {
            out += part;
        }
    }
    out
}

fn hex(l: Level) -> String {
    let c = level_colour(l);
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}
