//! Network composites when the sites are split over several engines (the Kafka path).
//!
//! A network composite (`scope = "network"`, e.g. three strong-motion terminals in a 20-s
//! window, a river basin) combines members at many sites; on the Kafka path those sites live in
//! different readings partitions, each with its own engine. So the partition engines evaluate
//! site composites only ([`CompositeRole::Sites`]) and report every level change of a hazard
//! binding as a [`MemberLevel`]; one network engine ([`CompositeRole::Network`]) holds the
//! members' levels, set by [`Engine::set_members`], and evaluates the network composites over
//! all of them — exactly the composite an engine over every site evaluates.

use crate::composite::Scope;
use crate::Engine;
use riskwatch_core::{AlertChange, AlertEvent, Level, SensorId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which composites an engine evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompositeRole {
    /// Every composite: the engine sees every site (embedded wiring, replay, tests).
    #[default]
    All,
    /// Site composites only: the engine sees some sites (a Kafka readings partition).
    Sites,
    /// Network composites only, over member levels given by [`Engine::set_members`].
    Network,
}

impl CompositeRole {
    /// Whether an engine of this role evaluates composites of `scope`.
    pub fn evaluates(self, scope: Scope) -> bool {
        match self {
            CompositeRole::All => true,
            CompositeRole::Sites => scope == Scope::Site,
            CompositeRole::Network => scope == Scope::Network,
        }
    }
}

/// A hazard binding's level, as its alert event reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberLevel {
    /// The binding's rule.
    pub rule: Arc<str>,
    /// Its sensor.
    pub sensor: SensorId,
    /// The level now (`None`: cleared).
    pub level: Option<Level>,
    /// The deciding value.
    pub value: f64,
    /// Event time of the change.
    pub ts: Timestamp,
    /// The alert's first event time and the event's seq: later updates of one binding have
    /// larger pairs, so a repeated one is recognised.
    pub first_ts: Timestamp,
    /// See `first_ts`.
    pub seq: u32,
}

impl MemberLevel {
    /// The member level an alert event reports, if it is a live hazard level change.
    pub fn of_event(e: &AlertEvent) -> Option<MemberLevel> {
        if e.exercise || e.category != riskwatch_core::AlertCategory::Hazard {
            return None;
        }
        let level = match e.change {
            AlertChange::Raised | AlertChange::Escalated | AlertChange::DeEscalated => Some(e.level),
            AlertChange::Cleared => None,
            _ => return None,
        };
        Some(MemberLevel {
            rule: Arc::clone(&e.rule_id),
            sensor: e.subject.clone(),
            level,
            value: e.value,
            ts: e.ts,
            first_ts: e.first_ts,
            seq: e.seq,
        })
    }
}

impl Engine {
    /// Whether any composite of `rules` would be evaluated by a network engine.
    pub fn has_network_composites(&self) -> bool {
        !self.composites.is_empty() && self.composites.iter().any(|c| c.scope == Scope::Network)
    }

    /// Network role: takes in members' levels (one partition's updates for one input) and
    /// evaluates the network composites they belong to, at processing time `now`. Updates of
    /// unknown bindings, and repeats of updates already applied, change nothing.
    pub fn set_members(&mut self, updates: &[MemberLevel], now: Timestamp, out: &mut Vec<AlertEvent>) {
        self.started.get_or_insert(now);
        let mut touched: Vec<(usize, Timestamp)> = Vec::new();
        for u in updates {
            let key = (Arc::clone(&u.rule), u.sensor.clone());
            if self.member_marks.get(&key).is_some_and(|seen| *seen >= (u.first_ts, u.seq)) {
                continue;
            }
            let Some(position) = self.sensors.position(u.sensor.as_str()) else { continue };
            self.keep_for_save(position);
            let rules = &self.rules;
            let slot = self.sensors.at_mut(position).1;
            let Some(b) = slot.bindings.iter_mut().find(|b| *rules[b.rule].spec.id == *u.rule) else { continue };
            self.member_marks.insert(key, (u.first_ts, u.seq));
            // The member's value is state too (composite events carry it): a save must hold it
            // even when the level stays, or a recovered host would start from an older value
            // while its member marks say the update was seen.
            self.changes.mark(position);
            b.last_value = Some(u.value);
            if b.state.level == u.level {
                continue;
            }
            b.state.level = u.level;
            for &ci in &b.member_of {
                if let Some(cb) = self.composite_bindings.get_mut(ci as usize) {
                    cb.band_value = None;
                    touched.push((ci as usize, u.ts));
                }
            }
        }
        // Each composite once per input, at the latest member change's event time.
        touched.sort_by_key(|(ci, _)| *ci);
        let mut i = 0;
        while i < touched.len() {
            let ci = touched[i].0;
            let mut ts = touched[i].1;
            while i < touched.len() && touched[i].0 == ci {
                ts = ts.max(touched[i].1);
                i += 1;
            }
            let before = out.len();
            self.evaluate_composite(ci, ts, now, out);
            if self.chains.active() {
                self.chains.observe(&mut self.book, &self.names, before, now, out);
            }
            self.stats.events += (out.len() - before) as u64;
            self.label(&mut out[before..]);
        }
    }
}
