//! The engine: binds rules to registered sensors and turns readings into alert events.
//!
//! Per reading: duplicates and out-of-order readings are set aside; data-quality checks run
//! and may raise data-quality alerts; a reading that failed them never moves a hazard alert;
//! otherwise every hazard rule bound to the sensor evaluates its conditions and steps its
//! level ladder; composites of the sensor's site re-evaluate when a member changed. Then
//! time-driven work runs for the processing clock: reminders and stale-sensor detection.

use crate::bands::{BandState, LevelInputs, ThresholdBands};
use crate::composite::{CompositeFacts, CompositeSpec, Member, Scope};
use crate::condition::{Cmp, Feature};
use crate::config::{resolve, CompiledRule, RuleError, RuleSet};
use crate::lifecycle::{AlertBook, Command, CommandError, LevelChange};
use crate::message::MessageTemplate;
use crate::names::Names;
use crate::network::CompositeRole;
use crate::quality::{QcTest, QualityState, ResolvedQuality};
use crate::sensor_table::SensorTable;
use crate::window::Window;
use riskwatch_core::{
    AlertCategory, AlertEvent, Level, Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp,
};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One hazard rule applied to one sensor.
///
/// `repr(C)`: what every reading reads and writes comes first, in declaration order, so it
/// shares as few cache lines as possible (and so [`SensorSlot::prefetch_hot`] can name them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[repr(C)]
pub(crate) struct Binding {
    #[serde(skip)]
    pub rule: usize,
    pub state: BandState,
    /// The measure's latest value (reported by composites over this binding).
    #[serde(default)]
    pub last_value: Option<f64>,
    /// Resolved thresholds, per level, per condition.
    #[serde(skip)]
    pub thresholds: crate::threshold::ResolvedThresholds,
    /// Its inline head comes next; its heap ring is not read by every reading.
    pub window: Window,
    /// Indices of the composite bindings this binding is a member of.
    #[serde(skip)]
    pub member_of: SmallVec<[u32; 2]>,
    pub alert: Option<String>,
    /// Detector of a stateful measure (tangent angle, intensity, STA/LTA).
    pub detector: Option<crate::Detector>,
}

/// Data-quality machinery of one sensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QualitySlot {
    pub spec: ResolvedQuality,
    pub measure: crate::Measure,
    pub state: QualityState,
    /// Alert ladders of the five tests, by [`QcTest::index`].
    pub tests: crate::bands::RestingLadders<5>,
    pub alerts: [Option<String>; 5],
    pub stale_after_ms: Option<i64>,
    pub stale: BandState,
    pub stale_alert: Option<String>,
    /// Processing time the sensor last came back into service from a window covering its
    /// stale check: silence counts from no earlier than this ([`crate::out_of_service`]).
    pub returned_at: Option<Timestamp>,
    /// Per test, by [`QcTest::index`]: the value of the last reading it flagged while out of
    /// service (its alert changes are withheld then); the value of the alert raised on the
    /// return, if the test still holds its level then.
    pub withheld: [Option<f64>; 5],
}

/// Everything the engine keeps per sensor.
///
/// `repr(C)`, hot fields first: see [`Binding`]. Aligned to a cache line, so that what one
/// reading reads (the head of the slot and of its first binding, ~300 bytes) spans as few
/// lines as it can: five.
#[derive(Clone, Debug, PartialEq)]
#[repr(C, align(64))]
pub(crate) struct SensorSlot {
    /// Event time of the last reading ([`SensorSlot::last_ts`]; meaningful when `has_ts`).
    /// Two plain times and flags rather than two `Option`s: 16 bytes fewer in the first
    /// cache line, which lets a reading's state fit five lines.
    last_ts: Timestamp,
    /// Processing time of the last reading (for stale detection: arrival, not event time;
    /// [`SensorSlot::last_seen`]).
    last_seen: Timestamp,
    pub quality: Option<Box<QualitySlot>>,
    has_ts: bool,
    has_seen: bool,
    /// Whether `fault` has a level: the one thing about it every reading asks, kept with the
    /// hot fields. Set wherever `fault` changes ([`SensorSlot::set_fault`]).
    pub fault_raised: bool,
    /// Most sensors have one rule: it sits in the slot itself, one cache miss fewer per reading.
    pub bindings: SmallVec<[Binding; 1]>,
    /// Ladder of the `dq.sensor_fault` alert (the gateway itself flagged readings 4 = fail).
    pub fault: BandState,
    pub fault_alert: Option<String>,
    pub site: SiteId,
    pub kind: SensorKind,
    pub unit: Arc<str>,
}

impl SensorSlot {
    /// Event time of the last reading taken.
    #[inline]
    pub(crate) fn last_ts(&self) -> Option<Timestamp> {
        self.has_ts.then_some(self.last_ts)
    }

    #[inline]
    pub(crate) fn set_last_ts(&mut self, ts: Option<Timestamp>) {
        self.has_ts = ts.is_some();
        self.last_ts = ts.unwrap_or(Timestamp(0));
    }

    /// Processing time of the last reading taken.
    #[inline]
    pub(crate) fn last_seen(&self) -> Option<Timestamp> {
        self.has_seen.then_some(self.last_seen)
    }

    #[inline]
    pub(crate) fn set_last_seen(&mut self, now: Option<Timestamp>) {
        self.has_seen = now.is_some();
        self.last_seen = now.unwrap_or(Timestamp(0));
    }

    /// Replaces the sensor-fault ladder (restore).
    pub(crate) fn set_fault(&mut self, fault: BandState) {
        self.fault_raised = fault.level.is_some();
        self.fault = fault;
    }

    /// Bytes from the start of a slot that a reading reads: the slot's head, its first
    /// binding up to and including the rate window's inline part and ring header. Computed
    /// from the layout.
    pub(crate) const HOT_BYTES: usize = std::mem::offset_of!(SensorSlot, bindings)
        + std::mem::size_of::<SmallVec<[Binding; 1]>>().saturating_sub(std::mem::size_of::<Binding>())
        + std::mem::offset_of!(Binding, window)
        + std::mem::size_of::<Window>();

    /// Starts loading what a reading of this sensor reads first ([`SensorSlot::HOT_BYTES`]).
    /// A hint only.
    #[inline]
    pub(crate) fn prefetch_hot(&self) {
        crate::prefetch::span(
            self as *const SensorSlot as *const u8,
            Self::HOT_BYTES.min(std::mem::size_of::<SensorSlot>()),
        );
    }

    /// Starts loading the rate-window history of the slot's bindings (call once the slot
    /// itself has been loaded). A hint only.
    #[inline]
    pub(crate) fn prefetch_history(&self) {
        if let Some(q) = self.quality.as_deref() {
            crate::prefetch::span(q as *const QualitySlot as *const u8, std::mem::size_of::<QualitySlot>().min(256));
        }
        for b in &self.bindings {
            b.window.prefetch();
        }
    }
}

