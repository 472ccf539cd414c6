//! The life of an alert after the rules raised it: acknowledgement, assignment to a
//! responsible unit, resolution with a note (the closed loop the emergency plans ask for), and
//! reminders while a red or orange alert stays unacknowledged.
//!
//! States: *active* while its condition holds, *cleared* once it no longer does; either may be
//! acknowledged and assigned; only a cleared alert can be resolved, which ends it. An alert
//! that escalates after acknowledgement is unacknowledged again (ISA-18.2 practice), so the
//! new severity gets its own acknowledgement and reminders.

use crate::names::Names;
use crate::reminders::ReminderSchedule;
use riskwatch_core::alert::alert_id;
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level, SensorId, SensorKind, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What an officer asks to do with an alert (from the MQTT command topic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The sender's id for this command, echoed in the resulting event or error.
    #[serde(default)]
    pub command_id: Option<String>,
    /// The alert concerned.
    pub alert_id: String,
    /// What to do.
    pub action: Action,
    /// Operator name or id.
    pub by: String,
    /// Free text: what was done, who was sent.
    #[serde(default)]
    pub note: String,
    /// Responsible unit, for `assign`.
    #[serde(default)]
    pub unit: Option<String>,
    /// The alert's site, as in its events. The production path needs it to route the command
    /// to the rules worker that owns the alert; the engine itself does not use it.
    #[serde(default)]
    pub site: Option<String>,
    /// For `shelve`: how long, in minutes (1 to [`crate::shelving::MAX_SHELVE_MINUTES`]).
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// Lifecycle actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// "I have seen it."
    Acknowledge,
    /// Hand it to a responsible unit (work order).
    Assign,
    /// Close the loop once the condition has cleared; needs a note.
    Resolve,
    /// Set it aside for `minutes` with a reason in `note` (see [`crate::shelving`]).
    Shelve,
    /// End its shelving before its time.
    Unshelve,
}

/// Why a command was refused. Each becomes an error event for the sender — never a silent drop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No open alert has this id (never existed, or already resolved).
    #[error("unknown alert {0:?} (no open alert has this id; it may already be resolved)")]
    UnknownAlert(String),
    /// `by` is empty.
    #[error("by: the operator must be named")]
    MissingOperator,
    /// Acknowledged already.
    #[error("alert {alert} is already acknowledged by {by}")]
    AlreadyAcknowledged {
        /// The alert.
        alert: String,
        /// Who acknowledged it.
        by: String,
    },
    /// `assign` without a unit.
    #[error("unit: assign needs the responsible unit")]
    MissingUnit,
    /// `resolve` while the condition still holds.
    #[error("alert {alert} is still active at {level}; it can be resolved once it clears")]
    StillActive {
        /// The alert.
        alert: String,
        /// Its current level.
        level: Level,
    },
    /// `resolve` without a note.
    #[error("note: resolving needs a note saying what was done")]
    MissingNote,
    /// `shelve` on an alert already shelved.
    #[error("alert {alert} is already shelved until {until}; unshelve it first")]
    AlreadyShelved {
        /// The alert.
        alert: String,
        /// When its shelving ends (RFC 3339).
        until: String,
    },
    /// `unshelve` on an alert not shelved.
    #[error("alert {0} is not shelved")]
    NotShelved(String),
    /// `shelve` without a reason.
    #[error("note: shelving needs the reason (e.g. the known fault being fixed)")]
    MissingReason,
    /// `shelve` without `minutes`, or with too many.
    #[error("minutes: shelving needs a duration of 1 to {max} minutes{}", .0.map(|m| format!(" (got {m})")).unwrap_or_default(), max = crate::shelving::MAX_SHELVE_MINUTES)]
    BadDuration(Option<u32>),
    /// A window command that names no target, or two.
    #[error("sensor, site, rule: name what goes out of service: a sensor, a site, or a rule (optionally at one site)")]
    BadTarget,
    /// A target this engine has nothing of.
    #[error("{0}: nothing here has this id")]
    UnknownTarget(String),
    /// A window with no valid end.
    #[error("{0}")]
    BadWindow(String),
    /// `out_of_service` on a target already out of service.
    #[error("{0} is already out of service; return it to service first")]
    AlreadyOutOfService(String),
    /// `return_to_service` on a target that is not out of service.
    #[error("{0} is not out of service")]
    NotOutOfService(String),
}

