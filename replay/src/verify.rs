//! Verification of warnings against observed events (skill scores), as hydrological
//! forecasting systems (Delft-FEWS and others) score hindcasts: a 2×2 contingency of warnings
//! and events, probability of detection, false-alarm ratio, critical success index, lead time.
//!
//! Alerts are grouped into **episodes** (one per alert id: raised … cleared, hazard alerts
//! only). An observed event is **hit** when an episode of its subject (sensor id, or any sensor
//! of the site it names) reached the event's level or higher within `[start − lead window,
//! end]`; its lead time is the event's start minus the first time that episode reached the
//! level (negative = the warning came late). Otherwise it is a **miss**. An episode is a
//! **false alarm** when it is not associated with any observed event: neither a hit nor active
//! at any time within `[start − lead window, end]` of an event of its subject (an episode that
//! warned at too low a level counts against the event as a miss, not as a false alarm).

use anyhow::{bail, Context, Result};
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One alert from raise to clear.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// Alert id.
    pub alert_id: String,
    /// Rule.
    pub rule_id: String,
    /// Sensor (or site, for composites).
    pub subject: String,
    /// Site.
    pub site: String,
    /// Level changes in order: (time, level).
    #[serde(serialize_with = "crate::rfc3339::levels")]
    pub levels: Vec<(Timestamp, Level)>,
    /// Clear time, or the end of the run if still active.
    #[serde(serialize_with = "crate::rfc3339::one")]
    pub end: Timestamp,
    /// Whether it was still active at the end of the run.
    pub open_at_end: bool,
}

impl Episode {
    /// Raise time.
    pub fn start(&self) -> Timestamp {
        self.levels.first().map_or(self.end, |l| l.0)
    }

    /// Highest level reached.
    pub fn highest(&self) -> Level {
        self.levels.iter().map(|l| l.1).max().unwrap_or(Level::Blue)
    }

    /// First time the episode was at `level` or higher.
    pub fn first_at(&self, level: Level) -> Option<Timestamp> {
        self.levels.iter().find(|l| l.1 >= level).map(|l| l.0)
    }

    fn concerns(&self, subject: &str) -> bool {
        self.subject == subject || self.site == subject
    }
}

/// Hazard episodes of a run, in order of raising. `run_end` closes the ones still active.
pub fn episodes(events: &[AlertEvent], run_end: Timestamp) -> Vec<Episode> {
    let mut open: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out: Vec<Episode> = Vec::new();
    for e in events.iter().filter(|e| e.category == AlertCategory::Hazard) {
        match e.change {
            AlertChange::Raised => {
                open.insert(&e.alert_id, out.len());
                out.push(Episode {
                    alert_id: e.alert_id.clone(),
                    rule_id: e.rule_id.to_string(),
                    subject: e.subject.to_string(),
                    site: e.site.to_string(),
                    levels: vec![(e.ts, e.level)],
                    end: run_end,
                    open_at_end: true,
                });
            }
            AlertChange::Escalated | AlertChange::DeEscalated => {
                if let Some(&i) = open.get(e.alert_id.as_str()) {
                    out[i].levels.push((e.ts, e.level));
                }
            }
            AlertChange::Cleared => {
                if let Some(i) = open.remove(e.alert_id.as_str()) {
                    out[i].end = e.ts;
                    out[i].open_at_end = false;
                }
            }
            _ => {}
        }
    }
    out
}

/// An observed event (a recorded flood crossing, an incident).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Observed {
    /// Sensor id or site id.
    pub subject: String,
    /// Onset.
    #[serde(serialize_with = "crate::rfc3339::one")]
    pub start: Timestamp,
    /// End (= start for an instant event).
    #[serde(serialize_with = "crate::rfc3339::one")]
    pub end: Timestamp,
    /// The warning level the event deserved.
    pub level: Level,
    /// Free text.
    pub note: String,
}

