//! Scenario files: which sensors, which physics, which failures, and which alerts to expect.
//!
//! A scenario is a TOML file (see `docs/simulators.md` and `scenarios/`). It names or embeds the
//! registry and rules it runs with, describes groups of simulated sensors (a physics model and
//! its parameters, per-sensor overrides, the gateway that publishes them), failure modes to
//! inject, and the alerts the pipeline must raise (`[[expect]]`) and must not raise
//! (`[[forbid]]`). [`crate::plan::compile`] turns a scenario and a seed into the ordered,
//! deterministic list of messages to publish; [`Scenario::check`] judges the alerts a run
//! produced. Nothing here does I/O except [`Scenario::load`] and [`Scenario::registry_text`] /
//! [`Scenario::rules_text`], which read the named files.

use riskwatch_core::{Level, Timestamp};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A parsed scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, e.g. `yangtze-2020`.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Where the numbers come from; a scenario shaped on published points says "reconstructed".
    #[serde(default)]
    pub provenance: String,
    /// Event time of the start, RFC 3339 with offset; absent: the time the run starts.
    #[serde(default)]
    pub start: Option<String>,
    /// Event-time length of the scenario (`"14d"`, `"90m"`, …); series are cut there.
    pub duration: String,
    /// Suggested `--speed` (event seconds per wall second). Default 1.
    #[serde(default = "one")]
    pub speed: f64,
    /// Registry file, relative to the scenario file.
    #[serde(default)]
    pub registry: Option<String>,
    /// Registry embedded as TOML text (instead of `registry`).
    #[serde(default)]
    pub registry_toml: Option<String>,
    /// Rules file, relative to the scenario file.
    #[serde(default)]
    pub rules: Option<String>,
    /// Rules embedded as TOML text (instead of `rules`).
    #[serde(default)]
    pub rules_toml: Option<String>,
    /// Sensor groups.
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
    /// Failure modes to inject.
    #[serde(default, rename = "failure")]
    pub failures: Vec<FailureSpec>,
    /// Alerts the run must raise.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Alerts the run must not raise.
    #[serde(default)]
    pub forbid: Vec<Forbid>,
    /// Directory of the file (for relative paths); not part of the file.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// The physics a group runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// [`crate::flood::RiverFloodParams`]: hydrograph and tide; kind `water_level`, unit `m`.
    Flood,
    /// [`crate::rain::RainStormParams`]: interval rain amounts; kind `rainfall`, unit `mm`.
    Rain,
    /// [`crate::gas::GasLeakParams`]: a plume reaching detectors; kind `gas_combustible`, `%LEL`.
    GasLeak,
    /// [`crate::gnss::SlopeCreepParams`]: creep → acceleration → failure; `gnss_displacement`, `mm`.
    SlopeCreep,
    /// [`crate::gnss::SubsidenceParams`]: trend plus seasonal term; `gnss_displacement`, `mm`.
    Subsidence,
    /// [`crate::seismic::SeismicStationParams`]: noise plus P and S arrivals; `seismic_acceleration`, `m/s2`.
    Seismic,
}

impl Model {
    /// Default kind and unit of the model's sensors.
    pub fn kind_unit(self) -> (&'static str, &'static str) {
        match self {
            Model::Flood => ("water_level", "m"),
            Model::Rain => ("rainfall", "mm"),
            Model::GasLeak => ("gas_combustible", "%LEL"),
            Model::SlopeCreep | Model::Subsidence => ("gnss_displacement", "mm"),
            Model::Seismic => ("seismic_acceleration", "m/s2"),
        }
    }

    /// Decimal places the model's gateway reports by default: cm for water level, 0.1 mm of
    /// rain, 0.1 %LEL, 0.1 mm of GNSS displacement, 0.01 mm/s² of acceleration.
    pub fn default_decimals(self) -> u32 {
        match self {
            Model::Flood => 2,
            Model::Rain | Model::GasLeak | Model::SlopeCreep | Model::Subsidence => 1,
            Model::Seismic => 5,
        }
    }

    /// Whether readings are single numbers (so `--rate` applies).
    pub fn is_scalar(self) -> bool {
        matches!(self, Model::Flood | Model::Rain | Model::GasLeak)
    }
}