/// A composite rule applied to one site.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CompositeBinding {
    pub composite: usize,
    pub site: SiteId,
    pub site_subject: SensorId,
    /// (sensor, index of the binding in that sensor's slot).
    pub members: Vec<(SensorId, usize)>,
    pub state: BandState,
    pub alert: Option<String>,
    /// What the members' levels add up to ([`crate::composite::CompositeLevels::band_value`])
    /// as of the last evaluation; `None` once a member's level has changed. The evaluation
    /// every second for delays then needs no member lookups.
    pub band_value: Option<f64>,
}

/// Counters of what the engine did with its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Readings offered.
    pub readings: u64,
    /// Readings of sensors no rule or check applies to.
    pub unmatched: u64,
    /// Readings kept out of hazard rules because their quality is fail or missing (as sent,
    /// or as found by the data-quality checks).
    pub bad_quality: u64,
    /// Readings not newer than the sensor's last one (duplicates, late arrivals).
    pub out_of_order: u64,
    /// Alert events emitted.
    pub events: u64,
}

/// The rule engine. It never does I/O: feed it readings with [`Engine::process`], officers'
/// commands with [`Engine::command`], and the passing of time with [`Engine::advance`].
pub struct Engine {
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) rule_ids: Vec<Arc<str>>,
    pub(crate) composites: Vec<CompositeSpec>,
    pub(crate) composite_ids: Vec<Arc<str>>,
    pub(crate) sensors: SensorTable<SensorSlot>,
    /// Sensors with stale detection, in id order (the order their stale alerts are raised in).
    pub(crate) stale_watch: Vec<SensorId>,
    /// No sensor can turn stale at or before this processing time (`None`: not known, look).
    /// Keeps the once-a-second sweep from visiting every sensor when none is near its limit.
    pub(crate) quiet_until: Option<Timestamp>,
    pub(crate) composite_bindings: Vec<CompositeBinding>,
    /// Indices into `composite_bindings`, by member site.
    pub(crate) site_composites: BTreeMap<SiteId, Vec<usize>>,
    /// Indices into `composite_bindings` the sweep re-evaluates (those at a site, or group, with
    /// a composite that has delays), ascending.
    pub(crate) clock_composites: Vec<usize>,
    pub(crate) book: AlertBook,
    pub(crate) stats: EngineStats,
    /// First processing time seen (baseline for sensors that never reported).
    pub(crate) started: Option<Timestamp>,
    pub(crate) next_sweep: Timestamp,
    /// Reused buffer for detector output.
    pub(crate) scratch: Vec<f64>,
    /// Details of the latest detector measure, until its event takes them.
    pub(crate) details: Option<serde_json::Value>,
    /// Sensors whose state changed since the last [`Engine::snapshot_changes`].
    pub(crate) changes: crate::changes::Changes,
    /// A save begun and not yet wholly copied ([`Engine::begin_snapshot`]).
    pub(crate) pending_save: Option<Box<crate::snapshot::PendingSave>>,
    /// Which composites this engine evaluates.
    pub(crate) role: CompositeRole,
    /// Network role: the latest member update applied per (rule, sensor), as (alert first
    /// event time, seq), so a repeated update (a partition replayed after a crash) changes
    /// nothing.
    pub(crate) member_marks: BTreeMap<(Arc<str>, SensorId), (Timestamp, u32)>,
    /// Site and sensor names from the registry, for messages and events.
    pub(crate) names: Names,
    /// Call-response chains and the alerts walking them (`chains`).
    pub(crate) chains: crate::chains::Chains,
    /// Forecast rules bound to sensors, with their state ([`crate::forecast`]).
    pub(crate) forecasts: crate::forecast::Forecasts,
    /// Out-of-service windows and their notes ([`crate::out_of_service`]).
    pub(crate) oos: crate::out_of_service::OutOfService,
}

pub(crate) const DQ_RULE_IDS: [&str; 5] =
    ["dq.gross_range", "dq.spike", "dq.flat_line", "dq.rate_of_change", "dq.timing"];
pub(crate) const STALE_RULE_ID: &str = "dq.stale";
const FAULT_RULE_ID: &str = "dq.sensor_fault";
/// Good readings needed to clear a sensor-fault alert when no quality table says otherwise.
const DEFAULT_CLEAR_AFTER: u32 = 3;

impl Engine {
    /// Binds every rule, quality check and composite to the registry. Fails, listing every
    /// problem, if a rule does not fit the registry (unknown kind, missing attribute, …).
    pub fn new(rules: &RuleSet, registry: &Registry) -> Result<Self, RuleError> {
        Self::with_role(rules, registry, CompositeRole::All)
    }

