//! Shelving (ISA-18.2 / IEC 62682, EEMUA 191): an officer sets an alert aside for a stated
//! time with a reason — a known fault being fixed — so it stops calling for attention while
//! staying open, listed and audited.
//!
//! A shelved alert keeps its whole life: its level changes, acknowledgements and clearing are
//! still events under its id, each carrying `shelved_until`, so a notifier can hold them back
//! and a board can list them apart. No reminder is sent while it is shelved. Shelving ends
//! by itself when its time is up (an `unshelved` event at that processing time), when an
//! officer unshelves it, or at once when the alert escalates: the `escalated` event is then
//! of an alert no longer shelved (it carries no `shelved_until`), so it is notified as usual.
//!
//! The shelf's end is kept in the alert's reminder slot ([`AlertRecord::next_reminder`]):
//! while an alert is shelved, the next thing due for it is its return, so the reminder schedule
//! that already wakes the engine on time does it, survives snapshots with the record and
//! replays identically.

use crate::lifecycle::{AlertRecord, Command, CommandError};
use riskwatch_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The longest an alert may be shelved: 12 hours, one duty shift. Longer needs taking the
/// sensor out of service (a maintenance window), which is planned, not improvised.
pub const MAX_SHELVE_MINUTES: u32 = 12 * 60;

/// An alert's shelving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shelf {
    /// The officer who shelved it.
    pub by: String,
    /// Why (required).
    pub reason: String,
    /// Processing time it was shelved.
    pub since: Timestamp,
    /// Processing time it comes back by itself.
    pub until: Timestamp,
}

/// The shelf a `shelve` command asks for at `now`, or why not.
pub(crate) fn shelf_for(rec: &AlertRecord, cmd: &Command, now: Timestamp) -> Result<Shelf, CommandError> {
    if let Some(s) = &rec.shelved {
        return Err(CommandError::AlreadyShelved { alert: rec.id.clone(), until: s.until.to_rfc3339() });
    }
    let reason = cmd.note.trim();
    if reason.is_empty() {
        return Err(CommandError::MissingReason);
    }
    let minutes = cmd.minutes.ok_or(CommandError::BadDuration(None))?;
    if minutes == 0 || minutes > MAX_SHELVE_MINUTES {
        return Err(CommandError::BadDuration(Some(minutes)));
    }
    Ok(Shelf {
        by: cmd.by.clone(),
        reason: reason.to_string(),
        since: now,
        until: now.plus_millis(i64::from(minutes) * 60_000),
    })
}

/// (Chinese, English) wording of a shelving change for the alert's messages.
pub(crate) fn wording(shelf: Option<&Shelf>, by: Option<&str>, note: &str) -> (String, String) {
    match (shelf, by) {
        (Some(s), _) => {
            let until = s.until.to_cst_minute();
            (
                format!("{} 搁置至 {until}（北京时间），原因：{}", s.by, s.reason),
                format!("shelved by {} until {until} (UTC+8): {}", s.by, s.reason),
            )
        }
        (None, Some(by)) => {
            let (zh, en) = if note.is_empty() {
                (String::new(), String::new())
            } else {
                (format!("：{note}"), format!(": {note}"))
            };
            (format!("{by} 解除搁置{zh}"), format!("unshelved by {by}{en}"))
        }
        (None, None) => ("搁置到期，恢复提醒".into(), "shelving time is up: back on the board".into()),
    }
}