/// A group of sensors sharing one physics model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group id (failures can name it).
    pub id: String,
    /// Physics model.
    pub model: Model,
    /// Site of the group's sensors (a sensor may override it).
    pub site: String,
    /// Kind sent (default: the model's).
    #[serde(default)]
    pub kind: Option<String>,
    /// Unit sent (default: the model's).
    #[serde(default)]
    pub unit: Option<String>,
    /// Gateway (MQTT client) publishing the group; default: the site.
    #[serde(default)]
    pub gateway: Option<String>,
    /// `true` (default): one site batch per gateway and tick (`readings/{site}`); `false`: one
    /// message per reading on the sensor topic.
    #[serde(default = "yes")]
    pub batch: bool,
    /// Decimal places of the values sent (default: the model's, see [`Model::default_decimals`]).
    #[serde(default)]
    pub decimals: Option<u32>,
    /// Event time after the scenario start at which the group's series begin (`"6h"`).
    #[serde(default)]
    pub offset: Option<String>,
    /// Model parameters (the fields of the model's parameter struct).
    #[serde(default)]
    pub params: toml::Table,
    /// The sensors.
    pub sensors: Vec<SensorEntry>,
}

/// One sensor of a group.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorEntry {
    /// Sensor id (as registered).
    pub id: String,
    /// Site, if not the group's.
    #[serde(default)]
    pub site: Option<String>,
    /// Parameters overriding the group's for this sensor (e.g. a detector's distance).
    #[serde(default)]
    pub params: toml::Table,
}

/// A failure mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// The value freezes at the last value before `from`.
    Stuck,
    /// Readings are lost (each with `probability`, default 1: a gap).
    Dropout,
    /// `magnitude` is added to readings (each with `probability`, default 1).
    Spikes,
    /// Timestamps are off by `skew` (the gateway's clock is wrong); sending time is not.
    ClockSkew,
    /// Messages are delivered twice (each with `probability`, default 1), as after a QoS 1 retry.
    Duplicates,
    /// A reading is held back and sent after the sensor's next one (with `probability`, default 0.2).
    OutOfOrder,
    /// The gateway is offline from `from` to `to`, buffers its readings, and sends them oldest
    /// first, with their original timestamps, when it reconnects at `to`, before live data.
    Offline,
}

/// A failure mode applied to some sensors (or the gateways publishing them) over a window of
/// event time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSpec {
    /// What goes wrong.
    pub mode: FailureMode,
    /// Sensors affected (ids as in the file, before scaling).
    #[serde(default)]
    pub sensors: Vec<String>,
    /// A whole group affected.
    #[serde(default)]
    pub group: Option<String>,
    /// Start of the window, event time after the scenario start (default: the start).
    #[serde(default)]
    pub from: Option<String>,
    /// End of the window (default: the end).
    #[serde(default)]
    pub to: Option<String>,
    /// Chance per reading (dropout, spikes, duplicates, out_of_order).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Added to the value (spikes), in the sensor's unit. Default 10.
    #[serde(default)]
    pub magnitude: Option<f64>,
    /// Clock offset (clock_skew), e.g. `"+2h"`, `"-90s"`.
    #[serde(default)]
    pub skew: Option<String>,
}

/// An alert the run must raise: `rule` for `subject` enters `level` (raised or escalated to it)
/// at event time `at` ± `tolerance`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Rule, composite or `dq.*` check id.
    pub rule: String,
    /// Sensor id, or site / composite id for site alerts.
    pub subject: String,
    /// Level entered.
    pub level: Level,
    /// Event time: an offset from the start (`"62h"`) or RFC 3339.
    pub at: String,
    /// Allowed distance from `at`. Default `"1h"`.
    #[serde(default)]
    pub tolerance: Option<String>,
}

/// Alerts that must not happen: no event of `rule` (any, if absent) for `subject` (any, if
/// absent) at `level` or above.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forbid {
    /// Rule id; absent: every rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Subject; absent: every subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Lowest forbidden level. Default blue (any alert).
    #[serde(default = "blue")]
    pub level: Level,
}

fn blue() -> Level {
    Level::Blue
}

/// An alert event as a run recorded it (e.g. a row of the SQLite store's `alert_events`).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedAlert {
    /// Rule id.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// `raised`, `escalated`, `de_escalated`, `cleared`, …
    pub change: String,
    /// Level after the event.
    pub level: Level,
    /// Event time, ms.
    pub ts: i64,
}

