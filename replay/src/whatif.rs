//! What-if overrides: registry attributes changed for one replay ("what if the warning level at
//! Hankou were 0.3 m lower?"). Whole rules files are swapped by the caller; this covers the
//! per-station numbers rules refer to (`warning_level`, `alarm_1`, …).
//!
//! Syntax (one override per `--set`):
//!
//! | Form | Meaning |
//! |---|---|
//! | `warning_level-=0.3` | every sensor that has `warning_level`: lower it by 0.3 |
//! | `hankou:warning_level-=0.3` | only sensors whose id or site is `hankou` |
//! | `hankou-wl:warning_level=27.0` | set it to 27.0 on sensor `hankou-wl` |
//!
//! Operators: `=`, `+=`, `-=`, `*=`. An override that matches no sensor is an error (a typo
//! must not silently replay the unchanged rules).

use riskwatch_core::Registry;
use std::fmt;
use std::str::FromStr;

/// How an override changes the attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `=`
    Set(f64),
    /// `+=` (and `-=` as a negative amount)
    Add(f64),
    /// `*=`
    Scale(f64),
}

/// One attribute override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Sensor or site id it is limited to (`None` = every sensor with the attribute).
    pub scope: Option<String>,
    /// Registry attribute name.
    pub attribute: String,
    /// The change.
    pub op: Op,
}

/// One attribute of one sensor, before and after.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Applied {
    /// The sensor.
    pub sensor: String,
    /// The attribute.
    pub attribute: String,
    /// Value in the registry.
    pub before: f64,
    /// Value used for the replay.
    pub after: f64,
}

/// Why an override cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WhatIfError {
    /// Not of the form `[scope:]attribute OP number`.
    #[error("--set {text:?}: {reason} (expected e.g. \"warning_level-=0.3\" or \"hankou:warning_level=27.0\")")]
    Syntax {
        /// The override as given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// It changes nothing.
    #[error("--set {text:?}: no sensor{scope} has attribute {attribute:?}")]
    NoMatch {
        /// The override as given.
        text: String,
        /// " at/named X" or "".
        scope: String,
        /// The attribute.
        attribute: String,
    },
}

impl FromStr for Override {
    type Err = WhatIfError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| WhatIfError::Syntax { text: text.into(), reason: reason.into() };
        let (target, op_at, op_len) = ["+=", "-=", "*=", "="]
            .iter()
            .filter_map(|op| text.find(op).map(|i| (i, op.len())))
            .min_by_key(|(i, _)| *i)
            .map(|(i, len)| (&text[..i], i, len))
            .ok_or_else(|| err("no operator (=, +=, -=, *=)"))?;
        let number: f64 =
            text[op_at + op_len..].trim().parse().map_err(|_| err("the value after the operator is not a number"))?;
        if !number.is_finite() {
            return Err(err("the value must be finite"));
        }
        let op = match &text[op_at..op_at + op_len] {
            "=" => Op::Set(number),
            "+=" => Op::Add(number),
            "-=" => Op::Add(-number),
            _ => Op::Scale(number),
        };
        let (scope, attribute) = match target.split_once(':') {
            Some((scope, attr)) => (Some(scope.trim().to_string()), attr.trim()),
            None => (None, target.trim()),
        };
        if attribute.is_empty() || scope.as_deref() == Some("") {
            return Err(err("empty attribute or scope"));
        }
        Ok(Override { scope, attribute: attribute.to_string(), op })
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scope {
            write!(f, "{s}:")?;
        }
        match self.op {
            Op::Set(v) => write!(f, "{}={v}", self.attribute),
            Op::Add(v) if v < 0.0 => write!(f, "{}-={}", self.attribute, -v),
            Op::Add(v) => write!(f, "{}+={v}", self.attribute),
            Op::Scale(v) => write!(f, "{}*={v}", self.attribute),
        }
    }
}

