//! The rules file (TOML): hazard rules, data-quality checks and composite site rules.
//!
//! ```toml
//! [[rules]]
//! id = "water-level"
//! applies_to = { kind = "water_level" }
//! deadband = 0.05
//! on_delay = { samples = 2 }
//! off_delay = { seconds = 900 }
//! levels = { blue = "warning_level - 0.3", yellow = ["warning_level", "rate(1h) >= 0.3"], orange = "guaranteed_level", red = "record_level" }
//!
//! [[quality]]
//! applies_to = { kind = "water_level" }
//! flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }
//!
//! [[composites]]
//! id = "tailings-rollup"
//! levels = { yellow = "count(>= blue) >= 4", orange = "count(>= yellow) >= 3", red = "count(>= orange) >= 2" }
//! ```
//!
//! Parsing checks everything that can be checked without a registry and reports every
//! problem with its line and field; [`RuleSet::check_against`] adds the registry checks.

use crate::bands::{Delay, Direction};
use crate::composite::CompositeSpec;
use crate::condition::{parse_window, Condition, Feature, LevelConditions};
use crate::measure::Measure;
use crate::message::MessageTemplate;
use crate::quality::QualitySpec;
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{Level, Registry, Sensor};
use serde::Deserialize;
use std::collections::HashSet;
use toml::Spanned;

/// Which sensors a rule applies to. Every given criterion must match.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Sensor kind (wire name).
    pub kind: String,
    /// Only these sites (empty = all).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only these sensors (empty = all).
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Only sensors carrying all of these registry tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Selector {
    /// Whether a registered sensor is selected.
    pub fn matches(&self, s: &Sensor) -> bool {
        s.kind.as_str() == self.kind
            && (self.sites.is_empty() || self.sites.iter().any(|x| x == s.site.as_str()))
            && (self.sensors.is_empty() || self.sensors.iter().any(|x| x == s.id.as_str()))
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// Conditions per level as written; absent levels are not used by the rule.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSpecs {
    /// Blue (IV).
    pub blue: Option<LevelConditions>,
    /// Yellow (III).
    pub yellow: Option<LevelConditions>,
    /// Orange (II).
    pub orange: Option<LevelConditions>,
    /// Red (I).
    pub red: Option<LevelConditions>,
}

impl LevelSpecs {
    /// The entries, blue..red.
    pub fn as_array(&self) -> [Option<&LevelConditions>; 4] {
        [self.blue.as_ref(), self.yellow.as_ref(), self.orange.as_ref(), self.red.as_ref()]
    }
}

/// Re-notification intervals for unacknowledged alerts, per level (`"5m"`, `"15m"`, `"off"`).
/// A level left out keeps its default (red 5 min, orange 15 min).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remind {
    /// Interval at red.
    #[serde(default = "default_remind_red")]
    pub red: Option<String>,
    /// Interval at orange.
    #[serde(default = "default_remind_orange")]
    pub orange: Option<String>,
}

fn default_remind_red() -> Option<String> {
    Some("5m".into())
}

fn default_remind_orange() -> Option<String> {
    Some("15m".into())
}

impl Default for Remind {
    fn default() -> Self {
        Remind { red: default_remind_red(), orange: default_remind_orange() }
    }
}

fn default_precision() -> usize {
    2
}

fn default_measure() -> Measure {
    Measure::Value
}

fn default_direction() -> Direction {
    Direction::Rising
}

