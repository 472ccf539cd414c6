//! The rules host: the engine and everything around it that both wirings need, with no I/O.
//!
//! A [`RulesHost`] owns the live [`Engine`] and the exercise side ([`Drill`]), applies
//! officers' commands, reloads rules and registry from their text, decides when its state is
//! worth saving, and recovers. Its input is one ordered log of [`Input`]s — readings, commands,
//! clock ticks, restarts, reloads — each with the processing time it happened at; its outputs
//! are alert events, refusals and [`HostSnapshot`]s. The embedded pipeline and the Kafka rules
//! worker are thin I/O loops around it: they record each input durably, apply it, and publish
//! the events only once the input is recorded.
//!
//! Recovery is exact: [`RulesHost::recover`] from any snapshot, then [`RulesHost::apply`] of the
//! inputs recorded after its [`HostSnapshot::position`], produces the very events (ids and
//! content) the uninterrupted host produced. An `event_id` is therefore never reused for
//! different content, whatever crashed in between.

mod codec;
mod command;
mod input;

pub use codec::CodecError;
pub use command::{apply_command, Refused};
pub use input::Input;

use crate::drill::DrillState;
use crate::{CompositeRole, Drill, Engine, RuleError, RuleSet, Snapshot};
use riskwatch_core::{AlertEvent, Registry, RegistryError, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Format version of [`HostSnapshot`].
pub const HOST_SNAPSHOT_VERSION: u32 = 1;

/// By default a snapshot is due after this much processing time with inputs since the last.
pub const DEFAULT_SNAPSHOT_EVERY_MS: i64 = 5_000;

/// By default a snapshot is due as soon as this many sensors changed (copying a sensor's state
/// takes ~0.3–1 µs, so this bounds the pause a save makes at a few milliseconds at any
/// activity) — in registries of more than [`EARLY_SAVE_FACTOR`] times as many sensors. In
/// smaller ones even a whole copy takes no longer, and saving early would only cost CPU.
pub const DEFAULT_SNAPSHOT_MAX_CHANGED: usize = 4_096;

/// See [`DEFAULT_SNAPSHOT_MAX_CHANGED`].
pub const EARLY_SAVE_FACTOR: usize = 4;

/// What changed since the last save (see [`RulesHost::snapshot_changes`]).
#[derive(Clone, Debug)]
pub struct HostDelta {
    /// Whether `snapshot` holds every sensor (sensors not in it are to be forgotten); otherwise
    /// it holds only the sensors that changed, and the rest keep their saved state.
    pub full: bool,
    /// The host's state, with only the changed sensors unless `full`.
    pub snapshot: HostSnapshot,
}

/// Which sites a host serves (a Kafka rules worker's partition); every site when absent.
pub type SiteScope = Arc<dyn Fn(&SiteId) -> bool + Send + Sync>;

/// A host's saved state: everything needed to continue after the input at `position`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSnapshot {
    /// [`HOST_SNAPSHOT_VERSION`] when taken.
    pub version: u32,
    /// Inputs applied when it was taken (the journal position it covers).
    pub position: u64,
    /// The processing clock then.
    pub clock: Option<Timestamp>,
    /// Text of the rules in effect.
    pub rules: String,
    /// [`text_digest`] of the registry in effect.
    pub registry_digest: String,
    /// The live engine.
    pub engine: Snapshot,
    /// A running exercise.
    #[serde(default)]
    pub drill: Option<DrillState>,
}

/// Why a host could not be built or recovered.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The rules do not parse or do not fit the registry.
    #[error("rules: {0}")]
    Rules(#[from] RuleError),
    /// The registry does not parse.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// The snapshot is of another format.
    #[error("saved state: {0}")]
    Snapshot(String),
}

/// What became of one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied; its events (if any) were appended.
    Applied,
    /// A command that was not applied, and why.
    Refused(Refused),
    /// New rules/registry in effect.
    Reloaded,
    /// A reload that could not be used; the running rules stay.
    ReloadRefused(String),
}