/// Applies the overrides in order to a copy of `registry` and lists every value changed
/// (sorted by sensor, then attribute, in application order).
pub fn apply(registry: &Registry, overrides: &[Override]) -> Result<(Registry, Vec<Applied>), WhatIfError> {
    let mut out = registry.clone();
    let mut applied = Vec::new();
    for o in overrides {
        let mut matched = false;
        for s in out.sensors_mut() {
            let in_scope = o.scope.as_deref().is_none_or(|sc| sc == s.id.as_str() || sc == s.site.as_str());
            let Some(v) = s.attributes.get_mut(&o.attribute).filter(|_| in_scope) else { continue };
            matched = true;
            let before = *v;
            *v = match o.op {
                Op::Set(x) => x,
                Op::Add(x) => before + x,
                Op::Scale(x) => before * x,
            };
            applied.push(Applied { sensor: s.id.to_string(), attribute: o.attribute.clone(), before, after: *v });
        }
        if !matched {
            return Err(WhatIfError::NoMatch {
                text: o.to_string(),
                scope: o.scope.as_ref().map(|s| format!(" named or at {s:?}")).unwrap_or_default(),
                attribute: o.attribute.clone(),
            });
        }
    }
    applied.sort_by(|a, b| (&a.sensor, &a.attribute).cmp(&(&b.sensor, &b.attribute)));
    Ok((out, applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
        [[sites]]
        id = "hankou"
        [[sites]]
        id = "nanjing"
        [[sensors]]
        id = "hankou-wl"
        site = "hankou"
        kind = "water_level"
        unit = "m"
        attributes = { warning_level = 27.30, guaranteed_level = 29.73 }
        [[sensors]]
        id = "nanjing-wl"
        site = "nanjing"
        kind = "water_level"
        unit = "m"
        attributes = { warning_level = 8.70 }
    "#;

    fn parse(s: &str) -> Override {
        s.parse().unwrap()
    }

    #[test]
    fn overrides_parse_and_print_back() {
        for text in ["warning_level-=0.3", "hankou:warning_level=27", "guaranteed_level+=0.5", "alarm_1*=0.5"] {
            assert_eq!(parse(text).to_string(), text);
        }
        assert_eq!(parse(" hankou : warning_level -= 0.3").op, Op::Add(-0.3));
        for bad in ["warning_level", "warning_level=abc", "=3", ":warning_level=3", "warning_level=inf"] {
            assert!(matches!(bad.parse::<Override>(), Err(WhatIfError::Syntax { .. })), "{bad}");
        }
    }

    #[test]
    fn overrides_change_only_their_scope_and_list_every_change() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        let (out, applied) =
            apply(&reg, &[parse("warning_level-=0.3"), parse("hankou:guaranteed_level=29.0")]).unwrap();
        let wl = |r: &Registry, s: &str, a: &str| r.sensor(s).unwrap().attributes[a];
        assert!((wl(&out, "hankou-wl", "warning_level") - 27.0).abs() < 1e-9);
        assert!((wl(&out, "nanjing-wl", "warning_level") - 8.4).abs() < 1e-9);
        assert_eq!(wl(&out, "hankou-wl", "guaranteed_level"), 29.0);
        assert_eq!(wl(&reg, "hankou-wl", "warning_level"), 27.30, "the original registry is untouched");
        let names: Vec<(&str, &str)> = applied.iter().map(|a| (a.sensor.as_str(), a.attribute.as_str())).collect();
        assert_eq!(
            names,
            [("hankou-wl", "guaranteed_level"), ("hankou-wl", "warning_level"), ("nanjing-wl", "warning_level")]
        );
    }

    #[test]
    fn an_override_that_matches_nothing_is_an_error() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        let e = apply(&reg, &[parse("warnig_level-=0.3")]).unwrap_err();
        assert!(e.to_string().contains("no sensor has attribute \"warnig_level\""), "{e}");
        let e = apply(&reg, &[parse("wuhan:warning_level-=0.3")]).unwrap_err();
        assert!(e.to_string().contains("wuhan"), "{e}");
    }
}