/// One hazard rule as written in the file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique rule id (part of every alert id it raises).
    pub id: String,
    /// What the rule is for, for people.
    #[serde(default)]
    pub description: String,
    /// Which sensors it applies to.
    pub applies_to: Selector,
    /// What number it watches.
    #[serde(default = "default_measure")]
    pub measure: Measure,
    /// Which side is dangerous (decides the comparison of bare thresholds).
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Hysteresis width, in the unit of each condition's feature.
    #[serde(default)]
    pub deadband: f64,
    /// Confirmation before a level is entered.
    #[serde(default)]
    pub on_delay: Delay,
    /// Confirmation (hold time) before a level is left downwards.
    #[serde(default)]
    pub off_delay: Delay,
    /// Conditions per level; any one raises the level.
    pub levels: LevelSpecs,
    /// Reminders while red or orange stays unacknowledged.
    #[serde(default)]
    pub remind: Remind,
    /// Decimal places for values in messages.
    #[serde(default = "default_precision")]
    pub precision: usize,
    /// Message templates.
    #[serde(default)]
    pub message: MessageTemplate,
    /// Parameters of the GNSS detector (measures `tangent_angle`, `gnss_velocity`,
    /// `subsidence_rate`).
    #[serde(default)]
    pub gnss: Option<crate::detectors::gnss::GnssParams>,
    /// STA/LTA windows (measure `sta_lta`).
    #[serde(default)]
    pub sta_lta: Option<crate::StaLtaParams>,
}

/// A rule ready to bind: its spec plus parsed conditions and derived window sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledRule {
    /// As written.
    pub spec: RuleSpec,
    /// Parsed conditions per level, blue..red (empty = level unused).
    pub conditions: [Vec<Condition>; 4],
    /// Reminder interval per level in ms (only orange and red are used).
    pub remind_ms: [Option<i64>; 4],
    /// History the windowed conditions need (0 = none), and its slot resolution.
    pub window_keep_ms: i64,
    /// Slot width of the history.
    pub window_resolution_ms: i64,
    /// 1-based line of the rule in its file.
    pub line: usize,
    /// GNSS detector parameters in force (the rule's, or the defaults).
    pub gnss: crate::detectors::gnss::GnssParams,
    /// STA/LTA windows in force.
    pub sta_lta: crate::StaLtaParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    quality: Vec<Spanned<QualitySpec>>,
    #[serde(default)]
    composites: Vec<Spanned<CompositeSpec>>,
}

/// A parsed, statically valid rules file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// Hazard rules, in file order.
    pub rules: Vec<CompiledRule>,
    /// Data-quality checks, in file order, with their lines.
    pub quality: Vec<(QualitySpec, usize)>,
    /// Composite site rules, in file order, with their lines.
    pub composites: Vec<(CompositeSpec, usize)>,
}

/// Why a rules file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Not valid TOML, or a field of the wrong type (the message has line and column).
    #[error("rules file is not valid: {0}")]
    Parse(String),
    /// Every problem found, each naming its line, rule and field.
    #[error("rules file has {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