/// How a recovery went.
#[derive(Debug)]
pub struct Recovery {
    /// The recovered host.
    pub host: RulesHost,
    /// Whether the state was restored exactly (same rules text and registry as saved); when
    /// not, it was re-bound to the registry given, and alerts of sensors or rules that no longer
    /// exist were cleared (their events are in `events`).
    pub exact: bool,
    /// Events produced by re-binding (empty when exact).
    pub events: Vec<AlertEvent>,
}

/// The engine host (see the module documentation).
pub struct RulesHost {
    engine: Engine,
    drill: Drill,
    rules: RuleSet,
    rules_text: String,
    registry: Arc<Registry>,
    registry_digest: String,
    scope: Option<SiteScope>,
    /// Inputs applied so far (since the host's history began, across recoveries).
    position: u64,
    /// Processing clock: the latest input's time (never goes back).
    clock: Option<Timestamp>,
    saved_position: u64,
    saved_clock: Option<Timestamp>,
    /// A save begun ([`RulesHost::begin_snapshot`]): everything but the engine's part.
    pending_save: Option<HostSnapshot>,
    snapshot_every_ms: i64,
    snapshot_max_changed: usize,
}

impl std::fmt::Debug for RulesHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesHost").field("position", &self.position).field("clock", &self.clock).finish()
    }
}