impl CommandError {
    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownAlert(_) => "unknown_alert",
            CommandError::MissingOperator => "missing_operator",
            CommandError::AlreadyAcknowledged { .. } => "already_acknowledged",
            CommandError::MissingUnit => "missing_unit",
            CommandError::StillActive { .. } => "wrong_state",
            CommandError::MissingNote => "missing_note",
            CommandError::AlreadyShelved { .. } => "already_shelved",
            CommandError::NotShelved(_) => "not_shelved",
            CommandError::MissingReason => "missing_reason",
            CommandError::BadDuration(_) => "bad_duration",
            CommandError::BadTarget => "bad_target",
            CommandError::UnknownTarget(_) => "unknown_target",
            CommandError::BadWindow(_) => "bad_window",
            CommandError::AlreadyOutOfService(_) => "already_out_of_service",
            CommandError::NotOutOfService(_) => "not_out_of_service",
        }
    }
}

/// Everything known about one open alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable id.
    pub id: String,
    /// Producing rule (or `dq.*` check, or composite).
    pub rule_id: Arc<str>,
    /// Sensor or site it is about.
    pub subject: SensorId,
    /// Site.
    pub site: SiteId,
    /// Kind of the subject.
    pub kind: SensorKind,
    /// Hazard, data quality or composite.
    pub category: AlertCategory,
    /// Current (or last) level.
    pub level: Level,
    /// Highest level reached.
    pub highest: Level,
    /// Event time raised.
    pub first_ts: Timestamp,
    /// Processing time raised (reminders run on the processing clock, so history replayed
    /// live does not trigger a burst of overdue reminders).
    pub raised_at: Timestamp,
    /// Sequence number of the latest event.
    pub seq: u32,
    /// Whether the condition still holds.
    pub active: bool,
    /// Who acknowledged it, and when.
    pub acked: Option<(String, Timestamp)>,
    /// Responsible unit.
    pub assignee: Option<String>,
    /// When the next reminder is due.
    pub next_reminder: Option<Timestamp>,
    /// Reminder interval per level, ms.
    pub remind_ms: [Option<i64>; 4],
    /// Value and threshold of the latest level change, with their unit.
    pub value: f64,
    /// See `value`.
    pub threshold: f64,
    /// See `value`.
    pub unit: Arc<str>,
    /// Decimal places a person reads `value` and `threshold` with (the rule's precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Its shelving, while shelved (then `next_reminder` is the shelf's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelved: Option<crate::shelving::Shelf>,
    /// The site alert it is grouped under, while it is (flood suppression, [`crate::grouping`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouped_under: Option<String>,
}

/// A level change computed by a rule, to be turned into an event.
pub struct LevelChange<'a> {
    /// Producing rule id.
    pub rule_id: &'a Arc<str>,
    /// Subject.
    pub subject: &'a SensorId,
    /// Site.
    pub site: &'a SiteId,
    /// Kind.
    pub kind: &'a SensorKind,
    /// Category.
    pub category: AlertCategory,
    /// Before.
    pub from: Option<Level>,
    /// After (`None` = cleared).
    pub to: Option<Level>,
    /// Event time.
    pub ts: Timestamp,
    /// Processing time (wall clock live, event time in replay).
    pub now: Timestamp,
    /// Deciding value and threshold, and their unit.
    pub value: f64,
    /// See `value`.
    pub threshold: f64,
    /// See `value`.
    pub unit: Arc<str>,
    /// Reminder intervals of the rule.
    pub remind_ms: [Option<i64>; 4],
    /// Decimal places to show the value and threshold with.
    pub decimals: Option<u8>,
}

/// All open alerts, by id. Sorted, so snapshots and reminder order are deterministic.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AlertBook {
    records: BTreeMap<String, AlertRecord>,
    /// The records' pending reminders by due time (`None` until built from the records, as
    /// after deserialising). Every change to a record's `next_reminder` goes through
    /// [`AlertBook::reschedule`].
    #[serde(skip)]
    schedule: Option<ReminderSchedule>,
}

/// Books are equal when they hold the same alerts; the schedule is derived from them.
impl PartialEq for AlertBook {
    fn eq(&self, other: &Self) -> bool {
        self.records == other.records
    }
}

impl AlertBook {
    /// An open alert.
    pub fn get(&self, id: &str) -> Option<&AlertRecord> {
        self.records.get(id)
    }