/// Reads an observed-events CSV: header `subject,start,end,level,note` (`end` and `note` may
/// be empty or absent); times RFC 3339; levels `blue`/`yellow`/`orange`/`red` or 蓝/黄/橙/红.
/// Fields may be quoted (RFC 4180: commas, line breaks, `""`); lines starting with `#` are
/// comments; when `note` is the last column, unquoted commas after it stay in the note.
pub fn parse_observed(text: &str, name: &str) -> Result<Vec<Observed>> {
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).comment(Some(b'#')).from_reader(text.as_bytes());
    let mut records = rdr.records().filter(|r| r.as_ref().map_or(true, |r| r.iter().any(|f| !f.trim().is_empty())));
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, csv::Position::line);
        anyhow::anyhow!("{name}:{line}: {e}")
    };
    let header = records.next().with_context(|| format!("{name}: empty"))?.map_err(csv_error)?;
    let header: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(sc), Some(tc), Some(lc)) = (col("subject"), col("start"), col("level")) else {
        bail!("{name}: header must name at least subject, start and level (got {header:?})");
    };
    let (ec, nc) = (col("end"), col("note"));
    let note_last = nc == Some(header.len() - 1);
    let mut out = Vec::new();
    for rec in records {
        let rec = rec.map_err(csv_error)?;
        let at = format!("{name}:{}", rec.position().map_or(0, csv::Position::line));
        let get = |c: usize| rec.get(c).map_or("", str::trim);
        let subject = get(sc);
        if subject.is_empty() {
            bail!("{at}: subject is empty");
        }
        let start = Timestamp::parse_rfc3339(get(tc)).map_err(|e| anyhow::anyhow!("{at}: start: {e}"))?;
        let end = match ec.map(get).filter(|s| !s.is_empty()) {
            Some(s) => Timestamp::parse_rfc3339(s).map_err(|e| anyhow::anyhow!("{at}: end: {e}"))?,
            None => start,
        };
        if end < start {
            bail!("{at}: end is before start");
        }
        let level = parse_level(get(lc)).with_context(|| format!("{at}: level"))?;
        let note = match nc {
            Some(c) if note_last => rec.iter().skip(c).collect::<Vec<_>>().join(",").trim().to_string(),
            Some(c) => get(c).to_string(),
            None => String::new(),
        };
        out.push(Observed { subject: subject.into(), start, end, level, note });
    }
    Ok(out)
}

fn parse_level(s: &str) -> Result<Level> {
    Ok(match s {
        "blue" | "蓝" | "蓝色" => Level::Blue,
        "yellow" | "黄" | "黄色" => Level::Yellow,
        "orange" | "橙" | "橙色" => Level::Orange,
        "red" | "红" | "红色" => Level::Red,
        other => bail!("{other:?} is not blue, yellow, orange or red"),
    })
}

/// What became of one observed event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The event.
    pub observed: Observed,
    /// The episode that warned of it, if any.
    pub alert_id: Option<String>,
    /// When that episode reached the event's level.
    #[serde(serialize_with = "crate::rfc3339::opt")]
    pub warned_at: Option<Timestamp>,
    /// Event start minus warning time, hours (negative = late).
    pub lead_hours: Option<f64>,
}

/// Contingency counts and scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skill {
    /// Observed events warned of.
    pub hits: usize,
    /// Observed events not warned of (at their level).
    pub misses: usize,
    /// Episodes associated with no observed event.
    pub false_alarms: usize,
    /// H / (H + M).
    pub pod: Option<f64>,
    /// F / (H + F).
    pub far: Option<f64>,
    /// H / (H + M + F).
    pub csi: Option<f64>,
    /// Mean lead time over hits, hours.
    pub mean_lead_hours: Option<f64>,
    /// Median lead time over hits, hours.
    pub median_lead_hours: Option<f64>,
    /// Per observed event.
    pub verdicts: Vec<Verdict>,
    /// The false alarms' alert ids.
    pub false_alarm_ids: Vec<String>,
    /// Lead window used, hours.
    pub lead_window_hours: f64,
}