    /// Like [`Engine::new`], evaluating only the composites of `role` (the Kafka path splits
    /// sites over partitions and evaluates network composites apart, see [`CompositeRole`]).
    pub fn with_role(rules: &RuleSet, registry: &Registry, role: CompositeRole) -> Result<Self, RuleError> {
        let problems = rules.check_against(registry);
        if !problems.is_empty() {
            return Err(RuleError::Invalid(problems));
        }
        let mut sensors: SensorTable<SensorSlot> = SensorTable::default();
        for s in registry.sensors() {
            let mut bindings: SmallVec<[Binding; 1]> = SmallVec::new();
            for (ri, r) in rules.rules.iter().enumerate().filter(|(_, r)| r.spec.applies_to.matches(s)) {
                let thresholds =
                    crate::threshold::ResolvedThresholds::new(&resolve(r, s).map_err(|p| RuleError::Invalid(vec![p]))?);
                bindings.push(Binding {
                    rule: ri,
                    thresholds,
                    state: BandState::default(),
                    window: Window::default(),
                    alert: None,
                    detector: None,
                    last_value: None,
                    member_of: SmallVec::new(),
                });
            }
            // The first matching quality table applies.
            let quality = match rules.quality.iter().find(|(q, _)| q.applies_to.matches(s)) {
                Some((q, _)) => {
                    let spec = q.resolve(s).map_err(|p| RuleError::Invalid(vec![format!("sensor {}: {p}", s.id)]))?;
                    let stale_after_ms =
                        spec.stale_intervals().zip(s.interval_s).map(|(n, iv)| (n * iv * 1000.0).round() as i64);
                    Some(Box::new(QualitySlot {
                        spec,
                        measure: q.measure,
                        state: QualityState::default(),
                        tests: Default::default(),
                        alerts: Default::default(),
                        stale_after_ms,
                        stale: BandState::default(),
                        stale_alert: None,
                        returned_at: None,
                        withheld: [None; 5],
                    }))
                }
                None => None,
            };
            if bindings.is_empty() && quality.is_none() {
                continue;
            }
            // Held for every sensor for the engine's life: no spare capacity.
            bindings.shrink_to_fit();
            sensors.insert(
                s.id.clone(),
                SensorSlot {
                    site: s.site.clone(),
                    kind: s.kind.clone(),
                    unit: Arc::clone(&s.unit),
                    last_ts: Timestamp(0),
                    last_seen: Timestamp(0),
                    has_ts: false,
                    has_seen: false,
                    quality,
                    fault_raised: false,
                    fault: BandState::default(),
                    fault_alert: None,
                    bindings,
                },
            );
        }
        sensors.shrink_to_fit();
        let mut composite_bindings: Vec<CompositeBinding> = Vec::new();
        let mut site_composites: BTreeMap<SiteId, Vec<usize>> = BTreeMap::new();
        // Sensors by site, each in id order: listed once, not once per site and composite.
        let mut by_site: BTreeMap<&SiteId, Vec<&riskwatch_core::Sensor>> = BTreeMap::new();
        if !rules.composites.is_empty() {
            for s in registry.sensors() {
                by_site.entry(&s.site).or_default().push(s);
            }
        }
        for (ci, (c, _)) in rules.composites.iter().enumerate() {
            if !role.evaluates(c.scope) {
                continue;
            }
            let selected: Vec<&riskwatch_core::Site> = registry
                .sites()
                .filter(|site| c.sites.is_empty() || c.sites.iter().any(|x| x == site.id.as_str()))
                .collect();
            // Groups of sites that share one composite alert, with the alert's site id.
            let groups: Vec<(SiteId, Vec<&riskwatch_core::Site>)> = match c.scope {
                Scope::Site => selected.into_iter().map(|s| (s.id.clone(), vec![s])).collect(),
                Scope::Network => vec![(SiteId::new(&c.id), selected)],
            };
            for (group_id, sites) in groups {
                let mut members = Vec::new();
                for site in &sites {
                    for s in by_site.get(&site.id).into_iter().flatten().copied() {
                        let Some(slot) = sensors.get(&s.id) else { continue };
                        for (bi, b) in slot.bindings.iter().enumerate() {
                            if c.members.matches(&rules.rules[b.rule].spec.id, s) {
                                members.push((s.id.clone(), bi));
                            }
                        }
                    }
                }
                if members.is_empty() {
                    continue;
                }
                let binding = CompositeBinding {
                    composite: ci,
                    site: group_id.clone(),
                    site_subject: SensorId::new(group_id.as_str()),
                    members,
                    state: BandState::default(),
                    alert: None,
                    band_value: None,
                };
                // Index the binding under every member site so a change there re-evaluates it;
                // a network binding is shared through an index into `composite_bindings`.
                let index = composite_bindings.len();
                composite_bindings.push(binding);
                for site in sites {
                    site_composites.entry(site.id.clone()).or_default().push(index);
                }
            }
        }
        // Composites with delays must see time pass even when no member changes; so must every
        // other composite of the same site.
        let delayed: Vec<&SiteId> = composite_bindings
            .iter()
            .filter(|c| {
                let spec = &rules.composites[c.composite].0;
                spec.on_delay != crate::Delay::default() || spec.off_delay != crate::Delay::default()
            })
            .map(|c| &c.site)
            .collect();
        let clock_composites =
            (0..composite_bindings.len()).filter(|i| delayed.contains(&&composite_bindings[*i].site)).collect();
        for (ci, cb) in composite_bindings.iter().enumerate() {
            for (sid, bi) in &cb.members {
                if let Some(b) = sensors.get_mut(sid).and_then(|slot| slot.bindings.get_mut(*bi)) {
                    b.member_of.push(u32::try_from(ci).unwrap_or(u32::MAX));
                }
            }
        }
        // The network host takes no readings: silence there says nothing about a sensor.
        let mut stale_watch: Vec<SensorId> = sensors
            .iter()
            .filter(|_| role != CompositeRole::Network)
            .filter(|(_, slot)| slot.quality.as_ref().is_some_and(|q| q.stale_after_ms.is_some()))
            .map(|(id, _)| id.clone())
            .collect();
        stale_watch.sort();
        Ok(Engine {
            rule_ids: rules.rules.iter().map(|r| Arc::from(r.spec.id.as_str())).collect(),
            rules: rules.rules.clone(),
            composite_ids: rules.composites.iter().map(|(c, _)| Arc::from(c.id.as_str())).collect(),
            composites: rules.composites.iter().map(|(c, _)| c.clone()).collect(),
            sensors,
            stale_watch,
            quiet_until: None,
            composite_bindings,
            site_composites,
            clock_composites,
            book: AlertBook::default(),
            stats: EngineStats::default(),
            started: None,
            next_sweep: Timestamp(i64::MIN),
            scratch: Vec::new(),
            details: None,
            changes: crate::changes::Changes::everything(),
            pending_save: None,
            role,
            member_marks: BTreeMap::new(),
            names: Names::of(registry),
            chains: crate::chains::Chains::new(rules.chains.clone()),
            forecasts: crate::forecast::Forecasts::bind(rules, registry, role)?,
            oos: Default::default(),
        })
    }

    /// A site's name as the registry gives it, Chinese (`zh`) or English, falling back to
    /// the other and then to the id.
    pub fn site_name<'a>(&'a self, id: &'a str, zh: bool) -> &'a str {
        self.names.site(id, zh)
    }

    /// A sensor's (or a composite subject's) name likewise.
    pub fn sensor_name<'a>(&'a self, id: &'a str, zh: bool) -> &'a str {
        self.names.sensor(id, zh)
    }

