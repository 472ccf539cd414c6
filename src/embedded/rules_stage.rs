//! The rules stage of the embedded wiring: an I/O loop around the [`RulesHost`].
//!
//! Every reading, officer command and clock tick becomes an [`Input`]; each is written to the
//! store's input journal and applied to the host, and the events it causes are published only
//! once the store has committed it (together with the readings, so the MQTT message is
//! acknowledged to the gateway at the same moment). The host's state is saved every few
//! seconds of activity, or sooner once many sensors changed — only the sensors that changed,
//! so a save pauses the stage in proportion to activity, not to the registry — into the state
//! file, on its own thread; after a crash, [`super::recovery`] restores it and replays the
//! journal.
//! Edited rules and registry files are reloaded as inputs too.

use super::publisher::Outgoing;
use super::summary::{OpenAlert, Summary};
use crate::metrics::RuleMetrics;
use anyhow::Result;
use riskwatch_core::{AlertEvent, DeadLetter, Reading, Registry, Timestamp};
use riskwatch_ingest::{Confirmation, Delivery, IngestEvent, RegistryHandle};
use riskwatch_rules::{Input, Outcome, RulesHost};
use riskwatch_sinks::rule_state::{StateRows, StateSave, StateWriter};
use riskwatch_sinks::sqlite::{CommandRecord, OnCommit, StoreItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Sensors copied into a pending save after each input: ~0.5 ms of the rules stage's time on
/// a small machine (docs/rules.md, "Saving state").
const SAVE_STEP: usize = 1024;

/// The configuration files to watch for edits, each reloaded as an input when it changes.
#[derive(Default)]
pub struct ConfigWatch {
    /// The rules file and the modification time of the version in effect.
    pub rules: Option<(PathBuf, Option<SystemTime>)>,
    /// The registry file, likewise.
    pub registry: Option<(PathBuf, Option<SystemTime>)>,
}

impl ConfigWatch {
    /// Watches these files from now on (their current versions count as loaded).
    pub fn new(rules: Option<PathBuf>, registry: Option<PathBuf>) -> Self {
        let stamp = |p: PathBuf| {
            let t = modified(&p);
            (p, t)
        };
        ConfigWatch { rules: rules.map(stamp), registry: registry.map(stamp) }
    }

    /// A reload input for the files changed since the last call, if any.
    fn changes(&mut self, at: Timestamp) -> Option<Input> {
        let rules = changed_text(&mut self.rules);
        let registry = changed_text(&mut self.registry);
        (rules.is_some() || registry.is_some()).then_some(Input::Reload { at, rules, registry })
    }
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The file's text if it changed since `watched` was last stamped.
fn changed_text(watched: &mut Option<(PathBuf, Option<SystemTime>)>) -> Option<String> {
    let (path, loaded) = watched.as_mut()?;
    let now = modified(path);
    if now.is_none() || now == *loaded {
        return None;
    }
    *loaded = now;
    match std::fs::read_to_string(&*path) {
        Ok(text) => Some(text),
        Err(e) => {
            println!("{} changed but cannot be read; keeping the running version: {e}", path.display());
            None
        }
    }
}

/// A save as the state file writes it: the snapshot's sensors are serialised one at a time as
/// they are written, each dropped once written.
pub(crate) fn state_rows(delta: riskwatch_rules::HostDelta) -> Result<StateRows, String> {
    let (rest, sensors) = delta.snapshot.engine.split_sensors();
    let meta = riskwatch_rules::HostSnapshot { engine: rest, ..delta.snapshot };
    let meta = serde_json::to_string(&meta).map_err(|e| e.to_string())?;
    let sensors = sensors
        .into_iter()
        .map(|s| serde_json::to_string(&s).map(|json| (s.sensor().to_string(), json)).map_err(|e| e.to_string()));
    Ok(StateRows { full: delta.full, meta, sensors: Box::new(sensors) })
}

/// The stage's state.
pub struct RulesStage {
    host: RulesHost,
    /// Store channel.
    store: mpsc::Sender<StoreItem>,
    /// Where the host's state is saved.
    state: StateWriter,
    /// The outbox.
    out: mpsc::Sender<Outgoing>,
    /// Files to reload.
    watch: ConfigWatch,
    /// Ingest's registry, replaced when a new registry is reloaded.
    ingest_registry: Option<RegistryHandle>,
    /// Counters.
    pub summary: Summary,
    /// Prometheus series.
    pub metrics: RuleMetrics,
    /// Events of inputs not yet handed to the store.
    events: Vec<AlertEvent>,
}

impl RulesStage {
    /// A stage around a (recovered) host.
    pub fn new(
        host: RulesHost,
        store: mpsc::Sender<StoreItem>,
        state: StateWriter,
        out: mpsc::Sender<Outgoing>,
        watch: ConfigWatch,
        ingest_registry: Option<RegistryHandle>,
        metrics: RuleMetrics,
    ) -> Self {
        RulesStage {
            host,
            store,
            state,
            out,
            watch,
            ingest_registry,
            summary: Summary::default(),
            metrics,
            events: Vec::new(),
        }
    }

    /// Runs until the ingest side closes; returns the summary.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Delivery>) -> Result<Summary> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                delivery = rx.recv() => {
                    let Some(delivery) = delivery else { break };
                    let (messages, confirmation) = delivery.split();
                    let at = Timestamp::now();
                    // The readings of consecutive messages are one input (one journal entry, one
                    // store hand-over); a command or a dead letter between them keeps its place.
                    let mut readings: Vec<Reading> = Vec::new();
                    for item in messages.into_iter().flat_map(|m| m.events) {
                        match item {
                            IngestEvent::Readings(mut r) => readings.append(&mut r),
                            IngestEvent::DeadLetter(d) => {
                                self.readings(at, &mut readings).await?;
                                self.dead_letter(d).await?;
                            }
                            IngestEvent::Command(raw) => {
                                self.readings(at, &mut readings).await?;
                                self.input(Input::Command { at, raw }).await?;
                            }
                            IngestEvent::Forecast(forecast) => {
                                self.readings(at, &mut readings).await?;
                                self.input(Input::Forecast { at, forecast }).await?;
                            }
                        }
                    }
                    self.readings(at, &mut readings).await?;
                    self.commit(Some(confirmation)).await?;
                    self.snapshot_if_due();
                },
                _ = tick.tick() => {
                    let at = Timestamp::now();
                    self.input(Input::Tick { at }).await?;
                    if let Some(reload) = self.watch.changes(at) {
                        self.input(reload).await?;
                    }
                    self.commit(None).await?;
                    self.metrics.active(self.host.engine().active().into_iter().map(|(_, _, l)| l));
                    self.snapshot_if_due();
                }
            }
        }
        self.commit(None).await?;
        // The last save: after the one in hand (saves build on each other), then written out.
        if self.host.snapshot_pending() {
            while self.state.busy() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.snapshot_step(usize::MAX);
        }
        while self.state.busy() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.snapshot();
        let state = self.state;
        tokio::task::spawn_blocking(move || state.finish()).await?;
        self.summary.engine = self.host.engine().stats();
        let engine = self.host.engine();
        self.summary.active_at_end = engine
            .open_alerts()
            .filter(|r| r.active)
            .map(|r| OpenAlert {
                level: r.level,
                site: engine.site_name(r.site.as_str(), true).to_string(),
                subject: engine.sensor_name(r.subject.as_str(), true).to_string(),
                category: r.category,
                since: r.first_ts,
                acknowledged: r.acked.is_some(),
            })
            .collect();
        Ok(self.summary)
    }

    /// The readings gathered so far, as one input (if there are any).
    async fn readings(&mut self, at: Timestamp, readings: &mut Vec<Reading>) -> Result<()> {
        if readings.is_empty() {
            return Ok(());
        }
        self.input(Input::Readings { at, readings: std::mem::take(readings) }).await
    }

    /// Journals one input and applies it.
    async fn input(&mut self, mut input: Input) -> Result<()> {
        // Recorded as received: the host writes quality flags into the readings it checks.
        let body = input.to_bytes();
        let position = self.host.position() + 1;
        let before = self.events.len();
        let began = Instant::now();
        let outcome = self.host.apply(&mut input, &mut self.events);
        let took = began.elapsed();
        self.store(StoreItem::Input { position, body }).await?;
        for e in &self.events[before..] {
            self.summary.record_event(e);
            self.metrics.event(e);
        }
        match input {
            Input::Readings { readings, .. } => {
                self.summary.readings += readings.len() as u64;
                self.metrics.evaluated(readings.len(), took);
                self.store(StoreItem::Readings(readings)).await?;
            }
            Input::Command { at, raw } => {
                let (outcome, error) = match outcome {
                    Outcome::Refused(refused) => {
                        self.summary.commands_refused += 1;
                        warn!(code = refused.code, error = %refused.error, "command refused");
                        self.send(Outgoing::CommandError(refused.report(at))).await?;
                        (refused.code.to_string(), Some(refused.error))
                    }
                    _ => {
                        if let Some(ev) = self.events.last() {
                            info!(alert = %ev.alert_id, change = %ev.change, by = ?ev.by, "command applied");
                        }
                        ("ok".to_string(), None)
                    }
                };
                self.store(StoreItem::Command(CommandRecord { received_at: at, payload: raw, outcome, error })).await?;
            }
            Input::Reload { rules, registry, .. } => {
                let names = self.changed_names(rules.is_some(), registry.is_some());
                match outcome {
                    Outcome::Reloaded => {
                        self.summary.reloads += 1;
                        if registry.is_some() {
                            self.new_registry(Arc::clone(self.host.registry()));
                        }
                        println!("{names} reloaded from {}", self.changed_paths(rules.is_some(), registry.is_some()));
                    }
                    Outcome::ReloadRefused(e) => println!(
                        "{names} file {} changed but cannot be used; keeping the running {names}: {e}",
                        self.changed_paths(rules.is_some(), registry.is_some())
                    ),
                    _ => {}
                }
            }
            Input::Tick { .. } | Input::Resume { .. } | Input::Members { .. } | Input::Forecast { .. } => {}
        }
        Ok(())
    }

    /// Ingest checks readings against the new registry from the next message on.
    fn new_registry(&self, registry: Arc<Registry>) {
        if let Some(handle) = &self.ingest_registry {
            *handle.write().unwrap_or_else(|e| e.into_inner()) = registry;
        }
    }

    /// "rules", "registry" or "rules and registry".
    fn changed_names(&self, rules: bool, registry: bool) -> &'static str {
        match (rules, registry) {
            (true, true) => "rules and registry",
            (false, true) => "registry",
            _ => "rules",
        }
    }

    /// The files behind a reload.
    fn changed_paths(&self, rules: bool, registry: bool) -> String {
        [(rules, &self.watch.rules), (registry, &self.watch.registry)]
            .into_iter()
            .filter_map(|(changed, w)| w.as_ref().filter(|_| changed))
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    async fn dead_letter(&mut self, d: DeadLetter) -> Result<()> {
        self.summary.record_rejection(&d);
        self.metrics.rejection(d.reason);
        self.send(Outgoing::Rejection(d.clone())).await?;
        self.store(StoreItem::DeadLetter(d)).await
    }

    /// Hands the events so far to the store, and asks it to publish them — and to acknowledge
    /// the message, if any — once everything before is committed.
    async fn commit(&mut self, confirmation: Option<Confirmation>) -> Result<()> {
        if self.events.is_empty() && confirmation.is_none() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            self.store(StoreItem::Events(events.clone())).await?;
        }
        let out = self.out.clone();
        let done = OnCommit::new(move || {
            if !events.is_empty() {
                // On the store's own thread: waits while the outbox is full (back-pressure).
                let _ = out.blocking_send(Outgoing::Events(events));
            }
            if let Some(c) = confirmation {
                c.confirm();
            }
        });
        self.store(StoreItem::Committed(done)).await
    }

    /// Saves the host's state when it is due and the previous save is written: begins the
    /// save, and copies [`SAVE_STEP`] changed sensors into it after each input until it is
    /// complete (a sensor about to change is copied first in any case), so readings never wait
    /// for thousands of sensors to be copied at once.
    fn snapshot_if_due(&mut self) {
        if self.state.take_lost() {
            self.host.mark_all_changed();
        }
        if !self.host.snapshot_pending() && self.host.snapshot_due() && !self.state.busy() {
            self.host.begin_snapshot();
        }
        if self.host.snapshot_pending() {
            self.snapshot_step(SAVE_STEP);
        }
    }

    /// Saves everything that changed, at once (at a stop).
    fn snapshot(&mut self) {
        self.host.begin_snapshot();
        self.snapshot_step(usize::MAX);
    }

    /// Copies up to `budget` sensors into the pending save; once complete, hands it to the
    /// state file's thread (serialised and written there; once written, the store drops the
    /// journal entries it covers).
    fn snapshot_step(&mut self, budget: usize) {
        let began = Instant::now();
        let delta = self.host.snapshot_step(budget);
        self.metrics.state_copied(began.elapsed());
        let Some(delta) = delta else { return };
        let position = delta.snapshot.position;
        self.state.save(StateSave::new(position, move || state_rows(delta)));
    }

    async fn send(&self, out: Outgoing) -> Result<()> {
        self.out.send(out).await.map_err(|_| anyhow::anyhow!("publisher stopped"))
    }

    /// Hands `item` to the store. The error says only that the store has stopped: the item (and
    /// any confirmation in it) is dropped here, not carried in the error, so that the messages
    /// concerned are promptly left unacknowledged rather than held until the error is dropped.
    async fn store(&self, item: StoreItem) -> Result<()> {
        self.store.send(item).await.map_err(|_| anyhow::anyhow!("store stopped"))
    }
}
