//! Flood suppression across an incident (EEMUA 191 "alarm flood"; ISA-18.2 designed
//! suppression): when a site alert of a composite with `group_members = true` holds a level,
//! its members' alerts at or below that level are *grouped* under it.
//!
//! A grouped alert lives on as before — its events are published and stored under its own id —
//! but each carries `grouped_under` (the site alert's id), so notifiers leave it to the site
//! alert's one notification, which lists the members, and the console shows it under the site
//! alert. A member alert that rises above the site alert's level, or any member alert once the
//! site alert has cleared, is no longer grouped: it is notified on its own again. The grouping
//! is kept in each alert's record, so reminders follow it and snapshots keep it exactly.

use crate::engine::{Engine, SensorSlot};
use crate::lifecycle::AlertBook;
use crate::sensor_table::SensorTable;
use riskwatch_core::{AlertCategory, AlertEvent, Level, SensorId, SiteId};

impl Engine {
    /// Regroups the members of the grouping composites of `site` after they were evaluated;
    /// the events from `from` on in `out` are this step's, and are marked as their alerts are.
    pub(crate) fn group_members(&mut self, site: &SiteId, from: usize, out: &mut [AlertEvent]) {
        let Some(indices) = self.site_composites.get(site) else { return };
        for i in indices.clone() {
            self.group_members_of(i, from, out);
        }
    }

    /// [`Engine::group_members`] for composite binding `i`.
    pub(crate) fn group_members_of(&mut self, i: usize, from: usize, out: &mut [AlertEvent]) {
        let cb = &self.composite_bindings[i];
        if !self.composites[cb.composite].group_members {
            return;
        }
        let level = cb.state.level;
        let under = cb.alert.clone().filter(|_| level.is_some());
        let wanted = |l: Level| under.as_ref().filter(|_| level.is_some_and(|c| l <= c));
        // The members' open alerts.
        for (sid, bi) in &cb.members {
            let Some(b) = self.sensors.get(sid).and_then(|s| s.bindings.get(*bi)) else { continue };
            let Some(id) = b.alert.as_deref() else { continue };
            let Some(l) = self.book.get(id).map(|r| r.level) else { continue };
            self.book.set_grouped(id, wanted(l));
        }
        // This step's member events (a clear leaves no open alert on the binding).
        for ev in out.iter_mut().skip(from) {
            if ev.category != AlertCategory::Hazard || ev.site != cb.site {
                continue;
            }
            let member = cb.members.iter().any(|(sid, bi)| {
                sid == &ev.subject
                    && self
                        .sensors
                        .get(sid)
                        .and_then(|s| s.bindings.get(*bi))
                        .is_some_and(|b| *self.rule_ids[b.rule] == *ev.rule_id)
            });
            if !member {
                continue;
            }
            let want = wanted(ev.level);
            self.book.set_grouped(&ev.alert_id, want);
            ev.grouped_under = want.cloned();
        }
    }
}

/// The ids of the member alerts a site alert at `level` groups (for its event's details).
pub(crate) fn grouped_ids(
    members: &[(SensorId, usize)],
    sensors: &SensorTable<SensorSlot>,
    book: &AlertBook,
    level: Option<Level>,
) -> Vec<String> {
    let Some(level) = level else { return Vec::new() };
    members
        .iter()
        .filter_map(|(sid, bi)| sensors.get(sid)?.bindings.get(*bi)?.alert.clone())
        .filter(|id| book.get(id).is_some_and(|r| r.level <= level))
        .collect()
}
