//! Alerts and the events that describe their lifecycle.
//!
//! An *alert* is the one active condition per (rule, subject). Each change to it — raised,
//! escalated, de-escalated, cleared — is an [`AlertEvent`], which is what sinks store and
//! publish. Ids are derived from event time, never from arrival order or a random source, so a
//! restart or a replay of the same history produces the same ids and duplicates are harmless.

use crate::{Level, SensorId, SensorKind, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    /// The alert became active.
    Raised,
    /// It moved up the ladder.
    Escalated,
    /// It moved down the ladder (still active).
    DeEscalated,
    /// It left the ladder; the alert is no longer active (it stays open until resolved).
    Cleared,
    /// An officer acknowledged it (reminders stop until it escalates again).
    Acknowledged,
    /// It was assigned to a responsible unit.
    Assigned,
    /// An officer closed the loop with a note; the alert is finished.
    Resolved,
    /// Re-notification of a red or orange alert nobody has acknowledged yet.
    Reminder,
    /// A tier of the alert's call-response chain (叫应) was called: `details.call` says who
    /// ([`Call`]).
    Called,
    /// An officer shelved it for a stated time with a reason: it stays open and listed, but
    /// sends no reminders or notifications until it is unshelved (ISA-18.2 shelving).
    Shelved,
    /// Its shelving ended: by time, by an officer, or at once because it escalated.
    Unshelved,
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCategory {
    /// A hazard: the measured world crossed a threshold.
    #[default]
    Hazard,
    /// A problem with the data itself: out of range, stuck, spiking, late or missing.
    DataQuality,
    /// A site-level roll-up of other alerts.
    Composite,
    /// A forecast expects a threshold to be crossed within a lead-time window (forecast rules).
    Forecast,
}

impl AlertCategory {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertCategory::Hazard => "hazard",
            AlertCategory::DataQuality => "data_quality",
            AlertCategory::Composite => "composite",
            AlertCategory::Forecast => "forecast",
        }
    }
}

impl AlertChange {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertChange::Raised => "raised",
            AlertChange::Escalated => "escalated",
            AlertChange::DeEscalated => "de_escalated",
            AlertChange::Cleared => "cleared",
            AlertChange::Acknowledged => "acknowledged",
            AlertChange::Assigned => "assigned",
            AlertChange::Resolved => "resolved",
            AlertChange::Reminder => "reminder",
            AlertChange::Called => "called",
            AlertChange::Shelved => "shelved",
            AlertChange::Unshelved => "unshelved",
        }
    }

    /// Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            AlertChange::Raised => "发布",
            AlertChange::Escalated => "升级",
            AlertChange::DeEscalated => "降级",
            AlertChange::Cleared => "解除",
            AlertChange::Acknowledged => "已确认",
            AlertChange::Assigned => "已派单",
            AlertChange::Resolved => "已处置闭环",
            AlertChange::Reminder => "提醒",
            AlertChange::Called => "叫应",
            AlertChange::Shelved => "已搁置",
            AlertChange::Unshelved => "解除搁置",
        }
    }
}

impl fmt::Display for AlertChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call of an alert's call-response chain (叫应): the tier called, who, through which
/// notification channels, when, and by when they must answer (acknowledge). A `called` event
/// carries it as `details.call`; the `acknowledged` event that stops the chain carries the
/// tier that was waiting as `details.call` too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The chain's id (rules file, `[[chains]]`).
    pub chain: String,
    /// The tier called, from 1.
    pub tier: u32,
    /// Tiers the chain has.
    pub tiers: u32,
    /// Who was called (a person, a post or a unit).
    pub who: String,
    /// Notification channels the call goes out on (ids of `docs/notifications.md` channels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Phone numbers or user ids of the called, for an SMS gateway or a robot's mention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// When the tier was called (processing time).
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
    /// When the next tier is called unless the alert is acknowledged (`None`: the last tier,
    /// nobody after it).
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
}

impl Call {
    /// The call an event carries in `details.call`, if any.
    pub fn of(e: &AlertEvent) -> Option<Call> {
        serde_json::from_value(e.details.as_ref()?.get("call")?.clone()).ok()
    }
}

