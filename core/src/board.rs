//! The current state of each alert, folded from its events.
//!
//! Alert events say what *changed*; a duty board needs what *is*: the level now, whether
//! someone acknowledged it (at this level), who it is assigned to, whether the condition still
//! holds. [`AlertState::apply`] folds events into that view. The MQTT retained state topic
//! (`riskwatch/v1/state/...`), the web console's board and its history all use it, so they
//! agree with each other and with the engine.

use crate::alert::{AlertCategory, AlertChange, AlertEvent, Call};
use crate::ids::{SensorId, SiteId};
use crate::kind::SensorKind;
use crate::level::Level;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// What an alert is now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Stable id of the alert.
    pub alert_id: String,
    /// The rule that produced it.
    pub rule_id: Arc<str>,
    /// Sensor (or, for a composite, site) it is about.
    pub subject: SensorId,
    /// Its site.
    pub site: SiteId,
    /// The subject's kind.
    pub kind: SensorKind,
    /// The site's name as a duty officer reads it (see [`AlertEvent::site_name`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site_name: String,
    /// The subject's name likewise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sensor_name: String,
    /// Hazard, data quality or composite.
    pub category: AlertCategory,
    /// Level now (for a cleared alert: the level it had when it cleared).
    pub level: Level,
    /// Highest level reached.
    pub highest_level: Level,
    /// Whether the condition still holds (false once cleared).
    pub active: bool,
    /// True once an officer resolved it: its life is over.
    pub resolved: bool,
    /// Event time it was raised.
    #[serde(with = "crate::time::rfc3339")]
    pub first_ts: Timestamp,
    /// Time of the latest event.
    #[serde(with = "crate::time::rfc3339")]
    pub updated_ts: Timestamp,
    /// The latest event's change.
    pub last_change: AlertChange,
    /// The latest event's sequence number.
    pub seq: u32,
    /// Value and threshold of the latest level change.
    pub value: f64,
    /// See `value`.
    pub threshold: f64,
    /// Unit of both.
    pub unit: Arc<str>,
    /// Decimal places to show them with (the rule's precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Message of the latest level change, Chinese.
    pub message_zh: String,
    /// Message of the latest level change, English.
    pub message_en: String,
    /// A drill's alert.
    #[serde(default)]
    pub exercise: bool,
    /// Who acknowledged it at its current level (escalation asks for a new acknowledgement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_ts: Option<Timestamp>,
    /// Responsible unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// The latest officer note (acknowledge, assign or resolve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Reminders sent so far.
    #[serde(default)]
    pub reminders: u32,
    /// Where the alert is in its call-response chain (叫应): the tiers called so far at its
    /// current level, in order (the last is waiting for an answer until `acknowledged_by` is
    /// set). Empty when no chain applies. Escalation starts the new level's chain afresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Call>,
    /// While shelved: when the shelving ends (see [`AlertChange::Shelved`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::rfc3339_opt")]
    pub shelved_until: Option<Timestamp>,
    /// While shelved: who shelved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelved_by: Option<String>,
    /// While shelved: the reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelve_reason: Option<String>,
    /// While grouped under an active site alert (flood suppression): its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouped_under: Option<String>,
    /// For a site alert that groups its members: the ids of the member alerts it grouped as of
    /// its latest level change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grouped: Vec<String>,
}

impl AlertState {
    /// The state right after `e` (normally a `raised` event; any event gives a usable start).
    pub fn from_event(e: &AlertEvent) -> Self {
        let mut s = AlertState {
            alert_id: e.alert_id.clone(),
            rule_id: Arc::clone(&e.rule_id),
            subject: e.subject.clone(),
            site: e.site.clone(),
            kind: e.kind.clone(),
            site_name: e.site_name.clone(),
            sensor_name: e.sensor_name.clone(),
            category: e.category,
            level: e.level,
            highest_level: e.highest_level,
            active: true,
            resolved: false,
            first_ts: e.first_ts,
            updated_ts: e.ts,
            last_change: e.change,
            seq: e.seq,
            value: e.value,
            threshold: e.threshold,
            unit: Arc::clone(&e.unit),
            decimals: e.decimals,
            message_zh: e.message_zh.clone(),
            message_en: e.message_en.clone(),
            exercise: e.exercise,
            acknowledged_by: None,
            acknowledged_ts: None,
            assignee: None,
            note: None,
            reminders: 0,
            calls: Vec::new(),
            shelved_until: None,
            shelved_by: None,
            shelve_reason: None,
            grouped_under: None,
            grouped: Vec::new(),
        };
        s.fold(e);
        s
    }

    /// Folds one more event in. Events older than the one already applied (a redelivered
    /// message) change nothing; returns whether the state changed.
    pub fn apply(&mut self, e: &AlertEvent) -> bool {
        if e.alert_id != self.alert_id || e.seq <= self.seq {
            return false;
        }
        self.fold(e);
        true
    }