    /// Number of (rule, sensor) bindings.
    pub fn binding_count(&self) -> usize {
        self.sensors.values().map(|s| s.bindings.len()).sum()
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Open alerts (active, or cleared and awaiting resolution), in id order.
    pub fn open_alerts(&self) -> impl Iterator<Item = &crate::lifecycle::AlertRecord> {
        self.book.iter()
    }

    /// Levels of all active hazard alerts, by (rule id, sensor id).
    pub fn active(&self) -> Vec<(Arc<str>, SensorId, Level)> {
        let mut v: Vec<_> = self
            .book
            .iter()
            .filter(|r| r.active)
            .map(|r| (Arc::clone(&r.rule_id), r.subject.clone(), r.level))
            .collect();
        v.sort();
        v
    }

    /// Runs one reading through data-quality checks and every rule bound to its sensor,
    /// appending the resulting alert events to `out`. `now` is the processing clock (wall
    /// clock live; the reading's event time in replay). Returns the reading's quality flag
    /// after the checks, for the store.
    pub fn process(&mut self, reading: &Reading, now: Timestamp, out: &mut Vec<AlertEvent>) -> Quality {
        let position = self.sensors.position(reading.sensor.as_str());
        self.process_at(position, reading, now, out)
    }

    /// Runs a batch of readings, as [`Engine::process`] would one after the other with the
    /// same `now`, and stores each reading's returned flag in its `quality`:
    /// exactly `for r in readings { r.quality = engine.process(r, now, out) }`, events and
    /// state included, only faster. While one reading is evaluated, the state of the next
    /// few is already being loaded (software prefetch), so the cache misses of a large fleet
    /// overlap instead of following one another.
    pub fn process_batch(&mut self, readings: &mut [Reading], now: Timestamp, out: &mut Vec<AlertEvent>) {
        self.batch(readings, |_| now, out);
    }

    /// [`Engine::process_batch`] with each reading's own event time as the processing clock,
    /// as in a replay: exactly `for r in readings { r.quality = engine.process(r, r.ts, out) }`.
    pub fn replay_batch(&mut self, readings: &mut [Reading], out: &mut Vec<AlertEvent>) {
        self.batch(readings, |r| r.ts, out);
    }

    fn batch(&mut self, readings: &mut [Reading], now_of: impl Fn(&Reading) -> Timestamp, out: &mut Vec<AlertEvent>) {
        /// Readings whose sensors are looked up (and their state prefetched) ahead of
        /// evaluation.
        const CHUNK: usize = 32;
        /// How far ahead of evaluation a reading's rate-window history is prefetched (its
        /// address is only known once the sensor's slot has arrived).
        const AHEAD: usize = 4;
        let mut positions = [None::<usize>; CHUNK];
        for chunk in readings.chunks_mut(CHUNK) {
            // Three passes over the chunk, each issuing independent loads the CPU overlaps:
            // the index entries, then the slots they point to, then (while evaluating) the
            // histories the slots point to.
            for r in chunk.iter() {
                self.sensors.prefetch_position(r.sensor.as_str());
            }
            for (p, r) in positions.iter_mut().zip(chunk.iter()) {
                *p = self.sensors.position(r.sensor.as_str());
                if let Some(p) = *p {
                    self.sensors.at(p).prefetch_hot();
                }
            }
            for i in 0..chunk.len() {
                if let Some(Some(p)) = positions.get(i + AHEAD).filter(|_| i + AHEAD < chunk.len()) {
                    self.sensors.at(*p).prefetch_history();
                }
                let r = &mut chunk[i];
                let now = now_of(r);
                r.quality = self.process_at(positions[i], r, now, out);
            }
        }
    }

    /// [`Engine::process`] for a sensor already looked up (`None`: not in the table).
    #[inline]
    fn process_at(
        &mut self,
        position: Option<usize>,
        reading: &Reading,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Quality {
        self.stats.readings += 1;
        self.started.get_or_insert(now);
        let before = out.len();
        let flag = self.process_reading(position, reading, now, out);
        if self.chains.active() {
            self.chains.observe(&mut self.book, &self.names, before, now, out);
        }
        // `advance`, skipped when it would find nothing to do: no reminder due, no sweep due,
        // no chain tier due (it counts its own events; `started` is set above).
        if now >= self.next_sweep || self.book.may_remind(now) || self.chains.may_call(now) {
            self.advance(now, out);
        }
        self.stats.events += (out.len() - before) as u64;
        self.label(&mut out[before..]);
        flag
    }

    /// Gives events their site and sensor names (every event leaves the engine named).
    pub(crate) fn label(&self, events: &mut [AlertEvent]) {
        for ev in events {
            self.names.label(ev);
        }
    }

    fn process_reading(
        &mut self,
        position: Option<usize>,
        reading: &Reading,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Quality {
        let Some(position) = position else {
            self.stats.unmatched += 1;
            return reading.quality;
        };
        let start = out.len();
        self.keep_for_save(position);
        let slot = self.sensors.at_mut(position).1;
        if slot.last_ts().is_some_and(|last| reading.ts <= last) {
            self.stats.out_of_order += 1;
            return reading.quality;
        }
        self.changes.mark(position);
        let previous_ts = slot.last_ts();
        slot.set_last_ts(Some(reading.ts));
        slot.set_last_seen(Some(now));
        if let (Some(after), Some(quiet)) =
            (slot.quality.as_deref().and_then(|q| q.stale_after_ms), self.quiet_until.as_mut())
        {
            *quiet = (*quiet).min(Timestamp(now.millis().saturating_add(after)));
        }
        let mut flag = reading.quality;
        // The gateway's own verdict first: a detector reporting fault (GB 15322.1, including end
        // of sensor life) is not an all-clear, it is an alert of its own.
        let reported_fault = reading.quality == Quality::Fail;
        if reported_fault || slot.fault_raised {
            let clear_after = slot.quality.as_deref().map_or(DEFAULT_CLEAR_AFTER, |q| q.spec.clear_after());
            sensor_fault(&mut self.book, &self.names, slot, reading, now, reported_fault, clear_after, out);
        }
        if let Some(q) = slot.quality.as_deref_mut() {
            // Out of service, an open stale alert stays as it is until the return.
            if q.stale.level.is_some() && !self.oos.covers(&reading.sensor, &slot.site, STALE_RULE_ID) {
                clear_stale(
                    &mut self.book,
                    &self.names,
                    q,
                    (&reading.sensor, &slot.site, &slot.kind),
                    (reading.ts, now),
                    false,
                    out,
                );
            }
            // Readings the gateway already marked fail or missing carry placeholder values:
            // they must not raise range alerts or become the reference for spike and flat line.
            let measured = if reading.quality.usable_for_hazard() { q.measure.of(reading) } else { None };
            if let Some(v) = measured {
                let outcome = q.spec.check(&mut q.state, reading.ts, v, now);
                if outcome.get(QcTest::Timing) == Some(Quality::Fail) {
                    // A reading stamped far in the future must not make the sensor's correct
                    // readings look out of order.
                    // (Fields, not `set_last_ts`: `q` borrows the slot.)
                    slot.has_ts = previous_ts.is_some();
                    slot.last_ts = previous_ts.unwrap_or(Timestamp(0));
                }
                flag = worst(flag, outcome.flag());
                let at = (reading.ts, now);
                quality_alerts(
                    &mut self.book,
                    &self.names,
                    &self.oos,
                    q,
                    &outcome.results,
                    &reading.sensor,
                    &slot.site,
                    &slot.kind,
                    &slot.unit,
                    at,
                    v,
                    out,
                );
            }
        }
        if !flag.usable_for_hazard() {
            self.stats.bad_quality += 1;
            return flag;
        }
        let mut changed = false;
        let mut withheld = None;
        for b in slot.bindings.iter_mut() {
            let rule = &self.rules[b.rule];
            let v = if rule.spec.measure.is_detector() {
                match crate::detector_measure::measure(
                    rule.spec.measure,
                    &mut b.detector,
                    &rule.gnss,
                    &rule.sta_lta,
                    reading,
                    &mut self.scratch,
                ) {
                    Some((v, d)) => {
                        // Kept aside for the event, if this reading makes one; a local would
                        // cost a drop call on every reading of every binding.
                        self.details = d;
                        v
                    }
                    None => continue,
                }
            } else {
                match rule.spec.measure.of(reading) {
                    Some(v) => v,
                    None => continue,
                }
            };
            b.last_value = Some(v);
            if rule.window_keep_ms > 0 {
                b.window.push(reading.ts.millis(), v, rule.window_resolution_ms, rule.window_keep_ms);
            }
            let inputs = level_inputs(rule, b, reading.ts, v);
            let Some((from, to)) = b.state.step(reading.ts, &inputs, rule.spec.on_delay, rule.spec.off_delay) else {
                continue;
            };
            if self.oos.covers(&reading.sensor, &slot.site, &rule.spec.id) {
                // Out of service: evaluated, but the change is withheld (a note, below).
                withheld = Some(v);
                continue;
            }
            // A change: now find out which condition decided it (same inputs, more detail).
            let eval = evaluate(rule, b, reading.ts, v);
            debug_assert_eq!(eval.inputs, inputs);
            for &ci in &b.member_of {
                if let Some(cb) = self.composite_bindings.get_mut(ci as usize) {
                    cb.band_value = None;
                }
            }
            changed = true;
            let (value, threshold, cond) = if to > from {
                eval.raised_by[to.map_or(0, Level::index)]
            } else {
                eval.held_by[from.map_or(0, Level::index)]
            };
            let feature = cond.map(|c| c.0).unwrap_or(Feature::Value);
            let base_unit = rule.spec.measure.unit(&reading.unit);
            let unit: Arc<str> = match feature {
                Feature::Rate { .. } => Arc::from(format!("{base_unit}/h")),
                _ if std::ptr::eq(base_unit, &*reading.unit) => Arc::clone(&reading.unit),
                _ => Arc::from(base_unit),
            };
            let mut ev = self.book.apply_change(
                &mut b.alert,
                LevelChange {
                    rule_id: &self.rule_ids[b.rule],
                    subject: &reading.sensor,
                    site: &reading.site,
                    kind: &reading.kind,
                    category: AlertCategory::Hazard,
                    from,
                    to,
                    ts: reading.ts,
                    now,
                    value,
                    threshold,
                    unit,
                    remind_ms: rule.remind_ms,
                    decimals: u8::try_from(rule.spec.precision).ok(),
                },
            );
            ev.details = if rule.spec.measure.is_detector() { self.details.take() } else { None };
            render_hazard(&rule.spec.message, rule.spec.precision, cond, &self.names, &mut ev);
            if to > from {
                self.forecasts.link(&self.book, &mut ev);
            }
            out.push(ev);
        }
        if let Some(v) = withheld {
            self.update_note(&reading.sensor, now, Some((reading.ts, v)), out);
        }
        if changed {
            let site = reading.site.clone();
            self.evaluate_composites(&site, reading.ts, now, out);
            self.group_members(&site, start, out);
        }
        flag
    }

    pub(crate) fn evaluate_composites(
        &mut self,
        site: &SiteId,
        ts: Timestamp,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) {
        let Some(indices) = self.site_composites.get(site) else { return };
        for i in indices.clone() {
            self.evaluate_composite(i, ts, now, out);
        }
    }

    pub(crate) fn evaluate_composite(&mut self, i: usize, ts: Timestamp, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let cb = &mut self.composite_bindings[i];
        let spec = &self.composites[cb.composite];
        let value = match cb.band_value {
            Some(v) => v,
            None => {
                let v = spec.band_value(&members_of(&cb.members, &self.sensors, &self.rules, &self.oos));
                cb.band_value = Some(v);
                v
            }
        };
        let Some(t) = ThresholdBands::step(&spec.band_spec(), &mut cb.state, ts, value) else { return };
        let members = members_of(&cb.members, &self.sensors, &self.rules, &self.oos);
        let shown = if t.to > t.from { t.to } else { t.from };
        let strength = shown.map_or(0.0, |l| spec.strength(l, &members));
        let coincidence = spec.coincidence.as_ref().map(|c| c.details(&members));
        let mut ev = self.book.apply_change(
            &mut cb.alert,
            LevelChange {
                rule_id: &self.composite_ids[cb.composite],
                subject: &cb.site_subject,
                site: &cb.site,
                kind: &SensorKind::Custom(Arc::from("site")),
                category: AlertCategory::Composite,
                from: t.from,
                to: t.to,
                ts,
                now,
                value: strength,
                threshold: 0.0,
                unit: Arc::from(""),
                remind_ms: [None, None, Some(15 * 60_000), Some(5 * 60_000)],
                decimals: None,
            },
        );
        let (zh, en) = spec.render_message(&CompositeFacts {
            site: cb.site.as_str(),
            site_name: (self.names.site(cb.site.as_str(), true), self.names.site(cb.site.as_str(), false)),
            level: ev.level,
            change: ev.change,
            strength,
        });
        ev.message_zh = zh;
        ev.message_en = en;
        // What each member saw, so the site alert carries e.g. every station's intensity.
        let members: Vec<serde_json::Value> = cb
            .members
            .iter()
            .filter_map(|(sid, bi)| {
                let b = self.sensors.get(sid)?.bindings.get(*bi)?;
                Some(serde_json::json!({
                    "alert": b.alert,
                    "sensor": sid.as_str(),
                    "rule": self.rules[b.rule].spec.id,
                    "level": b.state.level,
                    "value": b.last_value,
                }))
            })
            .collect();
        ev.details = Some(match coincidence {
            Some(c) => serde_json::json!({ "members": members, "coincidence": c }),
            None => serde_json::json!({ "members": members }),
        });
        if spec.group_members {
            let grouped = crate::grouping::grouped_ids(&cb.members, &self.sensors, &self.book, t.to);
            if let Some(d) = ev.details.as_mut() {
                d["grouped"] = serde_json::json!(grouped);
            }
        }
        out.push(ev);
    }

    /// Lets time pass: reminders for unacknowledged red/orange alerts and stale-sensor
    /// detection, for the processing clock `now`. Call it periodically (live) or with each
    /// reading's event time (replay); [`Engine::process`] calls it too.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let before = out.len();
        self.sweep(now, out);
        self.expire_forecasts(now, out);
        if self.chains.active() {
            let swept = out.len();
            self.chains.observe(&mut self.book, &self.names, before, now, out);
            self.chains.call_due(&mut self.book, &self.names, now, out);
            self.stats.events += (out.len() - swept) as u64;
        }
        self.label(&mut out[before..]);
    }

    fn sweep(&mut self, now: Timestamp, out: &mut Vec<AlertEvent>) {
        self.started.get_or_insert(now);
        let before = out.len();
        self.book.remind(&self.names, now, out);
        if now >= self.next_sweep {
            self.next_sweep = now.plus_millis(1000);
            for k in 0..self.clock_composites.len() {
                let i = self.clock_composites[k];
                let cb = &self.composite_bindings[i];
                // No level holds and nothing is pending: the step would leave everything as is.
                if cb.band_value == Some(0.0) && cb.state == BandState::default() {
                    continue;
                }
                let from = out.len();
                self.evaluate_composite(i, now, now, out);
                self.group_members_of(i, from, out);
            }
            if !self.oos.is_empty() {
                self.service_overruns(now, out);
            }
            if self.quiet_until.is_some_and(|t| now <= t) {
                self.stats.events += (out.len() - before) as u64;
                return;
            }
            let baseline = self.started.unwrap_or(now);
            let mut quiet_until = Timestamp(i64::MAX);
            for id in &self.stale_watch {
                let Some(position) = self.sensors.position(id.as_str()) else { continue };
                crate::snapshot::PendingSave::keep(&mut self.pending_save, &self.sensors, &self.rules, position);
                let slot = self.sensors.at_mut(position).1;
                let Some(q) = slot.quality.as_deref_mut() else { continue };
                let Some(after) = q.stale_after_ms else { continue };
                // Out of service: silence is expected, and counts afresh from the return.
                if self.oos.covers(id, &slot.site, STALE_RULE_ID) {
                    continue;
                }
                let last = if slot.has_seen { slot.last_seen } else { baseline };
                let silent_ms = now.millis() - last.millis();
                let counted_from = q.returned_at.map_or(last, |r| r.max(last));
                if q.stale.level.is_none() && now.millis() - counted_from.millis() > after {
                    self.changes.mark(position);
                    let level = q.spec.level();
                    let inputs = LevelInputs::single(level, true, true);
                    if let Some((from, to)) = q.stale.step(now, &inputs, Default::default(), Default::default()) {
                        let mut ev = self.book.apply_change(
                            &mut q.stale_alert,
                            LevelChange {
                                rule_id: &Arc::from(STALE_RULE_ID),
                                subject: id,
                                site: &slot.site,
                                kind: &slot.kind,
                                category: AlertCategory::DataQuality,
                                from,
                                to,
                                ts: now,
                                now,
                                value: silent_ms as f64 / 1000.0,
                                threshold: after as f64 / 1000.0,
                                unit: Arc::from("s"),
                                remind_ms: [None; 4],
                                decimals: Some(0),
                            },
                        );
                        let (site, sensor) = (slot.site.as_str(), id.as_str());
                        let names = &self.names;
                        ev.message_zh = format!(
                            "【通信中断】{} {}：{} 无数据（超过 {}）",
                            names.site(site, true),
                            names.sensor(sensor, true),
                            crate::message::duration_zh(silent_ms),
                            crate::message::duration_zh(after)
                        );
                        ev.message_en = format!(
                            "Sensor silent: {} ({}) sent nothing for {} (limit {})",
                            names.sensor(sensor, false),
                            names.site(site, false),
                            crate::message::duration_en(silent_ms),
                            crate::message::duration_en(after)
                        );
                        out.push(ev);
                    }
                }
                if q.stale.level.is_none() {
                    quiet_until = quiet_until.min(Timestamp(counted_from.millis().saturating_add(after)));
                }
            }
            self.quiet_until = Some(quiet_until);
        }
        self.stats.events += (out.len() - before) as u64;
    }

    /// Applies an officer's lifecycle command at processing time `now`. An invalid command
    /// returns the reason; the caller reports it to the sender as an error event.
    pub fn command(&mut self, cmd: &Command, now: Timestamp) -> Result<AlertEvent, CommandError> {
        let mut ev = self.book.command(&self.names, cmd, now)?;
        self.chains.answer(&mut ev);
        self.stats.events += 1;
        self.names.label(&mut ev);
        Ok(ev)
    }
}

/// The current levels of a composite binding's members (none for a member out of service).
fn members_of<'a>(
    members: &'a [(SensorId, usize)],
    sensors: &'a SensorTable<SensorSlot>,
    rules: &'a [CompiledRule],
    oos: &crate::out_of_service::OutOfService,
) -> Vec<Member<'a>> {
    members
        .iter()
        .filter_map(|(sid, bi)| {
            let slot = sensors.get(sid)?;
            let b = slot.bindings.get(*bi)?;
            let rule = &rules[b.rule].spec.id;
            let level = if oos.covers(sid, &slot.site, rule) { None } else { b.state.level };
            Some(Member { rule, sensor: sid.as_str(), level })
        })
        .collect()
}