impl Scenario {
    /// Parses scenario TOML; `base_dir` resolves the registry and rules paths.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.base_dir = base_dir.to_path_buf();
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = self.duration_ms() {
            errors.push(format!("duration: {e}"));
        }
        if let Some(Err(e)) = self.start.as_deref().map(Timestamp::parse_rfc3339) {
            errors.push(format!("start: {e}"));
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            errors.push("speed: must be a positive number".into());
        }
        if self.registry.is_some() == self.registry_toml.is_some() {
            errors.push("give exactly one of `registry` (a file) and `registry_toml` (embedded)".into());
        }
        if self.rules.is_some() == self.rules_toml.is_some() {
            errors.push("give exactly one of `rules` (a file) and `rules_toml` (embedded)".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for g in &self.groups {
            if g.sensors.is_empty() {
                errors.push(format!("group {}: no sensors", g.id));
            }
            if let Some(Err(e)) = g.offset.as_deref().map(parse_offset_ms) {
                errors.push(format!("group {}: offset: {e}", g.id));
            }
            for s in &g.sensors {
                if !ids.insert(s.id.clone()) {
                    errors.push(format!("sensor {} appears twice", s.id));
                }
                if let Err(e) = crate::plan::check_params(g.model, &g.params, &s.params) {
                    errors.push(format!("group {} sensor {}: {e}", g.id, s.id));
                }
            }
        }
        for (i, f) in self.failures.iter().enumerate() {
            for s in &f.sensors {
                if !ids.contains(s) {
                    errors.push(format!("failure {i}: unknown sensor {s}"));
                }
            }
            if let Some(g) = &f.group {
                if !self.groups.iter().any(|x| &x.id == g) {
                    errors.push(format!("failure {i}: unknown group {g}"));
                }
            }
            if f.sensors.is_empty() && f.group.is_none() {
                errors.push(format!("failure {i}: name `sensors` or `group`"));
            }
            for (what, v) in [("from", &f.from), ("to", &f.to), ("skew", &f.skew)] {
                if let Some(Err(e)) = v.as_deref().map(parse_offset_ms) {
                    errors.push(format!("failure {i}: {what}: {e}"));
                }
            }
            if f.mode == FailureMode::ClockSkew && f.skew.is_none() {
                errors.push(format!("failure {i}: clock_skew needs `skew`"));
            }
            if f.mode == FailureMode::Offline && (f.from.is_none() || f.to.is_none()) {
                errors.push(format!("failure {i}: offline needs `from` and `to`"));
            }
            if f.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                errors.push(format!("failure {i}: probability must be within 0..1"));
            }
        }
        for (i, e) in self.expect.iter().enumerate() {
            if let Err(err) = self.resolve_at(&e.at, 0) {
                errors.push(format!("expect {i}: at: {err}"));
            }
            if let Some(Err(err)) = e.tolerance.as_deref().map(parse_offset_ms) {
                errors.push(format!("expect {i}: tolerance: {err}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Event-time length, ms.
    pub fn duration_ms(&self) -> Result<i64, String> {
        parse_offset_ms(&self.duration)
    }

    /// The start from the file, if it gives one.
    pub fn fixed_start(&self) -> Option<Timestamp> {
        self.start.as_deref().and_then(|s| Timestamp::parse_rfc3339(s).ok())
    }

    /// The registry TOML (embedded or read from the named file).
    pub fn registry_text(&self) -> Result<String, String> {
        self.text(&self.registry, &self.registry_toml)
    }

    /// The rules TOML (embedded or read from the named file).
    pub fn rules_text(&self) -> Result<String, String> {
        self.text(&self.rules, &self.rules_toml)
    }

    fn text(&self, file: &Option<String>, inline: &Option<String>) -> Result<String, String> {
        match (file, inline) {
            (_, Some(t)) => Ok(t.clone()),
            (Some(f), None) => {
                let p = self.base_dir.join(f);
                std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))
            }
            (None, None) => Err("no registry or rules given".into()),
        }
    }

    fn resolve_at(&self, at: &str, start_ms: i64) -> Result<i64, String> {
        match Timestamp::parse_rfc3339(at) {
            Ok(t) => Ok(t.millis()),
            Err(_) => parse_offset_ms(at).map(|o| start_ms + o),
        }
    }

    /// Judges a run's alert events against `[[expect]]` and `[[forbid]]`, for a run that started
    /// at `start`. Returns one line per unmet expectation or forbidden alert.
    pub fn check(&self, start: Timestamp, events: &[ObservedAlert]) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for e in &self.expect {
            let at = self.resolve_at(&e.at, start.millis()).unwrap_or(i64::MIN);
            let tol = e.tolerance.as_deref().map(parse_offset_ms).unwrap_or(Ok(3_600_000)).unwrap_or(0);
            let entered = |a: &&ObservedAlert| {
                a.rule == e.rule
                    && a.subject == e.subject
                    && a.level == e.level
                    && (a.change == "raised" || a.change == "escalated")
            };
            if !events.iter().filter(entered).any(|a| (a.ts - at).abs() <= tol) {
                let seen: Vec<String> = events
                    .iter()
                    .filter(entered)
                    .map(|a| format!("{} at {}", a.change, fmt_offset(a.ts - start.millis())))
                    .collect();
                problems.push(format!(
                    "expected {} {} to enter {} at {} ± {}; seen: {}",
                    e.rule,
                    e.subject,
                    e.level.as_str(),
                    fmt_offset(at - start.millis()),
                    fmt_offset(tol),
                    if seen.is_empty() { "never".to_string() } else { seen.join(", ") }
                ));
            }
        }
        for f in &self.forbid {
            for a in events {
                if f.rule.as_ref().is_none_or(|r| *r == a.rule)
                    && f.subject.as_ref().is_none_or(|s| *s == a.subject)
                    && a.level >= f.level
                {
                    problems.push(format!(
                        "forbidden: {} {} {} {} at {}",
                        a.rule,
                        a.subject,
                        a.change,
                        a.level.as_str(),
                        fmt_offset(a.ts - start.millis())
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Parses a signed duration: a number and a unit `ms`, `s`, `m`/`min`, `h`, `d`
/// (`"90s"`, `"1.5h"`, `"-2h"`, `"+30m"`), into milliseconds.
pub fn parse_offset_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (sign, t) = match t.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a number and a unit (90s, 15m, 2h, 3d)"))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    Ok((sign * n * scale).round() as i64)
}

/// Formats an offset in ms as e.g. `62h05m`, `-90s`.
pub fn fmt_offset(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m{sec:02}s")
    } else if ms % 1000 == 0 {
        format!("{sign}{sec}s")
    } else {
        format!("{sign}{:.3}s", ms.unsigned_abs() as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_units_and_signs() {
        assert_eq!(parse_offset_ms("90s"), Ok(90_000));
        assert_eq!(parse_offset_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_offset_ms("-2m"), Ok(-120_000));
        assert_eq!(parse_offset_ms("+3d"), Ok(3 * 86_400_000));
        assert!(parse_offset_ms("3 weeks").is_err());
        assert!(parse_offset_ms("h").is_err());
        assert_eq!(fmt_offset(62 * 3_600_000 + 300_000), "62h05m");
    }

    fn scenario() -> Scenario {
        Scenario::from_toml(
            r#"
name = "t"
duration = "2h"
registry_toml = ""
rules_toml = ""
[[group]]
id = "g"
model = "flood"
site = "s"
sensors = [{ id = "wl" }]
[[expect]]
rule = "wl-rule"
subject = "wl"
level = "yellow"
at = "1h"
tolerance = "10m"
[[forbid]]
level = "red"
"#,
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn check_finds_met_and_unmet_expectations_and_forbidden_alerts() {
        let s = scenario();
        let start = Timestamp::from_millis(1_000_000_000_000);
        let ev = |change: &str, level, mins: i64| ObservedAlert {
            rule: "wl-rule".into(),
            subject: "wl".into(),
            change: change.into(),
            level,
            ts: start.millis() + mins * 60_000,
        };
        assert_eq!(s.check(start, &[ev("raised", Level::Blue, 30), ev("escalated", Level::Yellow, 65)]), Ok(()));
        let late = s.check(start, &[ev("escalated", Level::Yellow, 80)]).unwrap_err();
        assert!(late[0].contains("seen: escalated at 1h20m"), "{late:?}");
        let red = s.check(start, &[ev("raised", Level::Yellow, 60), ev("escalated", Level::Red, 90)]).unwrap_err();
        assert_eq!(red.len(), 1);
        assert!(red[0].starts_with("forbidden"), "{red:?}");
    }

    #[test]
    fn bad_files_name_their_problems() {
        let err = Scenario::from_toml(
            r#"
name = "t"
duration = "2 weeks"
registry_toml = ""
[[group]]
id = "g"
model = "gas_leak"
site = "s"
params = { wind_speed_m_s = 0.0 }
sensors = [{ id = "a" }, { id = "a" }]
[[failure]]
mode = "offline"
sensors = ["b"]
"#,
            Path::new("."),
        )
        .unwrap_err();
        for needle in ["duration", "rules", "appears twice", "wind_speed_m_s", "unknown sensor b", "offline needs"] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
