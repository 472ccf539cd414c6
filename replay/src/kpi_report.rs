//! The alarm KPI report (`riskwatch report`): the figures of [`riskwatch_kpi::compute`] as
//! Markdown, or as one self-contained HTML page with the alerts-per-10-minutes chart drawn
//! inline (the replay plots' SVG, the flood and "manageable" lines as its thresholds).

use crate::plot::{self, Chart, RunMarks, ThresholdLine};
use crate::writeup::{markdown_html, STYLE};
use crate::{Trace, TracePoint};
use anyhow::Result;
use riskwatch_core::{Level, SensorId, SensorKind, SiteId, Timestamp};
use riskwatch_kpi::{Kpis, Source};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Plot size of the rate chart, pixels.
const PLOT_SIZE: (u32, u32) = (1200, 420);
/// Widest text bar, characters.
const BAR: f64 = 30.0;

/// A figure as reports and the console's page show it: whole numbers as they are, others with
/// two decimals; `–` for none.
pub fn figure(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn when(ms: i64) -> String {
    Timestamp(ms).to_rfc3339_cst()
}

fn bar(n: u64, most: u64) -> String {
    let len = if most == 0 { 0 } else { ((n as f64 / most as f64) * BAR).ceil() as usize };
    "█".repeat(len)
}

fn source(s: &Source) -> String {
    let name = s.name.replace('|', "\\|");
    if name == s.subject {
        format!("`{}`", s.subject)
    } else {
        format!("{name} `{}`", s.subject)
    }
}

/// The summary: period, counts and each KPI beside its benchmark.
fn summary(k: &Kpis, input: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Source: `{input}`\n");
    let _ = writeln!(
        s,
        "Period: {} – {} (Beijing time; {} – {} UTC), {} officer(s) on watch.\n",
        when(k.from_ms),
        when(k.to_ms),
        Timestamp(k.from_ms).to_rfc3339(),
        Timestamp(k.to_ms).to_rfc3339(),
        k.officers
    );
    let _ = writeln!(
        s,
        "Alerts: {} ({} raised, {} escalated); exercise events left out: {}.\n",
        k.alerts, k.raised, k.escalated, k.exercise_events
    );
    s += "## KPIs\n\n| KPI | 指标 | Figure | Benchmark | Meets |\n|---|---|---|---|---|\n";
    for v in &k.verdicts {
        let meets = match v.meets {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {} | {} | {meets} |", v.name_en, v.name_zh, figure(v.value), v.benchmark);
    }
    s
}

/// Everything after the rate chart.
fn details(k: &Kpis) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Peak: {} alert(s) in the 10 minutes from {}. Flood windows (≥ {} alerts in 10 min): {} of {} ({} % of the time).\n",
        k.peak_10min,
        k.peak_at_ms.map_or("–".into(), when),
        k.flood_threshold,
        k.flood_windows,
        k.windows,
        figure(Some(k.flood_percent))
    );
    let floods: Vec<_> = k.series.iter().filter(|w| w.alerts >= k.flood_threshold).collect();
    if !floods.is_empty() {
        s += "| Flood window from (Beijing time) | Alerts |\n|---|---|\n";
        for w in floods {
            let _ = writeln!(s, "| {} | {} |", when(w.start_ms), w.alerts);
        }
    }
    let _ = writeln!(
        s,
        "\n## Top {} bad actors\n\nThey made {} % of the alerts.\n",
        k.bad_actors.len(),
        figure(Some(k.top_share_percent))
    );
    if !k.bad_actors.is_empty() {
        s += "| # | Source | Rule | Site | Alerts | Share (%) | |\n|---|---|---|---|---|---|---|\n";
        let most = k.bad_actors.first().map_or(0, |b| b.alerts);
        for (i, b) in k.bad_actors.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | `{}` | `{}` | {} | {} | {} |",
                i + 1,
                source(&b.source),
                b.source.rule_id,
                b.source.site,
                b.alerts,
                figure(Some(b.share_percent)),
                bar(b.alerts, most)
            );
        }
    }
    let _ = writeln!(s, "\n## Chattering sources\n\nRaised 3 or more times within a minute: {}.\n", k.chattering.len());
    if !k.chattering.is_empty() {
        s += "| Source | Rule | Raises in the period | Most within a minute |\n|---|---|---|---|\n";
        for c in &k.chattering {
            let _ =
                writeln!(s, "| {} | `{}` | {} | {} |", source(&c.source), c.source.rule_id, c.raises, c.most_within);
        }
    }
    let _ =
        writeln!(s, "\n## Standing alerts\n\nOpen more than 24 h at the end of the period: {}.\n", k.standing.len());
    if !k.standing.is_empty() {
        s += "| Alert | Source | Level | Raised (Beijing time) | Open (h) |\n|---|---|---|---|---|\n";
        for a in &k.standing {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                a.alert_id,
                source(&a.source),
                a.level,
                when(a.raised_ms),
                figure(Some(a.open_hours))
            );
        }
    }
    let a = &k.ack;
    let secs = |v: Option<f64>| figure(v);
    let _ = writeln!(
        s,
        "\n## Time to acknowledge\n\nOf the alerts raised in the period, {} acknowledged, {} not. Median {} s, 90th percentile {} s, mean {} s, longest {} s.\n",
        a.acknowledged,
        a.unacknowledged,
        secs(a.median_s),
        secs(a.p90_s),
        secs(a.mean_s),
        secs(a.max_s)
    );
    s += "| Acknowledged within | Alerts | |\n|---|---|---|\n";
    let most = a.histogram.iter().map(|(_, n)| *n).max().unwrap_or(0);
    for (band, n) in &a.histogram {
        let _ = writeln!(s, "| {band} | {n} | {} |", bar(*n, most));
    }
    s
}