    fn fold(&mut self, e: &AlertEvent) {
        self.seq = e.seq;
        // Names follow the registry: a renamed station shows its new name from its next event.
        if !e.site_name.is_empty() {
            self.site_name.clone_from(&e.site_name);
        }
        if !e.sensor_name.is_empty() {
            self.sensor_name.clone_from(&e.sensor_name);
        }
        self.last_change = e.change;
        self.updated_ts = e.ts;
        self.highest_level = self.highest_level.max(e.highest_level);
        match e.change {
            AlertChange::Raised | AlertChange::Escalated | AlertChange::DeEscalated => {
                if e.change == AlertChange::Escalated {
                    self.acknowledged_by = None;
                    self.acknowledged_ts = None;
                    self.calls.clear();
                }
                self.active = true;
                self.take_level(e);
            }
            AlertChange::Cleared => {
                self.active = false;
                self.take_level(e);
            }
            AlertChange::Acknowledged => {
                self.acknowledged_by = e.by.clone();
                self.acknowledged_ts = Some(e.ts);
                self.note = e.note.clone().or(self.note.take());
            }
            AlertChange::Assigned => {
                self.assignee = e.assignee.clone();
                self.note = e.note.clone().or(self.note.take());
            }
            AlertChange::Resolved => {
                self.active = false;
                self.resolved = true;
                self.note = e.note.clone().or(self.note.take());
            }
            AlertChange::Reminder => self.reminders += 1,
            AlertChange::Called => self.calls.extend(Call::of(e)),
            AlertChange::Shelved => {
                self.shelved_by = e.by.clone();
                self.shelve_reason = e.note.clone();
            }
            AlertChange::Unshelved => {}
        }
        self.grouped_under.clone_from(&e.grouped_under);
        if e.category == AlertCategory::Composite
            && matches!(
                e.change,
                AlertChange::Raised | AlertChange::Escalated | AlertChange::DeEscalated | AlertChange::Cleared
            )
        {
            self.grouped = e
                .details
                .as_ref()
                .and_then(|d| d.get("grouped"))
                .and_then(|g| serde_json::from_value(g.clone()).ok())
                .unwrap_or_default();
        }
        // Every event of a shelved alert says until when; one without it is of an alert on
        // the board again (unshelved, or escalated, which ends shelving at once).
        self.shelved_until = e.shelved_until;
        if self.shelved_until.is_none() {
            self.shelved_by = None;
            self.shelve_reason = None;
        }
    }

    fn take_level(&mut self, e: &AlertEvent) {
        self.level = e.level;
        self.value = e.value;
        self.threshold = e.threshold;
        self.unit = Arc::clone(&e.unit);
        self.decimals = e.decimals;
        self.message_zh = e.message_zh.clone();
        self.message_en = e.message_en.clone();
    }

    /// Whether an officer still has something to do: acknowledge it, or resolve it once cleared.
    pub fn needs_action(&self) -> bool {
        !self.resolved && (self.acknowledged_by.is_none() || !self.active)
    }
}

/// Every alert not yet resolved, by id.
#[derive(Default, Debug)]
pub struct Board {
    alerts: HashMap<String, AlertState>,
}

impl Board {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `e` in; returns the alert's state afterwards (resolved alerts leave the board, so
    /// the returned state of a `resolved` event is the last one). `None` if the event changed
    /// nothing (a duplicate).
    pub fn apply(&mut self, e: &AlertEvent) -> Option<AlertState> {
        let state = match self.alerts.get_mut(&e.alert_id) {
            Some(s) => {
                if !s.apply(e) {
                    return None;
                }
                s.clone()
            }
            None => AlertState::from_event(e),
        };
        if state.resolved {
            self.alerts.remove(&e.alert_id);
        } else {
            self.alerts.insert(e.alert_id.clone(), state.clone());
        }
        Some(state)
    }

    /// Puts a state known from elsewhere (a retained message, a saved board) on the board,
    /// unless a newer state of the same alert is already there; returns whether it did.
    pub fn insert(&mut self, s: AlertState) -> bool {
        if s.resolved || self.alerts.get(&s.alert_id).is_some_and(|have| have.seq >= s.seq) {
            return false;
        }
        self.alerts.insert(s.alert_id.clone(), s);
        true
    }

    /// One alert.
    pub fn get(&self, alert_id: &str) -> Option<&AlertState> {
        self.alerts.get(alert_id)
    }

    /// Unresolved alerts, most severe first, then the oldest first (what a duty officer should
    /// look at first).
    pub fn sorted(&self) -> Vec<&AlertState> {
        let mut v: Vec<&AlertState> = self.alerts.values().collect();
        v.sort_by(|a, b| {
            b.active
                .cmp(&a.active)
                .then(b.level.cmp(&a.level))
                .then(a.first_ts.cmp(&b.first_ts))
                .then(a.alert_id.cmp(&b.alert_id))
        });
        v
    }

    /// Number of unresolved alerts.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// True when nothing is open.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}
