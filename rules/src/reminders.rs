//! When each open alert's next reminder is due, indexed by time.
//!
//! [`AlertBook::remind`](crate::lifecycle::AlertBook::remind) runs for every reading. Walking
//! every open alert there — thousands on a busy day, most of them cleared and waiting for an
//! officer to resolve them — made it the engine's hottest spot. With this index it only looks
//! at the alerts that are due. The book keeps it in step with each record's `next_reminder`;
//! it is derived state, rebuilt from the records after a snapshot is restored.

use crate::lifecycle::AlertRecord;
use riskwatch_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Alert ids by the time their next reminder is due.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReminderSchedule {
    /// Due time → ids of the alerts due then.
    by_due: BTreeMap<Timestamp, BTreeSet<String>>,
    /// Id → its entry in `by_due`, to move or drop it when the record changes.
    due_of: HashMap<String, Timestamp>,
    /// The first key of `by_due`, kept at hand: [`ReminderSchedule::any_due`] runs for every
    /// reading.
    first_due: Option<Timestamp>,
}

impl ReminderSchedule {
    /// The schedule of these records.
    pub(crate) fn of<'a>(records: impl Iterator<Item = &'a AlertRecord>) -> Self {
        let mut s = ReminderSchedule::default();
        for r in records {
            s.set(&r.id, r.next_reminder);
        }
        s
    }

    /// Records that alert `id` is next due at `due` (`None`: no reminder pending).
    pub(crate) fn set(&mut self, id: &str, due: Option<Timestamp>) {
        let was = self.due_of.get(id).copied();
        if was == due {
            return;
        }
        if let Some(t) = was {
            if let Some(ids) = self.by_due.get_mut(&t) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_due.remove(&t);
                }
            }
            self.due_of.remove(id);
        }
        if let Some(t) = due {
            self.by_due.entry(t).or_default().insert(id.to_string());
            self.due_of.insert(id.to_string(), t);
        }
        self.first_due = self.by_due.first_key_value().map(|(t, _)| *t);
    }

    /// Whether any reminder is due at or before `now`.
    pub(crate) fn any_due(&self, now: Timestamp) -> bool {
        self.first_due.is_some_and(|t| t <= now)
    }

    /// Takes the alerts due at or before `now` out of the schedule, in id order (the order the
    /// book's records, and so their reminders, are in). The caller sets each one's next due time.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_due.first_entry() {
            if *entry.key() > now {
                break;
            }
            due.extend(entry.remove());
        }
        for id in &due {
            self.due_of.remove(id);
        }
        self.first_due = self.by_due.first_key_value().map(|(t, _)| *t);
        due.sort_unstable();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_is_due_in_id_order_and_follows_changes() {
        let mut s = ReminderSchedule::default();
        s.set("b", Some(Timestamp(20)));
        s.set("a", Some(Timestamp(30)));
        s.set("c", Some(Timestamp(10)));
        s.set("d", Some(Timestamp(99)));
        s.set("d", None);
        s.set("a", Some(Timestamp(15)));
        assert!(!s.any_due(Timestamp(9)));
        assert!(s.any_due(Timestamp(10)));
        assert_eq!(s.take_due(Timestamp(20)), vec!["a", "b", "c"]);
        assert!(!s.any_due(Timestamp(1000)), "taken alerts and dropped ones are gone");
        s.set("a", Some(Timestamp(40)));
        assert_eq!(s.take_due(Timestamp(40)), vec!["a"]);
    }
}
