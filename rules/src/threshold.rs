//! Thresholds as numbers or as registry attributes with an offset (`warning_level + 0.5`).
//!
//! Each gauge, detector and slope has its own values, so rules usually name an attribute and
//! the registry supplies the number per station. [`ResolvedThresholds`] holds one binding's
//! numbers.

use riskwatch_core::Attributes;
use serde::Deserialize;
use std::fmt;

/// A threshold: a constant, or `attribute ± offset`.
#[derive(Clone, Debug, PartialEq)]
pub enum ThresholdExpr {
    /// A fixed number.
    Const(f64),
    /// A registry attribute of the sensor plus an offset.
    Attr {
        /// Attribute name.
        name: String,
        /// Added to the attribute.
        offset: f64,
    },
}

impl ThresholdExpr {
    /// Parses `name`, `name + 0.5`, `name - 1` or a number written as text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(v) = t.parse::<f64>() {
            return if v.is_finite() { Ok(ThresholdExpr::Const(v)) } else { Err("threshold must be finite".into()) };
        }
        let (name, offset) = match t.find(['+', '-']) {
            Some(i) if i > 0 => {
                let sign = if &t[i..=i] == "-" { -1.0 } else { 1.0 };
                let num = t[i + 1..].trim();
                let off: f64 = num.parse().map_err(|_| format!("{num:?} after the sign is not a number"))?;
                if !off.is_finite() {
                    return Err("offset must be finite".into());
                }
                (t[..i].trim(), sign * off)
            }
            _ => (t, 0.0),
        };
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(format!("{text:?} is neither a number nor `attribute [+|- number]`"));
        }
        Ok(ThresholdExpr::Attr { name: name.to_string(), offset })
    }

    /// The number for a sensor with these attributes; `Err` names the missing attribute.
    pub fn resolve(&self, attributes: &Attributes) -> Result<f64, String> {
        match self {
            ThresholdExpr::Const(v) => Ok(*v),
            ThresholdExpr::Attr { name, offset } => {
                attributes.get(name).map(|v| v + offset).ok_or_else(|| format!("sensor has no attribute {name:?}"))
            }
        }
    }
}

impl fmt::Display for ThresholdExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdExpr::Const(v) => write!(f, "{v}"),
            ThresholdExpr::Attr { name, offset } if *offset == 0.0 => f.write_str(name),
            ThresholdExpr::Attr { name, offset } if *offset < 0.0 => write!(f, "{name} - {}", -offset),
            ThresholdExpr::Attr { name, offset } => write!(f, "{name} + {offset}"),
        }
    }
}

impl<'de> Deserialize<'de> for ThresholdExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) if v.is_finite() => Ok(ThresholdExpr::Const(v)),
            Raw::Num(_) => Err(serde::de::Error::custom("threshold must be finite")),
            Raw::Text(t) => ThresholdExpr::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Conditions a binding holds thresholds for without a heap allocation: enough for four levels
/// of one condition and a second condition on two of them.
const INLINE: usize = 6;

/// The thresholds of one (rule, sensor) binding, per level, per condition, resolved once.
/// They are read for every reading, so they sit inside the binding unless the rule has many
/// conditions, rather than in four separate heap vectors.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ResolvedThresholds {
    /// End of each level's run in `values`, blue..red.
    ends: [u32; 4],
    values: Values,
}

#[derive(Clone, Debug, PartialEq)]
enum Values {
    Inline([f64; INLINE]),
    Heap(Box<[f64]>),
}

impl Default for Values {
    fn default() -> Self {
        Values::Inline([0.0; INLINE])
    }
}

impl ResolvedThresholds {
    /// From the thresholds per level (blue..red), per condition.
    pub(crate) fn new(per_level: &[Vec<f64>; 4]) -> Self {
        let mut ends = [0u32; 4];
        let mut total = 0usize;
        for (end, level) in ends.iter_mut().zip(per_level) {
            total += level.len();
            *end = u32::try_from(total).unwrap_or(u32::MAX);
        }
        let all = per_level.iter().flatten().copied();
        let values = if total <= INLINE {
            let mut inline = [0.0; INLINE];
            inline.iter_mut().zip(all).for_each(|(slot, v)| *slot = v);
            Values::Inline(inline)
        } else {
            Values::Heap(all.collect())
        };
        ResolvedThresholds { ends, values }
    }

    /// All thresholds, level after level, and where each level's run ends.
    #[inline]
    pub(crate) fn flat(&self) -> (&[f64], &[u32; 4]) {
        let all: &[f64] = match &self.values {
            Values::Inline(v) => v,
            Values::Heap(v) => v,
        };
        (all, &self.ends)
    }

    /// The thresholds of level `i` (0 = blue), one per condition.
    pub(crate) fn level(&self, i: usize) -> &[f64] {
        let all: &[f64] = match &self.values {
            Values::Inline(v) => v,
            Values::Heap(v) => v,
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &all[start..self.ends[i] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_thresholds_keep_levels_apart_inline_or_not() {
        let few = [vec![1.0], vec![2.0, 0.3], vec![], vec![4.0]];
        let t = ResolvedThresholds::new(&few);
        assert_eq!(
            (t.level(0), t.level(1), t.level(2), t.level(3)),
            (&[1.0][..], &[2.0, 0.3][..], &[][..], &[4.0][..])
        );
        assert!(matches!(t.values, Values::Inline(_)));
        let many = [vec![35.0, 55.0, 70.0], vec![50.0, 80.0, 100.0], vec![70.0], vec![]];
        let t = ResolvedThresholds::new(&many);
        assert_eq!(
            (t.level(0), t.level(1), t.level(2), t.level(3)),
            (&many[0][..], &many[1][..], &many[2][..], &[][..])
        );
        assert!(matches!(t.values, Values::Heap(_)));
    }

    #[test]
    fn parses_attribute_offsets() {
        let attrs: Attributes = [("warning_level".to_string(), 27.3)].into_iter().collect();
        let e = ThresholdExpr::parse("warning_level - 0.5").unwrap();
        assert!((e.resolve(&attrs).unwrap() - 26.8).abs() < 1e-9);
        assert_eq!(ThresholdExpr::parse("warning_level+1").unwrap().resolve(&attrs).unwrap(), 28.3);
        assert_eq!(ThresholdExpr::parse("25").unwrap(), ThresholdExpr::Const(25.0));
        assert!(ThresholdExpr::parse("guaranteed_level").unwrap().resolve(&attrs).is_err());
        assert!(ThresholdExpr::parse("warning_level + x").is_err());
        assert!(ThresholdExpr::parse("2 cats").is_err());
    }
}