    /// All open alerts.
    pub fn iter(&self) -> impl Iterator<Item = &AlertRecord> {
        self.records.values()
    }

    /// Applies a level change to the alert in `slot` (the binding's current alert id),
    /// returning the event with messages still empty for the caller to fill.
    pub fn apply_change(&mut self, slot: &mut Option<String>, c: LevelChange<'_>) -> AlertEvent {
        let (change, level) = match (c.from, c.to) {
            (None, Some(to)) => (AlertChange::Raised, to),
            (Some(from), Some(to)) if to > from => (AlertChange::Escalated, to),
            (Some(_), Some(to)) => (AlertChange::DeEscalated, to),
            (Some(from), None) => (AlertChange::Cleared, from),
            (None, None) => unreachable!("only changes are applied"),
        };
        let existing = slot.as_ref().and_then(|id| self.records.get_mut(id));
        let rec = match existing {
            Some(rec) if change != AlertChange::Raised => {
                rec.seq += 1;
                rec
            }
            _ => {
                let id = alert_id(c.rule_id, c.subject.as_str(), c.ts);
                let rec = AlertRecord {
                    id: id.clone(),
                    rule_id: Arc::clone(c.rule_id),
                    subject: c.subject.clone(),
                    site: c.site.clone(),
                    kind: c.kind.clone(),
                    category: c.category,
                    level,
                    highest: level,
                    first_ts: c.ts,
                    raised_at: c.now,
                    seq: 0,
                    active: true,
                    acked: None,
                    assignee: None,
                    next_reminder: None,
                    remind_ms: c.remind_ms,
                    value: c.value,
                    threshold: c.threshold,
                    unit: Arc::clone(&c.unit),
                    decimals: c.decimals,
                    shelved: None,
                    grouped_under: None,
                };
                *slot = Some(id.clone());
                self.records.entry(id).or_insert(rec)
            }
        };
        let previous = rec.level;
        rec.level = level;
        rec.highest = rec.highest.max(level);
        rec.value = c.value;
        rec.threshold = c.threshold;
        rec.unit = Arc::clone(&c.unit);
        rec.decimals = c.decimals;
        match change {
            AlertChange::Cleared => {
                rec.active = false;
                rec.next_reminder = None;
                *slot = None;
            }
            AlertChange::Escalated => {
                rec.acked = None;
                // A shelved alert that escalates is back at once.
                rec.shelved = None;
            }
            _ => {}
        }
        if rec.active && rec.acked.is_none() && (change == AlertChange::Raised || level != previous) {
            rec.next_reminder = rec.remind_ms[level.index()].map(|ms| c.now.plus_millis(ms));
        }
        if let Some(shelf) = &rec.shelved {
            rec.next_reminder = Some(shelf.until);
        }
        let ev = event(rec, change, c.ts, c.from);
        // A cleared alert nobody ever needs to close is not kept around: data-quality alerts
        // close themselves when the data recovers.
        if change == AlertChange::Cleared && rec.category == AlertCategory::DataQuality {
            let id = rec.id.clone();
            self.records.remove(&id);
        }
        self.reschedule(&ev.alert_id);
        ev
    }

    /// Brings the schedule in line with record `id`'s `next_reminder` (or its removal).
    fn reschedule(&mut self, id: &str) {
        if let Some(schedule) = self.schedule.as_mut() {
            schedule.set(id, self.records.get(id).and_then(|r| r.next_reminder));
        }
    }

