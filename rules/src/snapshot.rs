//! Engine state that survives restarts and rule reloads.
//!
//! A [`Snapshot`] holds everything that decides future events: every binding's ladder state,
//! on/off-delay streaks and window history, data-quality state, composite state, and the open
//! alerts with their acknowledgements and reminder schedule. It is keyed by ids (rule, sensor,
//! site), not positions, so it can be restored into an engine built from an edited rules file:
//! state of rules that still exist carries over, alerts of rules that were removed are cleared
//! with an event saying so. Restoring a snapshot taken mid-stream and feeding the rest of the
//! stream produces exactly the events an uninterrupted run would have.

use crate::bands::BandState;
use crate::config::CompiledRule;
use crate::engine::{Binding, Engine, SensorSlot};
use crate::lifecycle::{AlertBook, LevelChange};
use crate::quality::QualityState;
use crate::sensor_table::SensorTable;
use crate::window::Window;
use crate::{RuleError, RuleSet};
use riskwatch_core::{AlertEvent, Registry, SensorId, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Format version of [`Snapshot`]; bumped on incompatible changes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Serialisable engine state (serde; the embedded store keeps it as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`] when taken.
    pub version: u32,
    sensors: Vec<SensorSnap>,
    composites: Vec<CompositeSnap>,
    book: AlertBook,
    started: Option<Timestamp>,
    next_sweep: Timestamp,
    /// Network role: the latest member update applied per (rule, sensor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    member_marks: Vec<(Arc<str>, SensorId, Timestamp, u32)>,
    /// Alerts walking their call-response chains (`chains`).
    #[serde(default, skip_serializing_if = "crate::chains::Walks::is_empty")]
    chains: crate::chains::Walks,
    /// Forecast rules' state per (rule, sensor) ([`crate::forecast`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    forecasts: Vec<crate::forecast::ForecastSnap>,
    /// Out-of-service windows and their notes.
    #[serde(default, skip_serializing_if = "crate::out_of_service::OutOfService::is_unused")]
    oos: crate::out_of_service::OutOfService,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct BindingSnap {
    rule: String,
    state: BandState,
    window: Window,
    alert: Option<String>,
    #[serde(default)]
    detector: Option<crate::Detector>,
    #[serde(default)]
    last_value: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct QualitySnap {
    state: QualityState,
    tests: [BandState; 5],
    alerts: [Option<String>; 5],
    stale: BandState,
    stale_alert: Option<String>,
    /// When the sensor last came back into service (its silence counts from no earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    returned_at: Option<Timestamp>,
    /// Per test, the value it last flagged while out of service (the return's alert value).
    #[serde(default, skip_serializing_if = "none_withheld")]
    withheld: [Option<f64>; 5],
}

fn none_withheld(w: &[Option<f64>; 5]) -> bool {
    w.iter().all(Option::is_none)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SensorSnap {
    sensor: SensorId,
    last_ts: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    #[serde(default)]
    fault: BandState,
    #[serde(default)]
    fault_alert: Option<String>,
    bindings: Vec<BindingSnap>,
    quality: Option<QualitySnap>,
}

/// One sensor's part of a [`Snapshot`], as a store that keeps sensors apart saves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SensorState(SensorSnap);

impl SensorState {
    /// The sensor.
    pub fn sensor(&self) -> &str {
        self.0.sensor.as_str()
    }
}

impl Snapshot {
    /// A placeholder holding nothing (an engine's part of a save not yet taken).
    pub(crate) fn empty() -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            sensors: Vec::new(),
            composites: Vec::new(),
            book: AlertBook::default(),
            started: None,
            next_sweep: Timestamp(i64::MIN),
            member_marks: Vec::new(),
            chains: Default::default(),
            forecasts: Vec::new(),
            oos: Default::default(),
        }
    }

    /// Takes the sensors out: the rest of the snapshot, and each sensor's state, in id order.
    pub fn split_sensors(mut self) -> (Snapshot, Vec<SensorState>) {
        // Unstable: ids are unique here, and a stable sort of 10 000 sensor states allocated a
        // scratch copy of them (8 MB at a save of every sensor).
        self.sensors.sort_unstable_by(|a, b| a.sensor.cmp(&b.sensor));
        let sensors = std::mem::take(&mut self.sensors).into_iter().map(SensorState).collect();
        (self, sensors)
    }

    /// Puts sensors' states (back) in; a sensor given twice keeps the state given last.
    pub fn with_sensors(mut self, sensors: impl IntoIterator<Item = SensorState>) -> Snapshot {
        // Stable sort by id, then keep the last of each id: given ones after those already in.
        self.sensors.extend(sensors.into_iter().map(|SensorState(s)| s));
        self.sensors.sort_by(|a, b| a.sensor.cmp(&b.sensor));
        let mut kept: Vec<SensorSnap> = Vec::with_capacity(self.sensors.len());
        for s in std::mem::take(&mut self.sensors) {
            match kept.last_mut() {
                Some(last) if last.sensor == s.sensor => *last = s,
                _ => kept.push(s),
            }
        }
        self.sensors = kept;
        self
    }
}

/// A save begun and not yet wholly copied (see [`Engine::begin_snapshot`]).
#[derive(Debug)]
pub(crate) struct PendingSave {
    /// The state apart from sensors, as at the save's point.
    base: Snapshot,
    /// Whether it holds every sensor.
    full: bool,
    /// Positions of sensors to copy (some may have been copied already, see `waiting`).
    left: Vec<u32>,
    /// One bit per position still to copy.
    waiting: Vec<u64>,
    /// Sensors copied so far, as at the save's point.
    copied: Vec<SensorSnap>,
}

impl PendingSave {
    /// Whether the save still waited for `position`; it no longer does.
    #[inline]
    fn unwait(&mut self, position: usize) -> bool {
        let (word, bit) = (position / 64, 1u64 << (position % 64));
        match self.waiting.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                true
            }
            _ => false,
        }
    }

    /// See [`Engine::keep_for_save`] (over the engine's fields, for loops that borrow others).
    #[inline]
    pub(crate) fn keep(
        pending: &mut Option<Box<PendingSave>>,
        sensors: &SensorTable<SensorSlot>,
        rules: &[CompiledRule],
        position: usize,
    ) {
        if let Some(save) = pending.as_deref_mut() {
            if save.unwait(position) {
                let (id, slot) = sensors.entry(position);
                save.copied.push(sensor_snap(rules, id, slot));
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CompositeSnap {
    composite: String,
    site: SiteId,
    state: BandState,
    alert: Option<String>,
}

impl Engine {
    /// The engine's state, to restore after a restart.
    pub fn snapshot(&self) -> Snapshot {
        let mut sensors: Vec<SensorSnap> = self.sensors.iter().map(|(id, slot)| self.sensor_snap(id, slot)).collect();
        sensors.sort_unstable_by(|a, b| a.sensor.cmp(&b.sensor));
        self.snapshot_with(sensors)
    }

    /// The state of what changed since the last call (the first call: everything), for a store
    /// that keeps each sensor's state apart and updates only what changed: the snapshot holds
    /// only the changed sensors, and `true` says it holds every sensor (sensors not in it are to
    /// be forgotten). Its cost is bounded by activity, not by the number of sensors. Its sensors are
    /// in no particular order ([`Snapshot::split_sensors`] sorts them).
    pub fn snapshot_changes(&mut self) -> (Snapshot, bool) {
        self.begin_snapshot();
        self.snapshot_step(usize::MAX).expect("a save copied without a limit is complete")
    }

    /// Begins a save of what changed (as [`Engine::snapshot_changes`]) without copying the
    /// changed sensors at once: the save holds the state as of this call, and each changed
    /// sensor is copied by a later [`Engine::snapshot_step`] or, at the latest, just before the
    /// engine next changes it. A rules stage copying 10 000 sensors at once paused its readings
    /// (and alerts) for 5–100 ms on a busy 2-core machine; in steps of a thousand it never
    /// pauses long. Does nothing while a save is already pending.
    pub fn begin_snapshot(&mut self) {
        if self.pending_save.is_some() {
            return;
        }
        let (left, full) = match self.changes.take() {
            None => ((0..self.sensors.len() as u32).collect(), true),
            Some(positions) => (positions, false),
        };
        let mut waiting = vec![0u64; self.sensors.len().div_ceil(64)];
        for p in &left {
            waiting[*p as usize / 64] |= 1 << (p % 64);
        }
        let copied = Vec::with_capacity(left.len());
        self.pending_save =
            Some(Box::new(PendingSave { base: self.snapshot_with(Vec::new()), full, left, waiting, copied }));
    }

    /// Copies up to `budget` more sensors into the save begun by [`Engine::begin_snapshot`];
    /// returns it, and whether it holds every sensor, once complete (`None` while sensors are
    /// left, or when no save is pending).
    pub fn snapshot_step(&mut self, budget: usize) -> Option<(Snapshot, bool)> {
        let mut pending = self.pending_save.take()?;
        let mut copied = 0;
        while copied < budget {
            let Some(p) = pending.left.pop() else { break };
            if pending.unwait(p as usize) {
                let (id, slot) = self.sensors.entry(p as usize);
                pending.copied.push(sensor_snap(&self.rules, id, slot));
                copied += 1;
            }
        }
        if !pending.left.is_empty() {
            self.pending_save = Some(pending);
            return None;
        }
        // Not sorted here (10 000 ids take ~2 ms): a save's sensors are stored one row each;
        // `split_sensors` and `with_sensors` put them in order where it matters.
        let PendingSave { mut base, full, copied, .. } = *pending;
        base.sensors = copied;
        Some((base, full))
    }

    /// Whether a save is begun and not yet complete.
    pub fn snapshot_pending(&self) -> bool {
        self.pending_save.is_some()
    }

    /// Before the sensor at `position` changes: copies it into the pending save if that still
    /// waits for it. Every change to a sensor's state goes through here first.
    #[inline]
    pub(crate) fn keep_for_save(&mut self, position: usize) {
        PendingSave::keep(&mut self.pending_save, &self.sensors, &self.rules, position);
    }

    /// Copies every sensor the pending save still waits for (before the engine changes many
    /// sensors at once: a restore, a resume, a reload).
    fn keep_all_for_save(&mut self) {
        while let Some(p) = self.pending_save.as_mut().and_then(|s| s.left.pop()) {
            self.keep_for_save(p as usize);
        }
    }

    /// Registered sensors.
    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    /// Sensors whose state changed since the last [`Engine::snapshot_changes`].
    pub fn changed_sensors(&self) -> usize {
        self.changes.count(self.sensors.len())
    }

    fn sensor_snap(&self, id: &SensorId, slot: &SensorSlot) -> SensorSnap {
        sensor_snap(&self.rules, id, slot)
    }

    fn snapshot_with(&self, sensors: Vec<SensorSnap>) -> Snapshot {
        let composites = self
            .composite_bindings
            .iter()
            .map(|c| CompositeSnap {
                composite: self.composites[c.composite].id.clone(),
                site: c.site.clone(),
                state: c.state.clone(),
                alert: c.alert.clone(),
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            sensors,
            composites,
            book: self.book.clone(),
            started: self.started,
            next_sweep: self.next_sweep,
            member_marks: self.member_marks.iter().map(|((r, s), (t, q))| (Arc::clone(r), s.clone(), *t, *q)).collect(),
            chains: self.chains.walks(),
            forecasts: self.forecasts.save(),
            oos: self.oos.clone(),
        }
    }

    /// Restores state taken with [`Engine::snapshot`], possibly from an engine with other
    /// rules. Active alerts whose rule no longer exists are cleared; their events go to `out`.
    ///
    /// Silence is measured from `now` (the restart): readings queued at the broker while the
    /// engine was down are still on their way and must not all look stale at the first tick.
    /// Recovery that replays a log after the snapshot uses [`Engine::restore_exact`] instead.
    pub fn restore(&mut self, snap: Snapshot, now: Timestamp, out: &mut Vec<AlertEvent>) -> Result<(), RuleError> {
        self.restore_with(snap, Some(now), now, out)
    }

    /// Restores state taken with [`Engine::snapshot`] from an engine with the same rules and
    /// registry, exactly as it was: feeding this engine the inputs that followed the snapshot
    /// produces the very events the original engine produced. Fails if anything in the
    /// snapshot has no place in this engine (other rules or sensors).
    pub fn restore_exact(&mut self, snap: Snapshot) -> Result<(), RuleError> {
        let now = snap.next_sweep;
        let mut orphans = Vec::new();
        self.restore_with(snap, None, now, &mut orphans)?;
        match orphans.first() {
            None => Ok(()),
            Some(ev) => Err(RuleError::Invalid(vec![format!(
                "the saved state has alert {} of rule {}, which these rules do not have",
                ev.alert_id, ev.rule_id
            )])),
        }
    }

    /// The engine resumes at `now` after being stopped: sensors that had reported count their
    /// silence from `now` (as [`Engine::restore`] does).
    pub fn resume(&mut self, now: Timestamp) {
        self.keep_all_for_save();
        for position in 0..self.sensors.len() {
            let (_, slot) = self.sensors.at_mut(position);
            if slot.last_seen().is_some() {
                slot.set_last_seen(Some(now));
            }
        }
        self.quiet_until = None;
        self.changes.mark_all();
    }

    fn restore_with(
        &mut self,
        snap: Snapshot,
        resume_at: Option<Timestamp>,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), RuleError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(RuleError::Invalid(vec![format!(
                "snapshot version {} is not {SNAPSHOT_VERSION}",
                snap.version
            )]));
        }
        self.keep_all_for_save();
        self.changes.mark_all();
        self.member_marks = snap.member_marks.into_iter().map(|(r, s, t, q)| ((r, s), (t, q))).collect();
        self.book = snap.book;
        self.chains.restore(snap.chains);
        self.oos = snap.oos;
        self.started = snap.started;
        self.next_sweep = snap.next_sweep;
        // Last-seen times, stale states and member levels change below: the sweep must look
        // again at every sensor and composite.
        self.quiet_until = None;
        self.composite_bindings.iter_mut().for_each(|c| c.band_value = None);
        let mut orphans: Vec<(SensorId, BindingSnap)> = Vec::new();
        // Alerts whose producing check no longer exists in this engine (data quality).
        let mut orphan_alerts: Vec<Option<String>> = self.forecasts.restore(snap.forecasts);
        for s in snap.sensors {
            let Some(slot) = self.sensors.get_mut(&s.sensor) else {
                orphans.extend(s.bindings.into_iter().map(|b| (s.sensor.clone(), b)));
                orphan_alerts.push(s.fault_alert);
                if let Some(q) = s.quality {
                    orphan_alerts.extend(q.alerts);
                    orphan_alerts.push(q.stale_alert);
                }
                continue;
            };
            slot.set_last_ts(s.last_ts);
            slot.set_last_seen(match resume_at {
                Some(at) => s.last_seen.map(|_| at),
                None => s.last_seen,
            });
            slot.set_fault(s.fault);
            slot.fault_alert = s.fault_alert;
            for bs in s.bindings {
                let target: Option<&mut Binding> =
                    slot.bindings.iter_mut().find(|b| self.rules[b.rule].spec.id == bs.rule);
                match target {
                    Some(b) => {
                        b.state = bs.state;
                        b.window = bs.window;
                        b.alert = bs.alert;
                        b.detector = bs.detector;
                        b.last_value = bs.last_value;
                    }
                    None => orphans.push((s.sensor.clone(), bs)),
                }
            }
            match (slot.quality.as_deref_mut(), s.quality) {
                (Some(q), Some(qs)) => {
                    q.state = qs.state;
                    for test in crate::quality::QcTest::ALL {
                        let i = test.index();
                        if q.spec.has(test) {
                            q.tests.set(i, qs.tests[i].clone());
                            q.alerts[i] = qs.alerts[i].clone();
                            q.withheld[i] = qs.withheld[i];
                        } else {
                            orphan_alerts.push(qs.alerts[i].clone());
                        }
                    }
                    if q.stale_after_ms.is_some() {
                        q.stale = qs.stale;
                        q.stale_alert = qs.stale_alert;
                        q.returned_at = qs.returned_at;
                    } else {
                        orphan_alerts.push(qs.stale_alert);
                    }
                }
                (None, Some(qs)) => {
                    orphan_alerts.extend(qs.alerts);
                    orphan_alerts.push(qs.stale_alert);
                }
                _ => {}
            }
        }
        let mut composite_index: HashMap<(String, SiteId), usize> = HashMap::new();
        for (i, c) in self.composite_bindings.iter().enumerate() {
            composite_index.insert((self.composites[c.composite].id.clone(), c.site.clone()), i);
        }
        orphan_alerts.extend(orphans.into_iter().map(|(_, b)| b.alert));
        for cs in snap.composites {
            match composite_index.get(&(cs.composite.clone(), cs.site.clone())) {
                Some(i) => {
                    let c = &mut self.composite_bindings[*i];
                    c.state = cs.state;
                    c.alert = cs.alert;
                }
                None => orphan_alerts.push(cs.alert),
            }
        }
        for mut slot in orphan_alerts {
            let Some(rec) = slot.as_ref().and_then(|id| self.book.get(id)).filter(|r| r.active).cloned() else {
                continue;
            };
            let mut ev = self.book.apply_change(
                &mut slot,
                LevelChange {
                    rule_id: &rec.rule_id,
                    subject: &rec.subject,
                    site: &rec.site,
                    kind: &rec.kind,
                    category: rec.category,
                    from: Some(rec.level),
                    to: None,
                    ts: now,
                    now,
                    value: rec.value,
                    threshold: rec.threshold,
                    unit: Arc::clone(&rec.unit),
                    remind_ms: rec.remind_ms,
                    decimals: rec.decimals,
                },
            );
            let (site, subject) = (rec.site.as_str(), rec.subject.as_str());
            ev.message_zh = format!(
                "【{}预警解除】{} {}：规则 {} 已删除",
                rec.level.zh(),
                self.names.site(site, true),
                self.names.sensor(subject, true),
                rec.rule_id
            );
            ev.message_en = format!(
                "{} alert cleared at {} ({}): rule {} was removed",
                rec.level,
                self.names.sensor(subject, false),
                self.names.site(site, false),
                rec.rule_id
            );
            ev.note = Some("rule removed".into());
            self.names.label(&mut ev);
            out.push(ev);
        }
        self.chains.prune(&self.book);
        Ok(())
    }

    /// Swaps in new rules without losing state: bindings of rules that still exist keep their
    /// levels, delays, windows and alerts; alerts of removed rules are cleared (events to
    /// `out`). On error (the new rules do not fit the registry) the engine is unchanged.
    pub fn reload(
        &mut self,
        rules: &RuleSet,
        registry: &Registry,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), RuleError> {
        let mut next = Engine::with_role(rules, registry, self.role)?;
        next.restore(self.snapshot(), now, out)?;
        next.stats = self.stats;
        // A save in progress is of this engine's state: finish copying it, and carry it over.
        self.keep_all_for_save();
        next.pending_save = self.pending_save.take();
        *self = next;
        Ok(())
    }
}

/// One sensor's state, as a save holds it.
fn sensor_snap(rules: &[CompiledRule], id: &SensorId, slot: &SensorSlot) -> SensorSnap {
    SensorSnap {
        sensor: id.clone(),
        last_ts: slot.last_ts(),
        last_seen: slot.last_seen(),
        fault: slot.fault.clone(),
        fault_alert: slot.fault_alert.clone(),
        bindings: slot
            .bindings
            .iter()
            .map(|b| BindingSnap {
                rule: rules[b.rule].spec.id.clone(),
                state: b.state.clone(),
                window: b.window.clone(),
                alert: b.alert.clone(),
                detector: b.detector.clone(),
                last_value: b.last_value,
            })
            .collect(),
        quality: slot.quality.as_deref().map(|q| QualitySnap {
            state: q.state.clone(),
            tests: q.tests.to_array(),
            alerts: q.alerts.clone(),
            stale: q.stale.clone(),
            stale_alert: q.stale_alert.clone(),
            returned_at: q.returned_at,
            withheld: q.withheld,
        }),
    }
}
