//! Drills: readings marked as an exercise run through an engine of their own.
//!
//! A duty room rehearses on a real past flood by publishing its readings into the live
//! pipeline with `"exercise": true` (`riskwatch replay --drill`). Those readings must never
//! touch the live rule state (a 2020 flood must not move today's Hankou alert), and every alert
//! they cause must be recognisable as an exercise wherever it goes. So the pipeline keeps a
//! [`Drill`] next to its live [`Engine`]: exercise readings go to the drill's own engine (same
//! rules, same registry), evaluated in their own event time as a replay is; its events come out
//! with `exercise = true`, ids prefixed with [`EXERCISE_PREFIX`] (so they can never collide with
//! a live alert's id, and officers' commands find their way back) and messages prefixed
//! 【演习】 / `[EXERCISE]`.

use crate::{Command, CommandError, CompositeRole, Engine, RuleError, RuleSet, Snapshot};
use riskwatch_core::{AlertEvent, Reading, Registry, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Prefix of the alert and event ids of exercise alerts.
pub const EXERCISE_PREFIX: &str = "exercise-";
/// Prefix of an exercise alert's Chinese message.
pub const EXERCISE_MARK_ZH: &str = "【演习】";
/// Prefix of an exercise alert's English message.
pub const EXERCISE_MARK_EN: &str = "[EXERCISE] ";

/// Whether an alert id names an exercise alert.
pub fn is_exercise_alert(alert_id: &str) -> bool {
    alert_id.starts_with(EXERCISE_PREFIX)
}

/// The exercise side of a pipeline: an engine built on first use.
pub struct Drill {
    rules: RuleSet,
    /// Shared with the live side: a registry of 100 000 sensors is ~80 MB.
    registry: Arc<Registry>,
    engine: Option<Engine>,
    /// Event time of the latest exercise reading: the drill's clock (commands on exercise
    /// alerts are stamped with it, so the drill's timeline stays in one time frame).
    clock: Option<Timestamp>,
    /// Which composites its engine evaluates (as the live engine beside it).
    role: CompositeRole,
}

impl Drill {
    /// A drill side for these rules and registry (no engine is built until the first exercise
    /// reading arrives).
    pub fn new(rules: &RuleSet, registry: Arc<Registry>) -> Self {
        Self::with_role(rules, registry, CompositeRole::All)
    }

    /// A drill side whose engine evaluates the composites of `role` only (the live engine's).
    pub fn with_role(rules: &RuleSet, registry: Arc<Registry>, role: CompositeRole) -> Self {
        Drill { rules: rules.clone(), registry, engine: None, clock: None, role }
    }

    /// Whether an exercise has run since start-up (or since [`Drill::reset`]).
    pub fn active(&self) -> bool {
        self.engine.is_some()
    }

    /// Runs a batch that may mix live and exercise readings: live ones through `live` at
    /// processing time `now` (exactly [`Engine::process_batch`]), exercise ones through the
    /// drill's engine in their own event time. Quality flags are written back into every
    /// reading; exercise events are appended to `out` after the live ones, marked.
    pub fn process_batch(
        &mut self,
        live: &mut Engine,
        readings: &mut [Reading],
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) {
        let exercises = readings.iter().filter(|r| r.exercise).count();
        if exercises == 0 {
            live.process_batch(readings, now, out);
            return;
        }
        // Exercise readings to the back (stable for both parts, so each side sees its
        // readings in arrival order).
        let mut parts: Vec<Reading> = Vec::with_capacity(readings.len());
        parts.extend(readings.iter().filter(|r| !r.exercise).cloned());
        parts.extend(readings.iter().filter(|r| r.exercise).cloned());
        let (live_part, drill_part) = parts.split_at_mut(readings.len() - exercises);
        live.process_batch(live_part, now, out);
        self.process(drill_part, out);
        // Back into the caller's slice, in the original order.
        let (mut li, mut di) = (live_part.iter(), drill_part.iter());
        for r in readings.iter_mut() {
            let done = if r.exercise { di.next() } else { li.next() };
            if let Some(done) = done {
                r.quality = done.quality;
            }
        }
    }

    /// Runs exercise readings (all marked) through the drill's engine and appends the marked
    /// events to `out`.
    pub fn process(&mut self, readings: &mut [Reading], out: &mut Vec<AlertEvent>) {
        let Some(last) = readings.iter().map(|r| r.ts).max() else { return };
        let before = out.len();
        self.engine().replay_batch(readings, out);
        self.clock = Some(self.clock.map_or(last, |c| c.max(last)));
        out[before..].iter_mut().for_each(mark_in_place);
    }

    /// Applies an officer's command to an exercise alert. `None` if the command is not about
    /// one (the caller applies it to the live engine).
    pub fn command(&mut self, cmd: &Command, now: Timestamp) -> Option<Result<AlertEvent, CommandError>> {
        let inner = cmd.alert_id.strip_prefix(EXERCISE_PREFIX)?;
        let cmd = Command { alert_id: inner.to_string(), ..cmd.clone() };
        let at = self.clock.unwrap_or(now);
        let result = match self.engine.as_mut() {
            Some(engine) => engine.command(&cmd, at),
            None => Err(CommandError::UnknownAlert(cmd.alert_id.clone())),
        };
        Some(result.map(mark).map_err(mark_error))
    }

    /// New rules for later exercises. A running exercise keeps its alerts (as the live engine
    /// does on reload).
    pub fn reload(
        &mut self,
        rules: &RuleSet,
        registry: Arc<Registry>,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), RuleError> {
        if let Some(engine) = self.engine.as_mut() {
            let now = self.clock.unwrap_or(Timestamp(0));
            let before = out.len();
            engine.reload(rules, &registry, now, out)?;
            out[before..].iter_mut().for_each(mark_in_place);
        }
        self.rules = rules.clone();
        self.registry = registry;
        Ok(())
    }

    /// The running exercise's state (`None` when no exercise has run), to recover after a crash
    /// like the live side's.
    pub fn snapshot(&self) -> Option<DrillState> {
        self.engine.as_ref().map(|e| DrillState { engine: e.snapshot(), clock: self.clock })
    }

    /// Restores an exercise saved with [`Drill::snapshot`] exactly (same rules and registry).
    pub fn restore_exact(&mut self, state: DrillState) -> Result<(), RuleError> {
        self.engine().restore_exact(state.engine)?;
        self.clock = state.clock;
        Ok(())
    }

    /// Ids of the exercise's open alerts, as its events carry them (prefixed).
    pub fn open_alert_ids(&self) -> Vec<String> {
        let Some(engine) = self.engine.as_ref() else { return Vec::new() };
        engine.open_alerts().map(|a| format!("{EXERCISE_PREFIX}{}", a.id)).collect()
    }

    /// Ends the exercise: forgets its state (its alerts stay wherever they were delivered).
    pub fn reset(&mut self) {
        self.engine = None;
        self.clock = None;
    }

    fn engine(&mut self) -> &mut Engine {
        let (rules, registry, role) = (&self.rules, &self.registry, self.role);
        self.engine.get_or_insert_with(|| {
            // The live engine was built from the same rules and registry, so this cannot fail;
            // should it ever, an empty rule set still keeps the drill apart from live data.
            Engine::with_role(rules, registry, role).unwrap_or_else(|_| {
                Engine::new(&RuleSet::default(), registry).expect("an empty rule set fits any registry")
            })
        })
    }
}

/// A running exercise's saved state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillState {
    engine: Snapshot,
    clock: Option<Timestamp>,
}