impl RuleSet {
    /// Parses a rules file and checks what can be checked without a registry.
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for (i, spanned) in file.rules.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let at = format!("line {line}: rules[{i}] ({:?})", r.id);
            if !is_valid_id(&r.id) {
                problems.push(format!("{at}.id: must be 1-64 letters, digits, - _ ."));
            }
            if !seen.insert(r.id.clone()) {
                problems.push(format!("{at}.id: duplicate id"));
            }
            if !(r.deadband.is_finite() && r.deadband >= 0.0) {
                problems.push(format!("{at}.deadband: must be a finite number ≥ 0"));
            }
            if r.levels.as_array().iter().all(Option::is_none) {
                problems.push(format!("{at}.levels: give at least one of blue, yellow, orange, red"));
            }
            if r.precision > 9 {
                problems.push(format!("{at}.precision: at most 9 decimal places"));
            }
            for p in r.message.unknown_placeholders() {
                problems.push(format!("{at}.message: unknown placeholder {{{p}}}"));
            }
            if let Some(g) = &r.gnss {
                problems.extend(g.problems().into_iter().map(|p| format!("{at}.gnss.{p}")));
            }
            if let Some(s) = &r.sta_lta {
                problems.extend(s.problems().into_iter().map(|p| format!("{at}.{p}")));
            }
            let mut conditions: [Vec<Condition>; 4] = Default::default();
            for (li, entry) in r.levels.as_array().into_iter().enumerate() {
                if let Some(entry) = entry {
                    match entry.parse(r.direction) {
                        Ok(cs) => conditions[li] = cs,
                        Err(e) => problems.push(format!("{at}.levels.{}: {e}", Level::ALL[li])),
                    }
                }
            }
            let mut remind_ms = [None; 4];
            for (level, text) in [(Level::Orange, &r.remind.orange), (Level::Red, &r.remind.red)] {
                match text.as_deref() {
                    None | Some("off") => {}
                    Some(t) => match parse_window(t) {
                        Ok(ms) => remind_ms[level.index()] = Some(ms),
                        Err(e) => problems.push(format!("{at}.remind.{level}: {e}")),
                    },
                }
            }
            let windows: Vec<i64> = conditions.iter().flatten().filter_map(|c| c.feature.window_ms()).collect();
            let keep = windows.iter().copied().max().unwrap_or(0);
            let resolution = windows.iter().copied().min().map_or(1, |w| (w / 24).max(1));
            let gnss = r.gnss.clone().unwrap_or_default();
            let sta_lta = r.sta_lta.unwrap_or_default();
            rules.push(CompiledRule {
                spec: r,
                conditions,
                remind_ms,
                window_keep_ms: keep,
                window_resolution_ms: resolution,
                line,
                gnss,
                sta_lta,
            });
        }
        let mut quality = Vec::new();
        for (i, spanned) in file.quality.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let q = spanned.into_inner();
            for p in q.problems() {
                problems.push(format!("line {line}: quality[{i}].{p}"));
            }
            quality.push((q, line));
        }
        let mut composites = Vec::new();
        for (i, spanned) in file.composites.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let c = spanned.into_inner();
            let at = format!("line {line}: composites[{i}] ({:?})", c.id);
            for p in c.problems() {
                problems.push(format!("{at}.{p}"));
            }
            if !seen.insert(c.id.clone()) {
                problems.push(format!("{at}.id: duplicate id (rule and composite ids share one namespace)"));
            }
            composites.push((c, line));
        }
        let rule_ids: HashSet<&str> = rules.iter().map(|r| r.spec.id.as_str()).collect();
        for (i, (c, line)) in composites.iter().enumerate() {
            let referenced = c
                .levels
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e.rules_referenced())
                .chain(c.members.rules.iter().map(String::as_str));
            for r in referenced {
                if !rule_ids.contains(r) {
                    problems.push(format!("line {line}: composites[{i}] ({:?}): refers to unknown rule {r:?}", c.id));
                }
            }
        }
        if problems.is_empty() {
            Ok(RuleSet { rules, quality, composites })
        } else {
            Err(RuleError::Invalid(problems))
        }
    }

    /// Checks the rules against a registry: kinds exist and fit the measure, every selected
    /// sensor has the attributes its thresholds name, and thresholds are ordered by level.
    pub fn check_against(&self, registry: &Registry) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("line {}: rules[{i}] ({:?})", r.line, r.spec.id);
            match registry.catalog().lookup(&r.spec.applies_to.kind) {
                None => problems.push(format!("{at}.applies_to.kind: unknown kind {:?}", r.spec.applies_to.kind)),
                Some((_, spec)) if spec.shape != r.spec.measure.shape() => problems.push(format!(
                    "{at}.measure: {:?} reads {} values but {} readings are {}",
                    r.spec.measure,
                    r.spec.measure.shape().as_str(),
                    r.spec.applies_to.kind,
                    spec.shape.as_str()
                )),
                Some(_) => {}
            }
            for s in registry.sensors().into_iter().filter(|s| r.spec.applies_to.matches(s)) {
                match resolve(r, s) {
                    Ok(t) => {
                        if let Some(p) = ordering_problem(r, &t) {
                            problems.push(format!("{at}.levels (sensor {}): {p}", s.id));
                        }
                    }
                    Err(p) => problems.push(format!("{at}.levels (sensor {}): {p}", s.id)),
                }
            }
        }
        for (i, (q, line)) in self.quality.iter().enumerate() {
            match registry.catalog().lookup(&q.applies_to.kind) {
                None => problems
                    .push(format!("line {line}: quality[{i}].applies_to.kind: unknown kind {:?}", q.applies_to.kind)),
                Some((_, spec)) if spec.shape != q.measure.shape() => problems.push(format!(
                    "line {line}: quality[{i}].measure: {:?} reads {} values but {} readings are {}",
                    q.measure,
                    q.measure.shape().as_str(),
                    q.applies_to.kind,
                    spec.shape.as_str()
                )),
                Some(_) => {}
            }
            for s in registry.sensors().into_iter().filter(|s| q.applies_to.matches(s)) {
                if let Err(p) = q.resolve(s) {
                    problems.push(format!("line {line}: quality[{i}] (sensor {}): {p}", s.id));
                }
            }
        }
        problems
    }
}