fn worst(a: Quality, b: Quality) -> Quality {
    let rank = |q: Quality| match q {
        Quality::Good => 0,
        Quality::NotEvaluated => 1,
        Quality::Suspect => 2,
        Quality::Fail => 3,
        Quality::Missing => 4,
    };
    if rank(b) > rank(a) || (a == Quality::NotEvaluated && b == Quality::Good) {
        b
    } else {
        a
    }
}

/// What decided a level: (value, threshold, condition).
type Decider = (f64, f64, Option<(Feature, Cmp)>);

/// The result of evaluating one binding's conditions on one reading.
struct Evaluation {
    inputs: LevelInputs,
    /// Per level: the first condition that raises it.
    raised_by: [Decider; 4],
    /// Per level: its first condition, against its clear threshold.
    held_by: [Decider; 4],
}

/// What one reading says about each level of a binding: [`evaluate`]'s `inputs`, without
/// working out which condition decided (needed only when the level changes). A level's
/// conditions are OR-ed, so its remaining ones are skipped once raise and hold are both true.
#[inline]
fn level_inputs(rule: &CompiledRule, b: &Binding, ts: Timestamp, v: f64) -> LevelInputs {
    let mut inputs = LevelInputs::default();
    // `thresholds.level(i)`, walked in order rather than looked up per level.
    let (all, ends) = b.thresholds.flat();
    let mut start = 0;
    for (i, conds) in rule.conditions.iter().enumerate() {
        let end = ends[i] as usize;
        let thresholds = all.get(start..end).unwrap_or_default();
        start = end;
        if conds.is_empty() {
            continue;
        }
        let (mut raise, mut hold) = (false, false);
        for (c, t) in conds.iter().zip(thresholds) {
            let x = match c.feature {
                Feature::Value => v,
                Feature::Rate { window_ms } => match b.window.rate_per_hour(ts.millis(), window_ms) {
                    Some(x) => x,
                    None => continue,
                },
                Feature::Sum { window_ms } => b.window.sum(ts.millis(), window_ms),
            };
            raise |= c.cmp.holds(x, *t);
            hold |= c.cmp.holds(x, c.cmp.clear_threshold(*t, rule.spec.deadband));
            if raise && hold {
                break;
            }
        }
        inputs.raises[i] = Some(raise);
        inputs.holds[i] = Some(hold);
    }
    inputs
}

