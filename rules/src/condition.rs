//! Conditions that raise a level: a comparison of a *feature* of the rule's measure with a
//! threshold. Any one of a level's conditions raises it (OR), which is how one rainfall rule
//! watches 1 h, 3 h, 6 h and 24 h accumulations at once.
//!
//! ```text
//! value >= warning_level + 0.5     the measure itself
//! rate(1h) >= 0.30                 change over the last hour, in units per hour
//! sum(3h) >= 55                    accumulation over the last three hours
//! warning_level                    shorthand: `value >= warning_level` (`<=` for falling rules)
//! ```

use crate::bands::Direction;
use crate::threshold::ThresholdExpr;
use serde::Deserialize;
use std::fmt;

/// What is compared: the measure, its rate of change, or its accumulation over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// The measure as read.
    Value,
    /// (value now − value one window ago) / window, in units per hour.
    Rate {
        /// Window length, ms.
        window_ms: i64,
    },
    /// Sum of the readings in the last window (for interval quantities such as rainfall).
    Sum {
        /// Window length, ms.
        window_ms: i64,
    },
}

impl Feature {
    /// The window this feature needs, if any.
    pub fn window_ms(self) -> Option<i64> {
        match self {
            Feature::Value => None,
            Feature::Rate { window_ms } | Feature::Sum { window_ms } => Some(window_ms),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::Value => f.write_str("value"),
            Feature::Rate { window_ms } => write!(f, "rate({})", fmt_window(*window_ms)),
            Feature::Sum { window_ms } => write!(f, "sum({})", fmt_window(*window_ms)),
        }
    }
}

fn fmt_window(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        // Hours read better than days up to two days (`sum(24h)`, not `sum(1d)`).
        if ms % size == 0 && !(unit == "d" && ms < 2 * 86_400_000) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses `90s`, `15m`, `1h`, `24h`, `2d` into milliseconds.
pub fn parse_window(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("window {t:?} needs a unit (s, m, h, d)"))?;
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let n: f64 = num.parse().map_err(|_| format!("window {t:?} must start with a number"))?;
    let size = match unit {
        "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => return Err(format!("window unit {other:?} is not one of s, m, h, d")),
    };
    let ms = (n * size).round() as i64;
    if ms <= 0 {
        return Err(format!("window {t:?} must be positive"));
    }
    Ok(ms)
}

/// `≥` or `≤`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// At or above the threshold.
    Ge,
    /// At or below the threshold.
    Le,
}

impl Cmp {
    /// Whether `x` satisfies `x cmp t`.
    pub fn holds(self, x: f64, t: f64) -> bool {
        match self {
            Cmp::Ge => x >= t,
            Cmp::Le => x <= t,
        }
    }

    /// The clear threshold for a deadband: below `t` for `≥`, above for `≤`.
    pub fn clear_threshold(self, t: f64, deadband: f64) -> f64 {
        match self {
            Cmp::Ge => t - deadband,
            Cmp::Le => t + deadband,
        }
    }

    /// The symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Ge => "≥",
            Cmp::Le => "≤",
        }
    }
}

/// One condition of one level.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// What is compared.
    pub feature: Feature,
    /// How.
    pub cmp: Cmp,
    /// With what.
    pub threshold: ThresholdExpr,
}

