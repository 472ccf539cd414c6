//! Two runs over the same history, side by side: the baseline (today's rules) and a what-if
//! (other thresholds or rules). Episodes are matched by rule and subject when their active
//! periods overlap; for each matched pair the first time each level was reached is compared
//! (a what-if that warns earlier wins lead time).

use crate::verify::Episode;
use riskwatch_core::{Level, Timestamp};
use serde::Serialize;

/// One level's first-reached times in both runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LevelShift {
    /// The level.
    pub level: Level,
    /// First time at this level or higher in the baseline (None = never).
    #[serde(serialize_with = "crate::rfc3339::opt")]
    pub baseline: Option<Timestamp>,
    /// … in the what-if.
    #[serde(serialize_with = "crate::rfc3339::opt")]
    pub what_if: Option<Timestamp>,
    /// Baseline minus what-if, hours (positive = the what-if warns earlier).
    pub earlier_by_hours: Option<f64>,
}

/// A pair of matched episodes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Matched {
    /// Rule.
    pub rule_id: String,
    /// Subject.
    pub subject: String,
    /// Highest level, baseline.
    pub baseline_highest: Level,
    /// Highest level, what-if.
    pub what_if_highest: Level,
    /// Levels reached in either, with their times.
    pub shifts: Vec<LevelShift>,
}

/// The comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Comparison {
    /// Episodes only the what-if raises.
    pub gained: Vec<Episode>,
    /// Episodes only the baseline raises.
    pub lost: Vec<Episode>,
    /// Episodes both raise.
    pub matched: Vec<Matched>,
}

impl Comparison {
    /// Matched episodes whose highest level or timing differs.
    pub fn changed(&self) -> impl Iterator<Item = &Matched> {
        self.matched.iter().filter(|m| {
            m.baseline_highest != m.what_if_highest || m.shifts.iter().any(|s| s.earlier_by_hours != Some(0.0))
        })
    }
}

/// Compares the episodes of two runs over the same history.
pub fn compare(baseline: &[Episode], what_if: &[Episode]) -> Comparison {
    let mut used = vec![false; what_if.len()];
    let mut out = Comparison::default();
    for a in baseline {
        let partner = what_if.iter().enumerate().position(|(j, b)| {
            !used[j] && b.rule_id == a.rule_id && b.subject == a.subject && b.start() <= a.end && a.start() <= b.end
        });
        match partner {
            Some(j) => {
                used[j] = true;
                out.matched.push(pair(a, &what_if[j]));
            }
            None => out.lost.push(a.clone()),
        }
    }
    out.gained = what_if.iter().zip(&used).filter(|(_, u)| !**u).map(|(b, _)| b.clone()).collect();
    out
}

fn pair(a: &Episode, b: &Episode) -> Matched {
    let top = a.highest().max(b.highest());
    let shifts = Level::ALL
        .iter()
        .filter(|l| **l <= top)
        .map(|&level| {
            let (x, y) = (a.first_at(level), b.first_at(level));
            LevelShift {
                level,
                baseline: x,
                what_if: y,
                earlier_by_hours: x.zip(y).map(|(x, y)| (x.millis() - y.millis()) as f64 / 3_600_000.0),
            }
        })
        .collect();
    Matched {
        rule_id: a.rule_id.clone(),
        subject: a.subject.clone(),
        baseline_highest: a.highest(),
        what_if_highest: b.highest(),
        shifts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(subject: &str, levels: &[(i64, Level)], end: i64) -> Episode {
        let t = |h: i64| Timestamp(h * 3_600_000);
        Episode {
            alert_id: format!("{subject}-{}", levels[0].0),
            rule_id: "wl".into(),
            subject: subject.into(),
            site: subject.into(),
            levels: levels.iter().map(|(h, l)| (t(*h), *l)).collect(),
            end: t(end),
            open_at_end: false,
        }
    }

    #[test]
    fn gained_lost_and_earlier_warnings() {
        let a = [ep("hankou", &[(10, Level::Yellow), (30, Level::Orange)], 80), ep("datang", &[(5, Level::Blue)], 8)];
        let b = [
            ep("hankou", &[(7, Level::Yellow), (24, Level::Orange), (40, Level::Red)], 90),
            ep("nanjing", &[(50, Level::Yellow)], 60),
        ];
        let c = compare(&a, &b);
        assert_eq!(c.lost.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["datang"]);
        assert_eq!(c.gained.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["nanjing"]);
        let m = &c.matched[0];
        assert_eq!((m.baseline_highest, m.what_if_highest), (Level::Orange, Level::Red));
        let by: Vec<(Level, Option<f64>)> = m.shifts.iter().map(|s| (s.level, s.earlier_by_hours)).collect();
        assert_eq!(
            by,
            [(Level::Blue, Some(3.0)), (Level::Yellow, Some(3.0)), (Level::Orange, Some(6.0)), (Level::Red, None)]
        );
        assert_eq!(c.changed().count(), 1);
    }
}