fn evaluate(rule: &CompiledRule, b: &Binding, ts: Timestamp, v: f64) -> Evaluation {
    let mut e =
        Evaluation { inputs: LevelInputs::default(), raised_by: [(v, 0.0, None); 4], held_by: [(v, 0.0, None); 4] };
    for (i, conds) in rule.conditions.iter().enumerate() {
        if conds.is_empty() {
            continue;
        }
        let (mut raise, mut hold) = (false, false);
        for (j, (c, t)) in conds.iter().zip(b.thresholds.level(i)).enumerate() {
            let x = match c.feature {
                Feature::Value => Some(v),
                Feature::Rate { window_ms } => b.window.rate_per_hour(ts.millis(), window_ms),
                Feature::Sum { window_ms } => Some(b.window.sum(ts.millis(), window_ms)),
            };
            let clear = c.cmp.clear_threshold(*t, rule.spec.deadband);
            if j == 0 {
                e.held_by[i] = (x.unwrap_or(v), clear, Some((c.feature, c.cmp)));
            }
            let Some(x) = x else { continue };
            if !raise && c.cmp.holds(x, *t) {
                raise = true;
                e.raised_by[i] = (x, *t, Some((c.feature, c.cmp)));
            }
            if !hold && c.cmp.holds(x, clear) {
                hold = true;
                if !raise {
                    e.held_by[i] = (x, clear, Some((c.feature, c.cmp)));
                }
            }
        }
        e.inputs.raises[i] = Some(raise);
        e.inputs.holds[i] = Some(hold);
    }
    e
}

