//! Call-response chains (叫应) as the engine walks them.
//!
//! When a hazard or composite alert is raised, or escalates, at a level a chain is defined for
//! ([`crate::chain_spec`]), its first tier is called at once: a `called` event under the
//! alert's id, with the tier, who, the notification channels and the deadline in
//! `details.call`. If the alert is not acknowledged by the deadline, the next tier is called
//! (on the processing clock: the first reading or tick at or after the deadline), with its own
//! deadline counted from its call. One tier per deadline: after a stop, the tier that was due
//! is called once, never a burst of skipped ones. The walk ends when the alert is acknowledged
//! (the `acknowledged` event names the tier that was waiting), clears, is resolved, or
//! escalates (the new level's chain starts from its first tier; ISA-18.2 asks for a new
//! acknowledgement then). A de-escalation keeps the walk going. Data-quality alerts have no
//! chains.
//!
//! The walks are engine state: they are in the [`crate::Snapshot`], so a recovered host calls
//! exactly the tiers the uninterrupted one would have, none twice and none skipped.

use crate::chain_spec::ChainSpec;
use crate::lifecycle::AlertBook;
use crate::names::Names;
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Call, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where one alert is in its chain, while it waits for an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Walk {
    /// The chain's id.
    chain: String,
    /// The tier called last, from 1.
    tier: u32,
    /// When it was called.
    called_at: Timestamp,
    /// When the next tier is due (the tier's answer time after its call); `None` for a last
    /// tier without an answer time.
    deadline: Option<Timestamp>,
}

/// The walks of a [`crate::Snapshot`], by alert id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Walks(BTreeMap<String, Walk>);

impl Walks {
    /// Whether no alert is walking a chain.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The chains of the rules in effect and the alerts walking them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chains {
    specs: Vec<ChainSpec>,
    walks: BTreeMap<String, Walk>,
    /// The earliest time a next tier is due (kept at hand: asked for every reading).
    first_due: Option<Timestamp>,
}

impl Chains {
    /// Chains as defined, no alert walking them yet.
    pub(crate) fn new(specs: Vec<ChainSpec>) -> Self {
        Chains { specs, walks: BTreeMap::new(), first_due: None }
    }