/// Marks an event of the drill's engine as an exercise.
fn mark(mut ev: AlertEvent) -> AlertEvent {
    mark_in_place(&mut ev);
    ev
}

fn mark_in_place(ev: &mut AlertEvent) {
    ev.exercise = true;
    ev.alert_id.insert_str(0, EXERCISE_PREFIX);
    ev.event_id.insert_str(0, EXERCISE_PREFIX);
    ev.message_zh.insert_str(0, EXERCISE_MARK_ZH);
    ev.message_en.insert_str(0, EXERCISE_MARK_EN);
}

/// An error about an exercise alert, naming the id the officer sent.
fn mark_error(e: CommandError) -> CommandError {
    let prefixed = |id: String| format!("{EXERCISE_PREFIX}{id}");
    match e {
        CommandError::UnknownAlert(id) => CommandError::UnknownAlert(prefixed(id)),
        CommandError::AlreadyAcknowledged { alert, by } => {
            CommandError::AlreadyAcknowledged { alert: prefixed(alert), by }
        }
        CommandError::StillActive { alert, level } => CommandError::StillActive { alert: prefixed(alert), level },
        CommandError::AlreadyShelved { alert, until } => CommandError::AlreadyShelved { alert: prefixed(alert), until },
        CommandError::NotShelved(id) => CommandError::NotShelved(prefixed(id)),
        other => other,
    }
}