/// Scores `episodes` against `observed`.
pub fn score(episodes: &[Episode], observed: &[Observed], lead_window: Duration) -> Skill {
    let window = lead_window.as_millis() as i64;
    let mut associated = vec![false; episodes.len()];
    let mut verdicts = Vec::new();
    for o in observed {
        let from = o.start.millis() - window;
        let mut best: Option<(usize, Timestamp)> = None;
        for (i, ep) in episodes.iter().enumerate().filter(|(_, ep)| ep.concerns(&o.subject)) {
            // Active at some time within the event's window: associated with it.
            if ep.start().millis() <= o.end.millis() && ep.end.millis() >= from {
                associated[i] = true;
            }
            if let Some(t) = ep.first_at(o.level).filter(|t| t.millis() >= from && *t <= o.end) {
                if best.is_none_or(|(_, b)| t < b) {
                    best = Some((i, t));
                }
            }
        }
        verdicts.push(Verdict {
            observed: o.clone(),
            alert_id: best.map(|(i, _)| episodes[i].alert_id.clone()),
            warned_at: best.map(|(_, t)| t),
            lead_hours: best.map(|(_, t)| (o.start.millis() - t.millis()) as f64 / 3_600_000.0),
        });
    }
    let hits = verdicts.iter().filter(|v| v.alert_id.is_some()).count();
    let misses = verdicts.len() - hits;
    let false_alarm_ids: Vec<String> =
        episodes.iter().zip(&associated).filter(|(_, a)| !**a).map(|(e, _)| e.alert_id.clone()).collect();
    let f = false_alarm_ids.len();
    let ratio = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    let mut leads: Vec<f64> = verdicts.iter().filter_map(|v| v.lead_hours).collect();
    leads.sort_by(f64::total_cmp);
    let median = match leads.len() {
        0 => None,
        n if n % 2 == 1 => Some(leads[n / 2]),
        n => Some((leads[n / 2 - 1] + leads[n / 2]) / 2.0),
    };
    Skill {
        hits,
        misses,
        false_alarms: f,
        pod: ratio(hits, hits + misses),
        far: ratio(f, hits + f),
        csi: ratio(hits, hits + misses + f),
        mean_lead_hours: (!leads.is_empty()).then(|| leads.iter().sum::<f64>() / leads.len() as f64),
        median_lead_hours: median,
        verdicts,
        false_alarm_ids,
        lead_window_hours: lead_window.as_secs_f64() / 3600.0,
    }
}