    /// Whether there is anything to follow: chains defined, or walks under way.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        !self.specs.is_empty() || !self.walks.is_empty()
    }

    /// Whether a tier is due at or before `now`.
    #[inline]
    pub(crate) fn may_call(&self, now: Timestamp) -> bool {
        self.first_due.is_some_and(|t| t <= now)
    }

    /// The walks, to save.
    pub(crate) fn walks(&self) -> Walks {
        Walks(self.walks.clone())
    }

    /// Takes over saved walks (restore); [`Chains::prune`] then drops what no longer fits.
    pub(crate) fn restore(&mut self, walks: Walks) {
        self.walks = walks.0;
        self.reschedule();
    }

    /// Starts or stops walks for the events `out[from..]` the engine just produced (raised,
    /// escalated, cleared, resolved), calling first tiers into `out`.
    pub(crate) fn observe(
        &mut self,
        book: &mut AlertBook,
        names: &Names,
        from: usize,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) {
        let mut i = from;
        let mut changed = false;
        // `out` grows with the calls made here; those are `called` events, which start nothing.
        while i < out.len() {
            let e = &out[i];
            i += 1;
            // Data-quality alerts ask for a technician, forecast alerts for preparation hours
            // ahead: neither calls the duty chain (rules.md §4.1).
            if matches!(e.category, AlertCategory::DataQuality | AlertCategory::Forecast) {
                continue;
            }
            match e.change {
                AlertChange::Raised | AlertChange::Escalated => {
                    let id = e.alert_id.clone();
                    changed = true;
                    self.walks.remove(&id);
                    if let Some(c) = ChainSpec::select(&self.specs, e.level, e.site.as_str(), e.kind.as_str()) {
                        let chain = self.specs[c].id.clone();
                        self.call(book, names, &id, chain, 1, now, out);
                    }
                }
                AlertChange::Cleared | AlertChange::Resolved => {
                    changed |= self.walks.remove(&e.alert_id).is_some();
                }
                _ => {}
            }
        }
        // Most readings change no alert: the schedule is left alone then.
        if changed {
            self.reschedule();
        }
    }

    /// Calls the next tier of every walk whose deadline has come, in alert id order.
    pub(crate) fn call_due(&mut self, book: &mut AlertBook, names: &Names, now: Timestamp, out: &mut Vec<AlertEvent>) {
        if !self.may_call(now) {
            return;
        }
        let due: Vec<(String, String, u32)> = self
            .walks
            .iter()
            .filter(|(_, w)| w.deadline.is_some_and(|d| d <= now) && self.next_tier_exists(w))
            .map(|(id, w)| (id.clone(), w.chain.clone(), w.tier + 1))
            .collect();
        for (id, chain, tier) in due {
            match book.get(&id).map(|r| (r.active && r.acked.is_none(), r.shelved.is_some())) {
                // Shelved (rules.md §4.2): the chain waits; the tier due is called at the first
                // tick after the alert is back on the board.
                Some((true, true)) => {}
                Some((true, false)) => self.call(book, names, &id, chain, tier, now, out),
                _ => {
                    self.walks.remove(&id);
                }
            }
        }
        self.reschedule();
    }

    /// An officer's command went through: an acknowledgement ends the walk and names, in the
    /// event's `details.call`, the tier that was waiting; a resolution ends it too.
    pub(crate) fn answer(&mut self, ev: &mut AlertEvent) {
        if !matches!(ev.change, AlertChange::Acknowledged | AlertChange::Resolved) {
            return;
        }
        let Some(walk) = self.walks.remove(&ev.alert_id) else { return };
        if ev.change == AlertChange::Acknowledged {
            if let Some(call) = self.describe(&walk) {
                ev.details = Some(serde_json::json!({ "call": call }));
            }
        }
        self.reschedule();
    }

    /// Drops walks that no longer fit (after a restore or a reload): of alerts no longer open,
    /// active and unacknowledged, or of chains no longer defined.
    pub(crate) fn prune(&mut self, book: &AlertBook) {
        let specs = &self.specs;
        self.walks.retain(|id, w| {
            book.get(id).is_some_and(|r| r.active && r.acked.is_none()) && specs.iter().any(|c| c.id == w.chain)
        });
        self.reschedule();
    }

    fn next_tier_exists(&self, w: &Walk) -> bool {
        self.specs.iter().find(|c| c.id == w.chain).is_some_and(|c| c.tiers.len() > w.tier as usize)
    }

    fn reschedule(&mut self) {
        self.first_due = self.walks.values().filter(|w| self.next_tier_exists(w)).filter_map(|w| w.deadline).min();
    }

    /// The call a walk made last, as events carry it.
    fn describe(&self, w: &Walk) -> Option<Call> {
        let spec = self.specs.iter().find(|c| c.id == w.chain)?;
        let tier = spec.tiers.get(w.tier.checked_sub(1)? as usize)?;
        Some(Call {
            chain: spec.id.clone(),
            tier: w.tier,
            tiers: spec.tiers.len() as u32,
            who: tier.who.clone(),
            notify: tier.notify.clone(),
            contacts: tier.contacts.clone(),
            at: w.called_at,
            deadline: w.deadline,
        })
    }

    /// Calls tier `tier` (from 1) of `chain` for alert `id`: records the walk and appends the
    /// `called` event.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        book: &mut AlertBook,
        names: &Names,
        id: &str,
        chain: String,
        tier: u32,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) {
        let Some(spec) = self.specs.iter().find(|c| c.id == chain) else { return };
        let Some(answer_ms) = spec.answer_ms.get(tier as usize - 1) else { return };
        let walk = Walk { chain, tier, called_at: now, deadline: answer_ms.map(|ms| now.plus_millis(ms)) };
        let Some(call) = self.describe(&walk) else { return };
        let Some(mut ev) = book.lifecycle_event(id, AlertChange::Called, now) else { return };
        let (site, subject) = (ev.site.as_str(), ev.subject.as_str());
        let (zh_by, en_by) = match call.deadline {
            Some(d) => (
                format!("，请于 {}（北京时间）前确认", d.to_cst_minute()),
                format!("; acknowledge by {} (UTC+8)", d.to_cst_minute()),
            ),
            None => ("（最后一级）".to_string(), " (last tier)".to_string()),
        };
        ev.message_zh = format!(
            "【叫应】{} {} {}预警：第 {}/{} 级 呼叫 {}{zh_by}",
            names.site(site, true),
            names.sensor(subject, true),
            ev.level.zh(),
            call.tier,
            call.tiers,
            call.who
        );
        ev.message_en = format!(
            "Call-response: {} alert at {} ({}), tier {} of {}: calling {}{en_by}",
            ev.level,
            names.sensor(subject, false),
            names.site(site, false),
            call.tier,
            call.tiers,
            call.who
        );
        ev.details = Some(serde_json::json!({ "call": call }));
        out.push(ev);
        self.walks.insert(id.to_string(), walk);
    }
}