/// Fills the event's messages from the rule's templates. `cond` is the condition that decided
/// the change (for `{condition}`, against the event's threshold). Names come from `names`, in
/// the template's language.
pub(crate) fn render_hazard(
    template: &MessageTemplate,
    p: usize,
    cond: Option<(Feature, Cmp)>,
    names: &Names,
    ev: &mut AlertEvent,
) {
    use std::fmt::Write as _;
    let e = &*ev;
    // Formatted once for both languages.
    let (value, threshold) = (std::cell::OnceCell::new(), std::cell::OnceCell::new());
    let value = || value.get_or_init(|| format!("{:.p$}", e.value)).as_str();
    let threshold = || threshold.get_or_init(|| format!("{:.p$}", e.threshold)).as_str();
    let forecast = || {
        e.details
            .as_ref()
            .and_then(|d| d.get("predicted_failure"))
            .and_then(|t| t.as_str())
            .and_then(|t| Timestamp::parse_rfc3339(t).ok())
    };
    let write = |zh: bool| {
        move |name: &str, out: &mut String| -> bool {
            match name {
                "sensor" => out.push_str(e.subject.as_str()),
                "site" => out.push_str(e.site.as_str()),
                "sensor_name" => out.push_str(names.sensor(e.subject.as_str(), zh)),
                "site_name" => out.push_str(names.site(e.site.as_str(), zh)),
                "kind" => out.push_str(e.kind.en()),
                "kind_zh" => out.push_str(e.kind.zh()),
                "value" => out.push_str(value()),
                "threshold" => out.push_str(threshold()),
                "unit" => out.push_str(&e.unit),
                "level" => out.push_str(e.level.as_str()),
                "level_zh" => out.push_str(e.level.zh()),
                "grade" => out.push_str(e.level.grade()),
                "change" => out.extend(e.change.as_str().chars().map(|c| if c == '_' { '-' } else { c })),
                "change_zh" => out.push_str(e.change.zh()),
                "title" => crate::message::title(out, e.level, e.change, false),
                "title_zh" => crate::message::title(out, e.level, e.change, true),
                "status" | "status_zh" => crate::message::status(
                    out,
                    (e.level, e.previous_level, e.change),
                    &(threshold(), &e.unit),
                    name == "status_zh",
                ),
                "rule" => out.push_str(&e.rule_id),
                "condition" => {
                    if let Some((f, c)) = cond {
                        let _ = write!(out, "{f} {} ", c.symbol());
                        out.push_str(threshold());
                    }
                }
                "forecast" => out.push_str(&forecast().map(|t| t.to_rfc3339_cst()).unwrap_or_default()),
                "forecast_zh" => {
                    if let Some(t) = forecast() {
                        let _ = write!(out, "；预测失稳时间 {}（北京时间）", t.to_cst_minute());
                    }
                }
                "forecast_en" => {
                    if let Some(t) = forecast() {
                        let _ = write!(out, "; forecast failure at {} (UTC+8)", t.to_cst_minute());
                    }
                }
                _ => return false,
            }
            true
        }
    };
    let mut zh = String::with_capacity(template.zh.len() + 64);
    MessageTemplate::render_into(&template.zh, &mut zh, write(true));
    let mut en = String::with_capacity(template.en.len() + 64);
    MessageTemplate::render_into(&template.en, &mut en, write(false));
    ev.message_zh = zh;
    ev.message_en = en;
}

#[allow(clippy::too_many_arguments)]
fn quality_alerts(
    book: &mut AlertBook,
    names: &Names,
    oos: &crate::out_of_service::OutOfService,
    q: &mut QualitySlot,
    results: &[Option<Quality>; 5],
    sensor: &SensorId,
    site: &SiteId,
    kind: &SensorKind,
    unit: &Arc<str>,
    (ts, now): (Timestamp, Timestamp),
    v: f64,
    out: &mut Vec<AlertEvent>,
) {
    let level = q.spec.level();
    let off = crate::Delay { samples: q.spec.clear_after(), seconds: 0 };
    for test in QcTest::ALL {
        let i = test.index();
        let Some(result) = results[i] else { continue };
        // Raised on fail; held while the test still flags anything (suspect included), so it
        // clears only after `clear_after` readings that pass.
        let failed = result == Quality::Fail;
        let flagged = matches!(result, Quality::Suspect | Quality::Fail | Quality::Missing);
        if !flagged && q.tests.at_rest(i) {
            // Passing, with no alert and nothing pending: the step would change nothing.
            continue;
        }
        // Out of service (the sensor's window, its site's, or one on this test's rule id): the
        // test's ladder steps as usual, so that the return knows the truth, but its alert is
        // left as it is; the return brings it in line (`quality_back_in_service`).
        let covered = oos.covers(sensor, site, DQ_RULE_IDS[i]);
        if covered && flagged {
            q.withheld[i] = Some(v);
        }
        let inputs = LevelInputs::single(level, failed, flagged);
        let Some((from, to)) = q.tests.get_mut(i).step(ts, &inputs, Default::default(), off) else { continue };
        if covered {
            continue;
        }
        let mut ev = book.apply_change(
            &mut q.alerts[i],
            LevelChange {
                rule_id: &Arc::from(DQ_RULE_IDS[i]),
                subject: sensor,
                site,
                kind,
                category: AlertCategory::DataQuality,
                from,
                to,
                ts,
                now,
                value: v,
                threshold: 0.0,
                unit: Arc::clone(unit),
                remind_ms: [None; 4],
                decimals: Some(2),
            },
        );
        quality_text(names, &q.spec, test, v, (sensor, site), false, &mut ev);
        out.push(ev);
    }
}

