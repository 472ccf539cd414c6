//! The `coincidence` kind of composite: a network event when the *weighted* sum of triggered
//! stations reaches a threshold, as ObsPy's `coincidence_trigger` declares events.
//!
//! ```toml
//! [[composites]]
//! id = "quake-network"
//! scope = "network"
//! members = { rules = ["station-trigger"] }   # band-passed STA/LTA rules, one per terminal
//! coincidence = { sum = 3.0, weights = { "eq-d-acc" = 0.5 }, trigger = "yellow", level = "orange" }
//! ```
//!
//! A member is *triggered* while its binding is at `trigger` or above (for an `sta_lta` rule:
//! its ratio reached the on threshold and has not yet fallen below on − deadband). Each
//! triggered sensor adds its weight (`weights`, else `default_weight`, 1 unless set; ObsPy's
//! `trace_ids` dictionary) once; when the sum reaches `sum` (`thr_coincidence_sum`) the
//! composite holds at `level`. Its alert's `details.coincidence` lists the triggered stations,
//! their weights and the sum.
//!
//! ObsPy's `trigger_off_extension` (a station that turned off at most that long ago still
//! joins) is the member rule's `off_delay`: the member keeps its level that much longer after
//! its ratio drops, so its trigger overlaps later ones. The live rule counts triggers that
//! overlap *at one time*; ObsPy, working on a finished record, also chains A-overlaps-B,
//! B-overlaps-C into one event even when A ended before C began. The batch form is
//! [`detectors::coincidence`](crate::detectors::coincidence), tested against ObsPy.

use crate::composite::Member;
use riskwatch_core::Level;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `coincidence` table of a composite.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoincidenceSpec {
    /// Weighted sum of triggered sensors that makes an event (ObsPy `thr_coincidence_sum`).
    pub sum: f64,
    /// Weight per sensor id; sensors not listed weigh `default_weight`.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// Weight of sensors not in `weights` (default 1; 0 counts listed sensors only, like
    /// ObsPy with a `trace_ids` dictionary).
    #[serde(default = "one")]
    pub default_weight: f64,
    /// The member level that counts as triggered (default yellow).
    #[serde(default = "yellow")]
    pub trigger: Level,
    /// The composite's level while the sum holds (default orange).
    #[serde(default = "orange")]
    pub level: Level,
}

fn one() -> f64 {
    1.0
}
fn yellow() -> Level {
    Level::Yellow
}
fn orange() -> Level {
    Level::Orange
}

impl CoincidenceSpec {
    /// Static checks, each naming its field under `coincidence.`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.sum.is_finite() && self.sum > 0.0) {
            p.push(format!("coincidence.sum: {} must be a positive number", self.sum));
        }
        if !(self.default_weight.is_finite() && self.default_weight >= 0.0) {
            p.push(format!("coincidence.default_weight: {} must be a number >= 0", self.default_weight));
        }
        for (sensor, w) in &self.weights {
            if !(w.is_finite() && *w >= 0.0) {
                p.push(format!("coincidence.weights.{sensor}: {w} must be a number >= 0"));
            }
        }
        p
    }

    /// The weight of a sensor.
    pub fn weight(&self, sensor: &str) -> f64 {
        self.weights.get(sensor).copied().unwrap_or(self.default_weight)
    }

    /// The triggered sensors with their weights, each once, in member order.
    pub fn triggered<'m>(&self, members: &[Member<'m>]) -> Vec<(&'m str, f64)> {
        let mut out: Vec<(&'m str, f64)> = Vec::new();
        for m in members {
            if m.level.is_some_and(|l| l >= self.trigger) && !out.iter().any(|(s, _)| *s == m.sensor) {
                out.push((m.sensor, self.weight(m.sensor)));
            }
        }
        out
    }

    /// The coincidence sum now.
    pub fn sum_of(&self, members: &[Member<'_>]) -> f64 {
        self.triggered(members).iter().fold(0.0, |s, (_, w)| s + w)
    }

    /// The level that holds now, if any.
    pub fn highest(&self, members: &[Member<'_>]) -> Option<Level> {
        (self.sum_of(members) >= self.sum).then_some(self.level)
    }

    /// The condition in words, for messages.
    pub fn describe(&self) -> String {
        format!("coincidence sum of members >= {} at >= {}", self.sum, self.trigger)
    }

    /// What an alert carries: the triggered stations, their weights and the sum.
    pub fn details(&self, members: &[Member<'_>]) -> serde_json::Value {
        let triggered = self.triggered(members);
        let stations: Vec<serde_json::Value> =
            triggered.iter().map(|(s, w)| serde_json::json!({ "sensor": s, "weight": w })).collect();
        serde_json::json!({
            "sum": triggered.iter().fold(0.0, |s, (_, w)| s + w),
            "threshold": self.sum,
            "stations": stations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> CoincidenceSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn weighted_sum_of_distinct_triggered_sensors() {
        let c = spec("sum = 2.5\nweights = { b = 0.5, c = 0 }\n");
        let m = |sensor, level| Member { rule: "r", sensor, level };
        let members = [
            m("a", Some(Level::Yellow)),
            m("a", Some(Level::Red)),
            m("b", Some(Level::Orange)),
            m("c", Some(Level::Red)),
            m("d", Some(Level::Blue)),
            m("e", None),
        ];
        assert_eq!(c.triggered(&members), [("a", 1.0), ("b", 0.5), ("c", 0.0)]);
        assert_eq!(c.sum_of(&members), 1.5);
        assert_eq!(c.highest(&members), None);
        let more = [&members[..], &[m("e", Some(Level::Yellow))]].concat();
        assert_eq!(c.highest(&more), Some(Level::Orange));
        assert_eq!(c.details(&more)["sum"], 2.5);
    }

    #[test]
    fn problems_name_the_field() {
        let c = spec("sum = 0\ndefault_weight = -1\nweights = { x = nan }\n");
        let p = c.problems();
        assert!(p[0].starts_with("coincidence.sum:"), "{p:?}");
        assert!(p[1].starts_with("coincidence.default_weight:"), "{p:?}");
        assert!(p[2].starts_with("coincidence.weights.x:"), "{p:?}");
        assert!(toml::from_str::<CoincidenceSpec>("sum = 3\nthreshold = 2\n").is_err());
    }
}