/// A stable digest of a configuration file's text (FNV-1a, 64 bits, hex): names the registry a
/// snapshot was taken with.
pub fn text_digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl RulesHost {
    /// A fresh host: rules from their text, bound to `registry` (whose text has digest
    /// `registry_digest`), restricted to the sites of `scope` if given.
    pub fn new(
        rules_text: &str,
        registry: Arc<Registry>,
        registry_digest: &str,
        scope: Option<SiteScope>,
    ) -> Result<RulesHost, HostError> {
        Self::with_role(rules_text, registry, registry_digest, scope, CompositeRole::All)
    }

    /// Like [`RulesHost::new`], evaluating the composites of `role` only (the Kafka path:
    /// [`CompositeRole::Sites`] for a readings partition, [`CompositeRole::Network`] for the
    /// network host, which takes [`Input::Members`] instead of readings).
    pub fn with_role(
        rules_text: &str,
        registry: Arc<Registry>,
        registry_digest: &str,
        scope: Option<SiteScope>,
        role: CompositeRole,
    ) -> Result<RulesHost, HostError> {
        let rules = RuleSet::from_toml(rules_text)?;
        let registry = scoped(registry, scope.as_ref());
        let engine = Engine::with_role(&rules, &registry, role)?;
        let drill = Drill::with_role(&rules, Arc::clone(&registry), role);
        Ok(RulesHost {
            engine,
            drill,
            rules,
            rules_text: rules_text.to_string(),
            registry,
            registry_digest: registry_digest.to_string(),
            scope,
            position: 0,
            clock: None,
            saved_position: 0,
            saved_clock: None,
            pending_save: None,
            snapshot_every_ms: DEFAULT_SNAPSHOT_EVERY_MS,
            snapshot_max_changed: DEFAULT_SNAPSHOT_MAX_CHANGED,
        })
    }

    /// A host continuing from `snap`. Exact when `registry_digest` is the snapshot's; otherwise
    /// (the registry file changed while stopped) the state is re-bound to `registry`.
    pub fn recover(
        snap: HostSnapshot,
        registry: Arc<Registry>,
        registry_digest: &str,
        scope: Option<SiteScope>,
    ) -> Result<Recovery, HostError> {
        Self::recover_role(snap, registry, registry_digest, scope, CompositeRole::All)
    }

    /// [`RulesHost::recover`] for a host of `role` (see [`RulesHost::with_role`]).
    pub fn recover_role(
        snap: HostSnapshot,
        registry: Arc<Registry>,
        registry_digest: &str,
        scope: Option<SiteScope>,
        role: CompositeRole,
    ) -> Result<Recovery, HostError> {
        if snap.version != HOST_SNAPSHOT_VERSION {
            return Err(HostError::Snapshot(format!("version {} is not {HOST_SNAPSHOT_VERSION}", snap.version)));
        }
        let mut host = RulesHost::with_role(&snap.rules, registry, registry_digest, scope, role)?;
        host.position = snap.position;
        host.clock = snap.clock;
        host.saved_position = snap.position;
        host.saved_clock = snap.clock;
        let mut events = Vec::new();
        let exact = snap.registry_digest == registry_digest;
        if exact {
            host.engine.restore_exact(snap.engine)?;
            if let Some(d) = snap.drill {
                host.drill.restore_exact(d)?;
            }
        } else {
            let now = snap.clock.unwrap_or(Timestamp(0));
            host.engine.restore(snap.engine, now, &mut events)?;
            // An exercise over a changed registry is not worth guessing at; it starts afresh.
        }
        Ok(Recovery { host, exact, events })
    }

    /// Takes over a bare engine [`Snapshot`] (saved by riskwatch before the host existed),
    /// as a restart at `now` would; events of alerts whose rule is gone go to `out`.
    pub fn adopt_engine_snapshot(
        &mut self,
        snap: Snapshot,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), HostError> {
        self.engine.restore(snap, now, out)?;
        Ok(())
    }

    /// Applies one input, appending the events it causes to `out`. Readings get their quality
    /// flags after the checks written back (for the store).
    pub fn apply(&mut self, input: &mut Input, out: &mut Vec<AlertEvent>) -> Outcome {
        self.position += 1;
        // The clock never goes back (inputs may come from processes whose clocks differ).
        let at = self.clock.map_or(input.at(), |c| c.max(input.at()));
        self.clock = Some(at);
        match input {
            Input::Readings { readings, .. } => {
                self.drill.process_batch(&mut self.engine, readings, at, out);
                Outcome::Applied
            }
            Input::Command { raw, .. } => match apply_command(&mut self.engine, &mut self.drill, raw, at, out) {
                Ok(()) => Outcome::Applied,
                Err(refused) => Outcome::Refused(refused),
            },
            Input::Tick { .. } => {
                self.engine.advance(at, out);
                Outcome::Applied
            }
            Input::Resume { .. } => {
                self.engine.resume(at);
                Outcome::Applied
            }
            Input::Members { members, .. } => {
                self.engine.set_members(members, at, out);
                Outcome::Applied
            }
            Input::Forecast { forecast, .. } => {
                self.engine.forecast(forecast, at, out);
                Outcome::Applied
            }
            Input::Reload { rules, registry, .. } => {
                match self.reload(rules.as_deref(), registry.as_deref(), at, out) {
                    Ok(()) => Outcome::Reloaded,
                    Err(e) => Outcome::ReloadRefused(e.to_string()),
                }
            }
        }
    }

    fn reload(
        &mut self,
        rules_text: Option<&str>,
        registry_text: Option<&str>,
        at: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), HostError> {
        let rules = match rules_text {
            Some(text) => RuleSet::from_toml(text)?,
            None => self.rules.clone(),
        };
        let (registry, digest) = match registry_text {
            Some(text) => {
                let parsed = Arc::new(Registry::from_toml(text)?);
                (scoped(parsed, self.scope.as_ref()), text_digest(text))
            }
            None => (Arc::clone(&self.registry), self.registry_digest.clone()),
        };
        // Checked before anything changes, so a refused reload leaves the host as it was.
        Engine::with_role(&rules, &registry, self.engine.role)?;
        let mut events = Vec::new();
        self.engine.reload(&rules, &registry, at, &mut events)?;
        self.drill.reload(&rules, Arc::clone(&registry), &mut events)?;
        out.append(&mut events);
        if let Some(text) = rules_text {
            self.rules_text = text.to_string();
        }
        self.rules = rules;
        self.registry = registry;
        self.registry_digest = digest;
        Ok(())
    }

    /// The state now, to save; marks it saved (see [`RulesHost::snapshot_due`]).
    pub fn snapshot(&mut self) -> HostSnapshot {
        self.saved_position = self.position;
        self.saved_clock = self.clock;
        HostSnapshot {
            version: HOST_SNAPSHOT_VERSION,
            position: self.position,
            clock: self.clock,
            rules: self.rules_text.clone(),
            registry_digest: self.registry_digest.clone(),
            engine: self.engine.snapshot(),
            drill: self.drill.snapshot(),
        }
    }

    /// The state changed since the last call (the first call, and the first after a
    /// recovery or [`RulesHost::mark_all_changed`]: everything), for a store that keeps each
    /// sensor's state apart; marks it saved. Copying takes time in proportion to the sensors
    /// that changed, not to all sensors.
    pub fn snapshot_changes(&mut self) -> HostDelta {
        self.begin_snapshot();
        self.snapshot_step(usize::MAX).expect("a save copied without a limit is complete")
    }

    /// Begins a save of the state as of now, as [`RulesHost::snapshot_changes`] does, but
    /// leaves the changed sensors to be copied by [`RulesHost::snapshot_step`] a budget at a
    /// time (each is copied before it next changes in any case: see
    /// [`Engine::begin_snapshot`]); marks the state saved. Does nothing while a save is pending.
    pub fn begin_snapshot(&mut self) {
        if self.pending_save.is_some() {
            return;
        }
        self.saved_position = self.position;
        self.saved_clock = self.clock;
        self.pending_save = Some(HostSnapshot {
            version: HOST_SNAPSHOT_VERSION,
            position: self.position,
            clock: self.clock,
            rules: self.rules_text.clone(),
            registry_digest: self.registry_digest.clone(),
            engine: Snapshot::empty(),
            drill: self.drill.snapshot(),
        });
        self.engine.begin_snapshot();
    }

    /// Copies up to `budget` more sensors into the pending save; the save once complete.
    pub fn snapshot_step(&mut self, budget: usize) -> Option<HostDelta> {
        self.pending_save.as_ref()?;
        if !self.engine.snapshot_pending() {
            // Cannot happen (a reload carries the engine's part over); should it, the save is
            // dropped and the next one holds everything.
            self.pending_save = None;
            self.engine.changes.mark_all();
            return None;
        }
        let (engine, full) = self.engine.snapshot_step(budget)?;
        let snapshot = HostSnapshot { engine, ..self.pending_save.take()? };
        Some(HostDelta { full, snapshot })
    }

    /// Whether a save is begun and not yet complete.
    pub fn snapshot_pending(&self) -> bool {
        self.pending_save.is_some()
    }

    /// The next [`RulesHost::snapshot_changes`] is a full one (a save was lost).
    pub fn mark_all_changed(&mut self) {
        self.engine.changes.mark_all();
    }

    /// Whether saving the state now is worth it: inputs arrived since the last snapshot and the
    /// processing clock moved on by the snapshot interval (so the log to replay after a crash
    /// stays short), or so many sensors changed that waiting longer would make the save pause
    /// the host for too long.
    pub fn snapshot_due(&self) -> bool {
        let early = self.engine.changed_sensors() >= self.snapshot_max_changed
            && self.engine.sensor_count() > self.snapshot_max_changed.saturating_mul(EARLY_SAVE_FACTOR);
        self.position > self.saved_position
            && (early
                || match (self.saved_clock, self.clock) {
                    (Some(saved), Some(now)) => now.millis() - saved.millis() >= self.snapshot_every_ms,
                    _ => true,
                })
    }

    /// Sets the snapshot interval (processing time, ms) and the number of changed sensors
    /// that makes a snapshot due sooner.
    pub fn set_snapshot_policy(&mut self, every_ms: i64, max_changed: usize) {
        self.snapshot_every_ms = every_ms;
        self.snapshot_max_changed = max_changed;
    }

    /// Inputs applied so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The processing clock (latest input's time).
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    /// The live engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Text of the rules in effect.
    pub fn rules_text(&self) -> &str {
        &self.rules_text
    }

    /// The rules in effect.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The registry in effect (restricted to the host's sites).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Digest of the registry text in effect.
    pub fn registry_digest(&self) -> &str {
        &self.registry_digest
    }

    /// Ids of every open alert, live and exercise (as their events carry them).
    pub fn open_alert_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.engine.open_alerts().map(|a| a.id.clone()).collect();
        ids.extend(self.drill.open_alert_ids());
        ids
    }
}

fn scoped(registry: Arc<Registry>, scope: Option<&SiteScope>) -> Arc<Registry> {
    match scope {
        Some(keep) => Arc::new(registry.retain_sites(|s| keep(s))),
        None => registry,
    }
}