impl RuleSet {
    /// Things that are legal but probably not what the author meant: rules, quality tables
    /// and composites that select nothing, and quality tables hidden by an earlier one.
    pub fn warnings_against(&self, registry: &Registry) -> Vec<String> {
        let mut w = Vec::new();
        let sensors = registry.sensors();
        for (i, r) in self.rules.iter().enumerate() {
            if !sensors.iter().any(|s| r.spec.applies_to.matches(s)) {
                w.push(format!("line {}: rules[{i}] ({:?}) applies to no registered sensor", r.line, r.spec.id));
            }
        }
        for (i, (q, line)) in self.quality.iter().enumerate() {
            let selected: Vec<_> = sensors.iter().filter(|s| q.applies_to.matches(s)).collect();
            if selected.is_empty() {
                w.push(format!("line {line}: quality[{i}] applies to no registered sensor"));
            } else if selected
                .iter()
                .all(|s| self.quality[..i].iter().any(|(earlier, _)| earlier.applies_to.matches(s)))
            {
                w.push(format!("line {line}: quality[{i}] is hidden: an earlier [[quality]] table already applies to all its sensors (the first match wins)"));
            }
        }
        for (i, (c, line)) in self.composites.iter().enumerate() {
            for site in &c.sites {
                if registry.site(site).is_none() {
                    w.push(format!("line {line}: composites[{i}] ({:?}).sites: unknown site {site:?}", c.id));
                }
            }
        }
        w
    }
}

/// Thresholds of a rule's conditions resolved for one sensor, per level.
pub(crate) fn resolve(r: &CompiledRule, s: &Sensor) -> Result<[Vec<f64>; 4], String> {
    let mut out: [Vec<f64>; 4] = Default::default();
    for (i, cs) in r.conditions.iter().enumerate() {
        for c in cs {
            out[i].push(c.threshold.resolve(&s.attributes).map_err(|m| format!("{}: {m}", Level::ALL[i]))?);
        }
    }
    Ok(out)
}

/// For each feature used on several levels, thresholds must not contradict the ladder.
fn ordering_problem(r: &CompiledRule, t: &[Vec<f64>; 4]) -> Option<String> {
    let mut features: Vec<(Feature, crate::condition::Cmp)> = Vec::new();
    for c in r.conditions.iter().flatten() {
        if !features.contains(&(c.feature, c.cmp)) {
            features.push((c.feature, c.cmp));
        }
    }
    for (feature, cmp) in features {
        let present: Vec<(Level, f64)> = Level::ALL
            .iter()
            .zip(r.conditions.iter().zip(t))
            .filter_map(|(l, (cs, ts))| {
                cs.iter().zip(ts).find(|(c, _)| c.feature == feature && c.cmp == cmp).map(|(_, v)| (*l, *v))
            })
            .collect();
        for w in present.windows(2) {
            let ((la, a), (lb, b)) = (w[0], w[1]);
            let ok = if cmp == crate::condition::Cmp::Ge { a <= b } else { a >= b };
            if !ok {
                let sym = if cmp == crate::condition::Cmp::Ge { "≤" } else { "≥" };
                return Some(format!("{feature}: {la} threshold {a} must be {sym} {lb} threshold {b}"));
            }
        }
    }
    None
}