/// One change to one alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Unique id of this event: `{alert_id}-{seq}`.
    pub event_id: String,
    /// Stable id of the alert this event belongs to.
    pub alert_id: String,
    /// Position of this event in the alert's life, 0 for `raised`.
    pub seq: u32,
    /// The rule that produced it.
    pub rule_id: Arc<str>,
    /// What the alert is about (a sensor id for per-sensor rules).
    pub subject: SensorId,
    /// The subject's site.
    pub site: SiteId,
    /// The subject's sensor kind.
    pub kind: SensorKind,
    /// The site's name as a duty officer reads it (Chinese name first, from the registry;
    /// empty when the engine had none to give, e.g. an event from an older version).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site_name: String,
    /// The subject's name likewise (a sensor's name; a composite's site name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sensor_name: String,
    /// What changed.
    pub change: AlertChange,
    /// Level after the change; for `cleared` and the lifecycle changes, the level the alert
    /// has (or had when it cleared).
    pub level: Level,
    /// Level before the change (`None` for `raised`).
    pub previous_level: Option<Level>,
    /// Highest level reached so far in this alert's life.
    pub highest_level: Level,
    /// Event time the alert was first raised.
    #[serde(with = "crate::time::rfc3339")]
    pub first_ts: Timestamp,
    /// Event time of this change (the reading that caused it).
    #[serde(with = "crate::time::rfc3339")]
    pub ts: Timestamp,
    /// The measured value that caused the change, in `unit`.
    pub value: f64,
    /// The threshold crossed (for `cleared`: the clear threshold, i.e. threshold − deadband).
    pub threshold: f64,
    /// Unit of `value` and `threshold`.
    pub unit: Arc<str>,
    /// Decimal places to show `value` and `threshold` with (the rule's `precision`): every
    /// display rounds to it; the numbers themselves stay as measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Message for duty officers, Chinese.
    pub message_zh: String,
    /// Message for duty officers, English.
    pub message_en: String,
    /// True when produced by a drill or exercise rather than live data.
    #[serde(default)]
    pub exercise: bool,
    /// Hazard, data quality or composite.
    #[serde(default)]
    pub category: AlertCategory,
    /// Who acted, for acknowledged / assigned / resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The officer's note, for acknowledged / assigned / resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The responsible unit the alert is assigned to, once assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// For acknowledged / assigned / resolved: the `command_id` of the command that did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// Facts a detector attaches, e.g. `predicted_failure` (inverse-velocity forecast) for a
    /// landslide, or `pga_m_s2` / `pgv_m_s` for an intensity alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// While the alert is shelved: when its shelving ends. Every event of a shelved alert
    /// (the `shelved` event itself included) carries it, so a notifier can hold them back.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::rfc3339_opt")]
    pub shelved_until: Option<Timestamp>,
    /// While the alert is grouped under an active site alert (flood suppression): that site
    /// alert's id. A notifier leaves such events to the site alert's notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouped_under: Option<String>,
}

impl AlertEvent {
    /// The site's name for a reader, or its id.
    pub fn site_label(&self) -> &str {
        if self.site_name.is_empty() {
            self.site.as_str()
        } else {
            &self.site_name
        }
    }

    /// The subject's name for a reader, or its id.
    pub fn subject_label(&self) -> &str {
        if self.sensor_name.is_empty() {
            self.subject.as_str()
        } else {
            &self.sensor_name
        }
    }

    /// `value` as a person reads it: rounded to `decimals`, with the unit.
    pub fn value_text(&self) -> String {
        format_value(self.value, self.decimals, &self.unit)
    }

    /// `threshold` likewise.
    pub fn threshold_text(&self) -> String {
        format_value(self.threshold, self.decimals, &self.unit)
    }
}

/// A number as a person reads it: rounded to `decimals` (none given: at most 3, trailing
/// zeros dropped), followed by the unit when there is one.
pub fn format_value(v: f64, decimals: Option<u8>, unit: &str) -> String {
    let mut n = match decimals {
        Some(d) => format!("{v:.*}", usize::from(d.min(9))),
        None if !v.is_finite() => v.to_string(),
        None => {
            let s = format!("{v:.3}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
    };
    // -0.001 rounded is "-0.00": a reader sees zero.
    if n.starts_with('-') && n[1..].chars().all(|c| c == '0' || c == '.') {
        n.remove(0);
    }
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// The stable id of an alert: a 64-bit FNV-1a hash of rule, subject and first event time, as
/// 16 hex digits. Same history ⇒ same id, across restarts and replays.
pub fn alert_id(rule_id: &str, subject: &str, first_ts: Timestamp) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(rule_id.as_bytes());
    feed(b"|");
    feed(subject.as_bytes());
    feed(b"|");
    feed(&first_ts.millis().to_be_bytes());
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rounded_as_a_person_reads_them() {
        assert_eq!(format_value(9.231764942589765, Some(2), "m"), "9.23 m");
        assert_eq!(format_value(53.50599913324281, Some(1), "%LEL"), "53.5 %LEL");
        assert_eq!(format_value(100.0, Some(0), "%LEL"), "100 %LEL");
        assert_eq!(format_value(-0.001, Some(2), "m"), "0.00 m");
        assert_eq!(format_value(9.231764942589765, None, "m"), "9.232 m");
        assert_eq!(format_value(27.3, None, ""), "27.3");
        assert_eq!(format_value(120.0, None, "s"), "120 s");
        assert_eq!(format_value(-0.0004, None, ""), "0");
    }

    #[test]
    fn alert_id_is_stable_and_distinguishes_inputs() {
        let t = Timestamp(1_594_080_000_000);
        assert_eq!(alert_id("r", "s", t), alert_id("r", "s", t));
        assert_ne!(alert_id("r", "s", t), alert_id("r", "s2", t));
        assert_ne!(alert_id("r", "s", t), alert_id("r", "s", t.plus_millis(1)));
        assert_eq!(alert_id("r", "s", t).len(), 16);
    }
}