    /// Applies an officer's command.
    pub(crate) fn command(&mut self, names: &Names, cmd: &Command, now: Timestamp) -> Result<AlertEvent, CommandError> {
        if cmd.by.trim().is_empty() {
            return Err(CommandError::MissingOperator);
        }
        let rec =
            self.records.get_mut(&cmd.alert_id).ok_or_else(|| CommandError::UnknownAlert(cmd.alert_id.clone()))?;
        let change = match cmd.action {
            Action::Acknowledge => {
                if let Some((by, _)) = &rec.acked {
                    return Err(CommandError::AlreadyAcknowledged { alert: rec.id.clone(), by: by.clone() });
                }
                rec.acked = Some((cmd.by.clone(), now));
                rec.next_reminder = None;
                AlertChange::Acknowledged
            }
            Action::Assign => {
                let unit =
                    cmd.unit.as_deref().map(str::trim).filter(|u| !u.is_empty()).ok_or(CommandError::MissingUnit)?;
                rec.assignee = Some(unit.to_string());
                AlertChange::Assigned
            }
            Action::Resolve => {
                if rec.active {
                    return Err(CommandError::StillActive { alert: rec.id.clone(), level: rec.level });
                }
                if cmd.note.trim().is_empty() {
                    return Err(CommandError::MissingNote);
                }
                AlertChange::Resolved
            }
            Action::Shelve => {
                let shelf = crate::shelving::shelf_for(rec, cmd, now)?;
                rec.next_reminder = Some(shelf.until);
                rec.shelved = Some(shelf);
                AlertChange::Shelved
            }
            Action::Unshelve => {
                if rec.shelved.take().is_none() {
                    return Err(CommandError::NotShelved(rec.id.clone()));
                }
                rec.next_reminder = back_from_shelf(rec, now);
                AlertChange::Unshelved
            }
        };
        if let Some(shelf) = &rec.shelved {
            rec.next_reminder = Some(shelf.until);
        }
        rec.seq += 1;
        let mut ev = event(rec, change, now, Some(rec.level));
        ev.by = Some(cmd.by.clone());
        ev.command_id = cmd.command_id.clone();
        ev.note = (!cmd.note.is_empty()).then(|| cmd.note.clone());
        let who = &cmd.by;
        let note = if cmd.note.is_empty() { String::new() } else { format!(": {}", cmd.note) };
        let note_zh = if cmd.note.is_empty() { String::new() } else { format!("：{}", cmd.note) };
        let (zh, en) = match change {
            AlertChange::Acknowledged => (format!("{who} 已确认{note_zh}"), format!("acknowledged by {who}{note}")),
            AlertChange::Assigned => {
                let unit = rec.assignee.clone().unwrap_or_default();
                (format!("{who} 派单至 {unit}{note_zh}"), format!("assigned to {unit} by {who}{note}"))
            }
            AlertChange::Shelved | AlertChange::Unshelved => {
                crate::shelving::wording(rec.shelved.as_ref(), Some(who), cmd.note.trim())
            }
            _ => (format!("{who} 处置完毕，闭环{note_zh}"), format!("resolved by {who}{note}")),
        };
        let (site, subject) = (rec.site.as_str(), rec.subject.as_str());
        ev.message_zh =
            format!("【{}预警】{} {}：{zh}", rec.level.zh(), names.site(site, true), names.sensor(subject, true));
        ev.message_en =
            format!("{} alert at {} ({}): {en}", rec.level, names.sensor(subject, false), names.site(site, false));
        if change == AlertChange::Resolved {
            let id = rec.id.clone();
            self.records.remove(&id);
        }
        self.reschedule(&cmd.alert_id);
        Ok(ev)
    }

    /// An event of open alert `id` at `now` that changes nothing about it but its sequence
    /// number (a call of its call-response chain, see `chains`); messages left for the caller.
    pub(crate) fn lifecycle_event(&mut self, id: &str, change: AlertChange, now: Timestamp) -> Option<AlertEvent> {
        let rec = self.records.get_mut(id)?;
        rec.seq += 1;
        Some(event(rec, change, now, Some(rec.level)))
    }

    /// Whether [`AlertBook::remind`] might have something to do at `now` (false: it would
    /// return at once). Cheap enough to ask for every reading.
    #[inline]
    pub fn may_remind(&self, now: Timestamp) -> bool {
        self.schedule.as_ref().is_none_or(|s| s.any_due(now))
    }

    /// Emits the reminders due at `now`: one per due alert, then the next is scheduled one
    /// interval later (missed intervals are not replayed as a burst). A shelved alert whose
    /// time is up comes back instead (`unshelved`, see [`crate::shelving`]).
    pub(crate) fn remind(&mut self, names: &Names, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let schedule = self.schedule.get_or_insert_with(|| ReminderSchedule::of(self.records.values()));
        if !schedule.any_due(now) {
            return;
        }
        for id in schedule.take_due(now) {
            let Some(rec) = self.records.get_mut(&id) else { continue };
            if let Some(ev) = remind_one(rec, names, now) {
                out.push(ev);
            }
            schedule.set(&id, rec.next_reminder);
        }
    }

    /// Sets the site alert record `id` is grouped under; whether that changed it.
    pub(crate) fn set_grouped(&mut self, id: &str, under: Option<&String>) -> bool {
        match self.records.get_mut(id) {
            Some(rec) if rec.grouped_under.as_ref() != under => {
                rec.grouped_under = under.cloned();
                true
            }
            _ => false,
        }
    }