/// A score for display: two decimals, or "–" when undefined.
pub fn show(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> Timestamp {
        Timestamp(1_594_051_200_000 + h * 3_600_000)
    }

    fn ep(id: &str, subject: &str, levels: &[(i64, Level)], end: i64) -> Episode {
        Episode {
            alert_id: id.into(),
            rule_id: "wl".into(),
            subject: subject.into(),
            site: subject.trim_end_matches("-wl").into(),
            levels: levels.iter().map(|(h, l)| (t(*h), *l)).collect(),
            end: t(end),
            open_at_end: false,
        }
    }

    fn obs(subject: &str, start: i64, level: Level) -> Observed {
        Observed { subject: subject.into(), start: t(start), end: t(start), level, note: String::new() }
    }

    #[test]
    fn hits_misses_false_alarms_and_lead_times() {
        let eps = [
            ep("a", "hankou-wl", &[(10, Level::Yellow), (20, Level::Orange)], 60),
            ep("b", "jiujiang-wl", &[(5, Level::Yellow)], 40),
            ep("c", "nanjing-wl", &[(30, Level::Yellow)], 70), // too low for its event: a miss, not a false alarm
            ep("d", "datang-wl", &[(3, Level::Blue)], 8),      // no event: false alarm
            ep("e", "wuhu-wl", &[(0, Level::Red)], 2),         // late for nothing: false alarm
        ];
        let observed = [
            obs("hankou", 32, Level::Orange),      // by site: lead 12 h
            obs("jiujiang-wl", 50, Level::Yellow), // lead 45 h
            obs("nanjing-wl", 40, Level::Orange),  // miss
            obs("hankou-wl", 200, Level::Yellow),  // nothing near: miss
        ];
        let s = score(&eps, &observed, Duration::from_secs(48 * 3600));
        assert_eq!((s.hits, s.misses, s.false_alarms), (2, 2, 2));
        assert_eq!(s.pod, Some(0.5));
        assert_eq!(s.far, Some(0.5));
        assert_eq!(s.csi, Some(2.0 / 6.0));
        assert_eq!(s.verdicts[0].lead_hours, Some(12.0));
        assert_eq!(s.verdicts[1].lead_hours, Some(45.0));
        assert_eq!(s.mean_lead_hours, Some(28.5));
        assert_eq!(s.false_alarm_ids, ["d", "e"]);
    }

    #[test]
    fn a_warning_before_the_window_or_after_the_end_does_not_count() {
        let eps = [ep("a", "x-wl", &[(0, Level::Red)], 100)];
        let early = score(&eps, &[obs("x-wl", 60, Level::Red)], Duration::from_secs(48 * 3600));
        assert_eq!(early.hits, 0, "reached red 60 h before the event, window 48 h");
        assert_eq!(early.false_alarms, 0, "but it was active around the event: not a false alarm");
        let late = score(&[ep("b", "x-wl", &[(70, Level::Red)], 90)], &[obs("x-wl", 60, Level::Red)], Duration::ZERO);
        assert_eq!(late.hits, 0);
        assert_eq!(late.pod, Some(0.0));
        let none = score(&[], &[], Duration::ZERO);
        assert_eq!((none.pod, none.far, none.csi, none.mean_lead_hours), (None, None, None, None));
    }

    #[test]
    fn observed_files_parse_with_errors_naming_the_line() {
        let ok = "subject,start,end,level,note\nhankou,2020-07-12T06:00:00+08:00,,橙,piping, levee km 12\n";
        let o = parse_observed(ok, "obs.csv").unwrap();
        assert_eq!(o[0].level, Level::Orange);
        assert_eq!(o[0].end, o[0].start);
        assert_eq!(o[0].note, "piping, levee km 12");
        let bad = "subject,start,level\nhankou,2020-07-12,orange\n";
        let e = parse_observed(bad, "obs.csv").unwrap_err().to_string();
        assert!(e.contains("obs.csv:2") && e.contains("start"), "{e}");
        let e = parse_observed("subject,start,level\nx,2020-07-12T00:00:00Z,purple\n", "o").unwrap_err();
        assert!(format!("{e:#}").contains("purple"), "{e:#}");
    }

    #[test]
    fn observed_notes_may_be_quoted_with_commas_line_breaks_and_quotes() {
        // As an incident log exported from Excel: a byte-order mark, a comment, quoted notes.
        let text = "\u{feff}subject,start,end,level,note\n\
                    # 2020 season\n\
                    hankou,2020-07-12T06:00:00+08:00,,orange,\"piping, levee km 12\"\n\
                    jiujiang,2020-07-13T06:00:00+08:00,,yellow,\"seepage\nat the \"\"Yongan\"\" dyke\"\n\
                    \"nanjing-wl\",2020-07-15T12:00:00+08:00,,red,\n\
                    datang,2020-07-16,,red,\n";
        let e = parse_observed(text, "obs.csv").unwrap_err().to_string();
        assert!(e.contains("obs.csv:7: start"), "the line after the multi-line note is line 7: {e}");
        let o = parse_observed(text.rsplit_once("datang").unwrap().0, "obs.csv").unwrap();
        let notes: Vec<(&str, &str)> = o.iter().map(|o| (o.subject.as_str(), o.note.as_str())).collect();
        assert_eq!(
            notes,
            [("hankou", "piping, levee km 12"), ("jiujiang", "seepage\nat the \"Yongan\" dyke"), ("nanjing-wl", "")]
        );
        assert_eq!(o[2].level, Level::Red);
    }
}