const RATE_HEADING: &str = "## Alerts per officer per 10 minutes";

/// The report as Markdown.
pub fn markdown(k: &Kpis, input: &str) -> String {
    format!("# Alarm KPIs 报警指标\n\n{}\n{RATE_HEADING}\n\n{}", summary(k, input), details(k))
}

/// The rate over the period as a chart: one point per window, alerts per officer, with the
/// flood and "manageable" levels as threshold lines.
pub fn rate_svg(k: &Kpis) -> Result<String> {
    let officers = f64::from(k.officers.max(1));
    let points = k
        .series
        .iter()
        .map(|w| {
            let v = w.alerts as f64 / officers;
            TracePoint { start: Timestamp(w.start_ms), min: v, max: v, last: v }
        })
        .collect();
    let trace = Trace {
        sensor: SensorId::new("alerts"),
        site: SiteId::new("all"),
        kind: SensorKind::Custom(Arc::from("alerts per officer")),
        unit: Arc::from(""),
        bucket: Duration::from_millis(u64::try_from((k.window_minutes * 60_000.0) as i64).unwrap_or(600_000).max(1)),
        points,
    };
    let flood = k.flood_threshold as f64 / officers;
    let thresholds = vec![
        ThresholdLine { label: format!("flood ≥ {}", figure(Some(flood))), value: flood, level: Some(Level::Red) },
        ThresholdLine { label: "manageable ≤ 1".into(), value: 1.0, level: Some(Level::Blue) },
    ];
    let chart = Chart {
        title: "Alerts per officer per 10 minutes".into(),
        subtitle: "每名值班员每 10 分钟预警数".into(),
        trace: &trace,
        span: (Timestamp(k.from_ms), Timestamp(k.to_ms)),
        runs: vec![RunMarks { run: "period", thresholds, episodes: Vec::new() }],
    };
    plot::svg(&chart, PLOT_SIZE)
}

/// The report as one HTML page (the chart inline).
pub fn html(k: &Kpis, input: &str) -> Result<String> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>riskwatch alarm KPIs</title>\n<style>{STYLE}</style></head><body>\n<h1>Alarm KPIs 报警指标</h1>\n"
    );
    s += &markdown_html(&summary(k, input));
    s += &markdown_html(RATE_HEADING);
    let _ = writeln!(s, "<div class=\"chart\">{}</div>", rate_svg(k)?);
    s += &markdown_html(&details(k));
    Ok(s + "</body></html>\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_kpi::{compute, Settings};

    #[test]
    fn figures_are_whole_or_two_decimals_and_the_html_carries_the_chart() {
        assert_eq!(figure(Some(216.0)), "216");
        assert_eq!(figure(Some(100.0 / 12.0)), "8.33");
        assert_eq!(figure(None), "–");
        let from = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let to = Timestamp::parse_rfc3339("2026-01-01T02:00:00Z").unwrap();
        let k = compute(&[], from, to, &Settings::default());
        let md = markdown(&k, "x.db");
        assert!(
            md.contains("| Alerts per officer per 10 min (mean) | 每名值班员每 10 分钟预警数（平均） | 0 |"),
            "{md}"
        );
        let html = html(&k, "x.db").unwrap();
        assert!(html.contains("<svg") && html.contains("flood ≥ 10"), "chart with its flood line");
        assert!(html.contains("<td>Alerts per officer per 10 min (mean)</td>"));
    }
}