    /// Restores records (snapshot).
    pub fn insert(&mut self, rec: AlertRecord) {
        let id = rec.id.clone();
        self.records.insert(id.clone(), rec);
        self.reschedule(&id);
    }

    /// Removes a record (rule removed on reload).
    pub fn remove(&mut self, id: &str) -> Option<AlertRecord> {
        let rec = self.records.remove(id);
        self.reschedule(id);
        rec
    }

    /// Number of open alerts.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no alert is open.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The reminder for one alert if it is due at `now`, scheduling the next one interval later
/// (missed intervals are not replayed as a burst).
fn remind_one(rec: &mut AlertRecord, names: &Names, now: Timestamp) -> Option<AlertEvent> {
    let due = rec.next_reminder?;
    if due > now {
        return None;
    }
    if rec.shelved.is_some() {
        return Some(unshelve_by_time(rec, names, now));
    }
    if !rec.active || rec.acked.is_some() {
        return None;
    }
    let Some(every) = rec.remind_ms[rec.level.index()] else {
        rec.next_reminder = None;
        return None;
    };
    let mut next = due;
    while next <= now {
        next = next.plus_millis(every);
    }
    rec.next_reminder = Some(next);
    rec.seq += 1;
    let mut ev = event(rec, AlertChange::Reminder, now, Some(rec.level));
    let open_ms = now.millis() - rec.raised_at.millis();
    let (site, subject) = (rec.site.as_str(), rec.subject.as_str());
    ev.message_zh = format!(
        "【提醒】{} {} {}预警已持续 {}，尚未确认",
        names.site(site, true),
        names.sensor(subject, true),
        rec.level.zh(),
        crate::message::duration_zh(open_ms)
    );
    ev.message_en = format!(
        "Reminder: {} alert at {} ({}) unacknowledged for {}",
        rec.level,
        names.sensor(subject, false),
        names.site(site, false),
        crate::message::duration_en(open_ms)
    );
    Some(ev)
}

/// When the first reminder is due for an alert coming back from its shelf at `now`: one
/// interval on, if it still calls for one.
fn back_from_shelf(rec: &AlertRecord, now: Timestamp) -> Option<Timestamp> {
    if !rec.active || rec.acked.is_some() {
        return None;
    }
    rec.remind_ms[rec.level.index()].map(|ms| now.plus_millis(ms))
}

/// The `unshelved` event of an alert whose shelving time is up at `now`.
fn unshelve_by_time(rec: &mut AlertRecord, names: &Names, now: Timestamp) -> AlertEvent {
    rec.shelved = None;
    rec.next_reminder = back_from_shelf(rec, now);
    rec.seq += 1;
    let mut ev = event(rec, AlertChange::Unshelved, now, Some(rec.level));
    let (zh, en) = crate::shelving::wording(None, None, "");
    let (site, subject) = (rec.site.as_str(), rec.subject.as_str());
    ev.message_zh =
        format!("【{}预警】{} {}：{zh}", rec.level.zh(), names.site(site, true), names.sensor(subject, true));
    ev.message_en =
        format!("{} alert at {} ({}): {en}", rec.level, names.sensor(subject, false), names.site(site, false));
    ev
}

fn event(rec: &AlertRecord, change: AlertChange, ts: Timestamp, previous: Option<Level>) -> AlertEvent {
    AlertEvent {
        event_id: format!("{}-{}", rec.id, rec.seq),
        alert_id: rec.id.clone(),
        seq: rec.seq,
        rule_id: Arc::clone(&rec.rule_id),
        subject: rec.subject.clone(),
        site: rec.site.clone(),
        kind: rec.kind.clone(),
        change,
        level: rec.level,
        previous_level: previous,
        highest_level: rec.highest,
        first_ts: rec.first_ts,
        ts,
        value: rec.value,
        threshold: rec.threshold,
        unit: Arc::clone(&rec.unit),
        decimals: rec.decimals,
        site_name: String::new(),
        sensor_name: String::new(),
        message_zh: String::new(),
        message_en: String::new(),
        exercise: false,
        category: rec.category,
        by: None,
        note: None,
        assignee: rec.assignee.clone(),
        command_id: None,
        details: None,
        shelved_until: rec.shelved.as_ref().map(|s| s.until),
        grouped_under: rec.grouped_under.clone(),
    }
}
