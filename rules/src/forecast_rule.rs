//! Forecast rules as written in the rules file (`[[forecasts]]`), and their static checks.
//!
//! ```toml
//! [[forecasts]]
//! id = "wl-forecast"
//! applies_to = { kind = "water_level" }
//! probability = 0.5      # share of ensemble members that must cross (1 member: it must)
//! persistence = 2        # consecutive forecasts that must cross before the level is raised
//! levels = { orange = { threshold = "guaranteed_level", within = "24h" },
//!            yellow = { threshold = "guaranteed_level", within = "72h" } }
//! ```
//!
//! A level holds for a forecast when at least `probability` of its members reach the level's
//! threshold at a valid time no later than `within` after the issue time. The engine side is
//! [`crate::forecast`].

use crate::bands::Direction;
use crate::condition::parse_window;
use crate::config::{Remind, Selector};
use crate::threshold::ThresholdExpr;
use riskwatch_core::ids::is_valid_id;
use riskwatch_core::{KindCatalog, Level, Problem, Sensor, ValueShape};
use serde::Deserialize;

/// One level of a forecast rule.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastLevel {
    /// The threshold the forecast must reach (number or `attribute ± offset`).
    pub threshold: ThresholdExpr,
    /// Lead-time window after the issue time (`"24h"`, `"3d"`).
    pub within: String,
}

/// Levels of a forecast rule; absent levels are not used.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastLevels {
    /// Blue (IV).
    pub blue: Option<ForecastLevel>,
    /// Yellow (III).
    pub yellow: Option<ForecastLevel>,
    /// Orange (II).
    pub orange: Option<ForecastLevel>,
    /// Red (I).
    pub red: Option<ForecastLevel>,
}

impl ForecastLevels {
    /// The entries, blue..red.
    pub fn as_array(&self) -> [Option<&ForecastLevel>; 4] {
        [self.blue.as_ref(), self.yellow.as_ref(), self.orange.as_ref(), self.red.as_ref()]
    }
}

fn default_probability() -> f64 {
    0.5
}

fn default_persistence() -> u32 {
    1
}

fn default_precision() -> usize {
    2
}

fn default_direction() -> Direction {
    Direction::Rising
}

/// One forecast rule as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSpec {
    /// Unique id (shares the namespace of rule and composite ids; part of its alert ids).
    pub id: String,
    /// What it is for, for people.
    #[serde(default)]
    pub description: String,
    /// Which sensors' forecasts it judges.
    pub applies_to: Selector,
    /// Which side is dangerous.
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Share of members (0 < p ≤ 1) that must reach a level's threshold within its window.
    #[serde(default = "default_probability")]
    pub probability: f64,
    /// Consecutive forecasts in which a level must hold before it is raised (≥ 1).
    #[serde(default = "default_persistence")]
    pub persistence: u32,
    /// Threshold and lead-time window per level.
    pub levels: ForecastLevels,
    /// Reminders while red or orange stays unacknowledged.
    #[serde(default)]
    pub remind: Remind,
    /// Decimal places for values in messages.
    #[serde(default = "default_precision")]
    pub precision: usize,
}

/// A forecast rule ready to bind.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledForecast {
    /// As written.
    pub spec: ForecastSpec,
    /// Lead-time window per level in ms, blue..red (`None`: level unused).
    pub within_ms: [Option<i64>; 4],
    /// Reminder interval per level in ms.
    pub remind_ms: [Option<i64>; 4],
    /// 1-based line in its file.
    pub line: usize,
}

impl CompiledForecast {
    /// Checks a written rule (`at` is its field path, `forecasts[i]`); problems go to `problems`.
    pub(crate) fn compile(spec: ForecastSpec, at: &str, line: usize, problems: &mut Vec<Problem>) -> Self {
        if !is_valid_id(&spec.id) {
            problems
                .push(Problem::new(format!("{at}.id"), format!("{:?} must be 1-64 letters, digits, - _ .", spec.id)));
        }
        if !(spec.probability > 0.0 && spec.probability <= 1.0) {
            problems.push(Problem::new(format!("{at}.probability"), "must be in (0, 1]"));
        }
        if spec.persistence == 0 {
            problems.push(Problem::new(format!("{at}.persistence"), "must be at least 1 (forecasts in a row)"));
        }
        if spec.precision > 9 {
            problems.push(Problem::new(format!("{at}.precision"), "at most 9 decimal places"));
        }
        let mut within_ms = [None; 4];
        for (i, level) in spec.levels.as_array().into_iter().enumerate() {
            if let Some(l) = level {
                match parse_window(&l.within) {
                    Ok(ms) => within_ms[i] = Some(ms),
                    Err(e) => problems.push(Problem::new(format!("{at}.levels.{}.within", Level::ALL[i]), e)),
                }
            }
        }
        if spec.levels.as_array().iter().all(Option::is_none) {
            problems.push(Problem::new(format!("{at}.levels"), "give at least one of blue, yellow, orange, red"));
        }
        let mut remind_ms = [None; 4];
        for (level, text) in [(Level::Orange, &spec.remind.orange), (Level::Red, &spec.remind.red)] {
            match text.as_deref() {
                None | Some("off") => {}
                Some(t) => match parse_window(t) {
                    Ok(ms) => remind_ms[level.index()] = Some(ms),
                    Err(e) => problems.push(Problem::new(format!("{at}.remind.{level}"), e)),
                },
            }
        }
        CompiledForecast { spec, within_ms, remind_ms, line }
    }

    /// The kind is known and scalar.
    pub(crate) fn kind_problems(&self, at: &str, catalog: &KindCatalog) -> Option<Problem> {
        let kind = &self.spec.applies_to.kind;
        match catalog.lookup(kind) {
            None => Some(Problem::new(format!("{at}.applies_to.kind"), format!("unknown kind {kind:?}"))),
            Some((_, spec)) if spec.shape != ValueShape::Scalar => Some(Problem::new(
                format!("{at}.applies_to.kind"),
                format!("{kind} readings are {}; forecasts are of scalar kinds only", spec.shape.as_str()),
            )),
            Some(_) => None,
        }
    }

    /// Thresholds per level for one sensor; `Err` names the level whose attribute is missing.
    pub fn thresholds(&self, s: &Sensor) -> Result<[Option<f64>; 4], (Level, String)> {
        let mut out = [None; 4];
        for (i, l) in self.spec.levels.as_array().into_iter().enumerate() {
            if let Some(l) = l {
                out[i] = Some(l.threshold.resolve(&s.attributes).map_err(|m| (Level::ALL[i], m))?);
            }
        }
        Ok(out)
    }
}