/// The messages of a data-quality alert's event of `test`, for the value `v`: what the test
/// found (raised) or that it passes again (cleared); `returned`: on the sensor's return to
/// service, which brings the alert in line with the test at once.
pub(crate) fn quality_text(
    names: &Names,
    spec: &crate::quality::ResolvedQuality,
    test: QcTest,
    v: f64,
    (sensor, site): (&SensorId, &SiteId),
    returned: bool,
    ev: &mut AlertEvent,
) {
    let (site_zh, sensor_zh) = (names.site(site.as_str(), true), names.sensor(sensor.as_str(), true));
    let (site_en, sensor_en) = (names.site(site.as_str(), false), names.sensor(sensor.as_str(), false));
    if ev.change == riskwatch_core::AlertChange::Cleared {
        ev.message_zh = format!("【数据质量恢复】{site_zh} {sensor_zh}（{}）", test.zh());
        ev.message_en = format!("Data quality recovered: {sensor_en} ({site_en}), {}", test.en());
    } else {
        let (zh, en) = spec.explain(test, v);
        ev.message_zh = format!("【数据质量】{site_zh} {sensor_zh}（{}）：{zh}", test.zh());
        ev.message_en = format!("Data quality: {sensor_en} ({site_en}), {}: {en}", test.en());
    }
    if returned {
        ev.message_zh.push_str("（恢复运行）");
        ev.message_en.push_str(" (back in service)");
    }
}

#[allow(clippy::too_many_arguments)]
fn sensor_fault(
    book: &mut AlertBook,
    names: &Names,
    slot: &mut SensorSlot,
    r: &Reading,
    now: Timestamp,
    reported: bool,
    clear_after: u32,
    out: &mut Vec<AlertEvent>,
) {
    let level = Level::Yellow;
    let inputs = LevelInputs::single(level, reported, reported);
    let off = crate::Delay { samples: clear_after, seconds: 0 };
    let step = slot.fault.step(r.ts, &inputs, Default::default(), off);
    slot.fault_raised = slot.fault.level.is_some();
    let Some((from, to)) = step else { return };
    let mut ev = book.apply_change(
        &mut slot.fault_alert,
        LevelChange {
            rule_id: &Arc::from(FAULT_RULE_ID),
            subject: &r.sensor,
            site: &r.site,
            kind: &r.kind,
            category: AlertCategory::DataQuality,
            from,
            to,
            ts: r.ts,
            now,
            value: f64::from(r.quality.code()),
            threshold: f64::from(Quality::Fail.code()),
            unit: Arc::from(""),
            remind_ms: [None; 4],
            decimals: Some(0),
        },
    );
    let (site_zh, sensor_zh) = (names.site(r.site.as_str(), true), names.sensor(r.sensor.as_str(), true));
    let (site_en, sensor_en) = (names.site(r.site.as_str(), false), names.sensor(r.sensor.as_str(), false));
    if to.is_some() {
        ev.message_zh =
            format!("【探测器故障】{site_zh} {sensor_zh}：网关上报故障状态（含传感器寿命终止），该点不再提供有效监测");
        ev.message_en = format!(
            "Sensor fault: {sensor_en} ({site_en}) is reported in fault by its gateway (incl. end of life); this point is not monitoring"
        );
    } else {
        ev.message_zh = format!("【故障恢复】{site_zh} {sensor_zh} 探测器恢复正常上报");
        ev.message_en = format!("Fault cleared: {sensor_en} ({site_en}) reports normal readings again");
    }
    out.push(ev);
}

/// Clears the sensor's stale alert: it reported again, or (`returned`) it came back into
/// service, from when its silence counts afresh.
pub(crate) fn clear_stale(
    book: &mut AlertBook,
    names: &Names,
    q: &mut QualitySlot,
    (sensor, site, kind): (&SensorId, &SiteId, &SensorKind),
    (ts, now): (Timestamp, Timestamp),
    returned: bool,
    out: &mut Vec<AlertEvent>,
) {
    let Some((from, to)) = q.stale.step(
        ts,
        &LevelInputs { raises: [Some(false); 4], holds: [Some(false); 4] },
        Default::default(),
        Default::default(),
    ) else {
        return;
    };
    let mut ev = book.apply_change(
        &mut q.stale_alert,
        LevelChange {
            rule_id: &Arc::from(STALE_RULE_ID),
            subject: sensor,
            site,
            kind,
            category: AlertCategory::DataQuality,
            from,
            to,
            ts,
            now,
            value: 0.0,
            threshold: q.stale_after_ms.unwrap_or(0) as f64 / 1000.0,
            unit: Arc::from("s"),
            remind_ms: [None; 4],
            decimals: Some(0),
        },
    );
    let (site_zh, sensor_zh) = (names.site(site.as_str(), true), names.sensor(sensor.as_str(), true));
    let (site_en, sensor_en) = (names.site(site.as_str(), false), names.sensor(sensor.as_str(), false));
    if returned {
        ev.message_zh = format!("【恢复运行】{site_zh} {sensor_zh} 恢复运行，通信中断自此重新计时");
        ev.message_en = format!("Back in service: {sensor_en} ({site_en}); its silence counts afresh from now");
    } else {
        ev.message_zh = format!("【通信恢复】{site_zh} {sensor_zh} 恢复上报");
        ev.message_en = format!("Sensor reporting again: {sensor_en} ({site_en})");
    }
    out.push(ev);
}
#[cfg(test)]
mod layout {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_readings_state_fits_five_cache_lines() {
        assert_eq!(std::mem::align_of::<SensorSlot>(), 64);
        const { assert!(SensorSlot::HOT_BYTES <= 5 * 64) };
        assert_eq!(std::mem::size_of::<BandState>(), 64);
    }
}
