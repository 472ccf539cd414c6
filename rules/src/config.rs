//! The rules file (TOML): what each rule watches and where its bands start.
//!
//! ```toml
//! [[rules]]
//! id = "water-level"
//! applies_to = { kind = "water_level" }
//! measure = "value"
//! direction = "rising"
//! deadband = 0.05
//! on_delay = { samples = 2 }
//! levels = { blue = "warning_level - 0.3", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
//! ```

use crate::bands::{Direction, Delay};
use crate::measure::Measure;
use crate::message::MessageTemplate;
use crate::threshold::ThresholdExpr;
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{Level, Registry, Sensor};
use serde::Deserialize;
use std::collections::HashSet;

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

/// Threshold per level; absent levels are not used by the rule.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelThresholds {
    /// Blue (IV) threshold.
    pub blue: Option<ThresholdExpr>,
    /// Yellow (III) threshold.
    pub yellow: Option<ThresholdExpr>,
    /// Orange (II) threshold.
    pub orange: Option<ThresholdExpr>,
    /// Red (I) threshold.
    pub red: Option<ThresholdExpr>,
}

impl LevelThresholds {
    /// The expressions, blue..red.
    pub fn as_array(&self) -> [Option<&ThresholdExpr>; 4] {
        [self.blue.as_ref(), self.yellow.as_ref(), self.orange.as_ref(), self.red.as_ref()]
    }
}

fn default_precision() -> usize {
    2
}

/// One threshold-band rule.
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
    /// Which side is dangerous.
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Hysteresis width, in the measure's unit.
    #[serde(default)]
    pub deadband: f64,
    /// Confirmation before a level is entered.
    #[serde(default)]
    pub on_delay: Delay,
    /// Confirmation before a level is left downwards (de-escalation or clear).
    #[serde(default)]
    pub off_delay: Delay,
    /// Where each band starts.
    pub levels: LevelThresholds,
    /// Decimal places for values in messages.
    #[serde(default = "default_precision")]
    pub precision: usize,
    /// Message templates.
    #[serde(default)]
    pub message: MessageTemplate,
}

fn default_measure() -> Measure {
    Measure::Value
}

fn default_direction() -> Direction {
    Direction::Rising
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// A parsed rules file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// The rules, in file order.
    pub rules: Vec<RuleSpec>,
}

/// Why a rules file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Not valid TOML, or a field of the wrong type (the message has line and column).
    #[error("rules file is not valid: {0}")]
    Parse(String),
    /// Every problem found, each naming its rule and field.
    #[error("rules file has {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl RuleSet {
    /// Parses a rules file and checks what can be checked without a registry.
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in file.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({:?})", r.id);
            if !is_valid_id(&r.id) {
                problems.push(format!("{at}.id: must be 1-64 letters, digits, - _ ."));
            }
            if !seen.insert(r.id.as_str()) {
                problems.push(format!("{at}.id: duplicate rule id"));
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
        }
        if problems.is_empty() {
            Ok(RuleSet { rules: file.rules })
        } else {
            Err(RuleError::Invalid(problems))
        }
    }

    /// Checks the rules against a registry: kinds exist and fit the measure, every selected
    /// sensor has the attributes its thresholds name, and thresholds are ordered by level.
    pub fn check_against(&self, registry: &Registry) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({:?})", r.id);
            match registry.catalog().lookup(&r.applies_to.kind) {
                None => problems.push(format!("{at}.applies_to.kind: unknown kind {:?}", r.applies_to.kind)),
                Some((_, spec)) if spec.shape != r.measure.shape() => problems.push(format!(
                    "{at}.measure: {:?} reads {} values but {} readings are {}",
                    r.measure,
                    r.measure.shape().as_str(),
                    r.applies_to.kind,
                    spec.shape.as_str()
                )),
                Some(_) => {}
            }
            for s in registry.sensors().into_iter().filter(|s| r.applies_to.matches(s)) {
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
        problems
    }
}

/// Thresholds of a rule resolved for one sensor, blue..red.
pub(crate) fn resolve(r: &RuleSpec, s: &Sensor) -> Result<[Option<f64>; 4], String> {
    let mut out = [None; 4];
    for (i, e) in r.levels.as_array().into_iter().enumerate() {
        if let Some(e) = e {
            out[i] = Some(e.resolve(&s.attributes).map_err(|m| format!("{}: {m}", Level::ALL[i]))?);
        }
    }
    Ok(out)
}

fn ordering_problem(r: &RuleSpec, t: &[Option<f64>; 4]) -> Option<String> {
    let present: Vec<(Level, f64)> = Level::ALL.iter().zip(t).filter_map(|(l, v)| v.map(|v| (*l, v))).collect();
    for w in present.windows(2) {
        let ((la, a), (lb, b)) = (w[0], w[1]);
        let ok = match r.direction {
            Direction::Rising => a <= b,
            Direction::Falling => a >= b,
        };
        if !ok {
            return Some(format!("{la} threshold {a} must be {} {lb} threshold {b} for a {:?} rule", if r.direction == Direction::Rising { "≤" } else { "≥" }, r.direction));
        }
    }
    None
}