impl Condition {
    /// Parses `FEATURE OP THRESHOLD`, or a bare threshold meaning `value OP THRESHOLD` with the
    /// rule's direction deciding `OP`.
    pub fn parse(text: &str, direction: Direction) -> Result<Self, String> {
        let default_cmp = match direction {
            Direction::Rising => Cmp::Ge,
            Direction::Falling => Cmp::Le,
        };
        let (lhs, cmp, rhs) = if let Some(i) = text.find(">=") {
            (&text[..i], Cmp::Ge, &text[i + 2..])
        } else if let Some(i) = text.find("<=") {
            (&text[..i], Cmp::Le, &text[i + 2..])
        } else if text.contains(['>', '<', '=']) {
            return Err(format!("{text:?}: use >= or <= to compare"));
        } else {
            return Ok(Condition { feature: Feature::Value, cmp: default_cmp, threshold: ThresholdExpr::parse(text)? });
        };
        let lhs = lhs.trim();
        let feature = if lhs == "value" {
            Feature::Value
        } else if let Some(w) = lhs.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            Feature::Rate { window_ms: parse_window(w)? }
        } else if let Some(w) = lhs.strip_prefix("sum(").and_then(|r| r.strip_suffix(')')) {
            Feature::Sum { window_ms: parse_window(w)? }
        } else {
            return Err(format!("{lhs:?} is not a feature (value, rate(WINDOW), sum(WINDOW))"));
        };
        Ok(Condition { feature, cmp, threshold: ThresholdExpr::parse(rhs)? })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.feature, self.cmp.symbol(), self.threshold)
    }
}

/// A level's conditions as written in the file: one threshold or condition, or a list (any
/// one raises the level). Parsed into [`Condition`]s once the rule's direction is known.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LevelConditions {
    /// A number: `value OP number`.
    Number(f64),
    /// One condition or threshold expression.
    One(String),
    /// Several; any one raises the level.
    Any(Vec<NumberOrText>),
}

/// An item of a condition list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    /// A number.
    Number(f64),
    /// A condition.
    Text(String),
}

impl LevelConditions {
    /// The conditions, parsed for a rule of the given direction.
    pub fn parse(&self, direction: Direction) -> Result<Vec<Condition>, String> {
        let one = |n: &NumberOrText| match n {
            NumberOrText::Number(v) if v.is_finite() => Ok(Condition {
                feature: Feature::Value,
                cmp: if direction == Direction::Rising { Cmp::Ge } else { Cmp::Le },
                threshold: ThresholdExpr::Const(*v),
            }),
            NumberOrText::Number(_) => Err("threshold must be finite".to_string()),
            NumberOrText::Text(t) => Condition::parse(t, direction),
        };
        match self {
            LevelConditions::Number(v) => one(&NumberOrText::Number(*v)).map(|c| vec![c]),
            LevelConditions::One(t) => one(&NumberOrText::Text(t.clone())).map(|c| vec![c]),
            LevelConditions::Any(items) if items.is_empty() => Err("an empty list raises nothing".into()),
            LevelConditions::Any(items) => items.iter().map(one).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_condition_forms() {
        let c = Condition::parse("rate(1h) >= 0.3", Direction::Rising).unwrap();
        assert_eq!(
            (c.feature, c.cmp, c.threshold),
            (Feature::Rate { window_ms: 3_600_000 }, Cmp::Ge, ThresholdExpr::Const(0.3))
        );
        let c = Condition::parse("sum(24h)>=warning_rain - 5", Direction::Rising).unwrap();
        assert_eq!(c.feature, Feature::Sum { window_ms: 86_400_000 });
        assert_eq!(c.to_string(), "sum(24h) ≥ warning_rain - 5");
        assert_eq!(parse_window("1 h"), Ok(3_600_000));
        assert_eq!(Condition::parse("sum(72h) >= 1", Direction::Rising).unwrap().feature.to_string(), "sum(3d)");
        let c = Condition::parse("warning_level", Direction::Falling).unwrap();
        assert_eq!((c.feature, c.cmp), (Feature::Value, Cmp::Le));
        for bad in ["rate(1h) > 3", "speed(1h) >= 2", "rate(1 parsec) >= 1", "sum(0h) >= 1", "value >= "] {
            assert!(Condition::parse(bad, Direction::Rising).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn level_lists_mean_any_of() {
        let l: LevelConditions = serde_json::from_str(r#"["sum(1h) >= 35", "sum(3h) >= 55", 70]"#).unwrap();
        let cs = l.parse(Direction::Rising).unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[2].threshold, ThresholdExpr::Const(70.0));
    }
}
