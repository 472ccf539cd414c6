//! The rules stage of the embedded topology: every reading, officer command and clock tick
//! through the engine, and every outcome to the sinks. Also where the engine's state is saved
//! (every few seconds and at shutdown) and where an edited rules file is hot-reloaded.

use crate::metrics::RuleMetrics;
use crate::summary::Summary;
use anyhow::Result;
use riskwatch_core::{AlertEvent, DeadLetter, Reading, Registry, Timestamp};
use riskwatch_ingest::{Delivery, IngestEvent};
use riskwatch_rules::{Command, Drill, Engine, RuleSet};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use riskwatch_sinks::sqlite::{CommandRecord, EngineState, OnCommit, StoreItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How often the engine's state is saved while running (when it changed), at most.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// Copying the state holds up readings (a few milliseconds per 10 000 sensors; serialising the
/// copy runs on the store's thread): saves are spaced at least this many times the last copy's
/// duration apart, so copying takes at most 1 % of the stage's time however large the registry.
const SNAPSHOT_SPACING: u32 = 100;

/// A rules file to watch for edits.
pub struct ReloadWatch {
    /// The file.
    pub path: PathBuf,
    /// The registry new rules are bound to.
    pub registry: Arc<Registry>,
    /// Modification time of the version loaded.
    pub loaded: Option<SystemTime>,
}

/// The stage's state.
pub struct RulesStage {
    /// The engine.
    pub engine: Engine,
    /// Exercise readings' own engine (drills).
    pub drill: Drill,
    /// Store channel.
    pub store: mpsc::Sender<StoreItem>,
    /// MQTT publisher for events, rejections and command errors.
    pub publisher: MqttAlertPublisher,
    /// Live feed, if any.
    pub feed: Option<mpsc::UnboundedSender<AlertEvent>>,
    /// Rules file to hot-reload, if any.
    pub reload: Option<ReloadWatch>,
    /// Counters.
    pub summary: Summary,
    /// Prometheus series (a private registry unless the pipeline sets its own).
    pub metrics: RuleMetrics,
    events: Vec<AlertEvent>,
    /// Whether the engine's state may differ from the last one saved.
    changed: bool,
    /// How long the last copy of the engine's state took.
    copy_took: Duration,
}

impl RulesStage {
    /// A stage; `pending` are events produced before it started (e.g. by restoring state).
    pub fn new(
        engine: Engine,
        drill: Drill,
        store: mpsc::Sender<StoreItem>,
        publisher: MqttAlertPublisher,
        feed: Option<mpsc::UnboundedSender<AlertEvent>>,
        reload: Option<ReloadWatch>,
        pending: Vec<AlertEvent>,
    ) -> Self {
        RulesStage {
            engine,
            drill,
            store,
            publisher,
            feed,
            reload,
            summary: Summary::default(),
            metrics: RuleMetrics::new(&crate::metrics::Metrics::default()),
            events: pending,
            changed: true,
            copy_took: Duration::ZERO,
        }
    }

    /// Runs until the ingest side closes; returns the summary and the publisher (to close).
    /// Each MQTT message is confirmed (acknowledged to the broker) only once the store has
    /// committed what it turned into, so a failing disk loses nothing: the broker re-delivers.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Delivery>) -> Result<(Summary, MqttAlertPublisher)> {
        self.emit().await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_snapshot = Instant::now();
        loop {
            tokio::select! {
                delivery = rx.recv() => {
                    let Some(delivery) = delivery else { break };
                    let (items, confirmation) = delivery.split();
                    for item in items {
                        match item {
                            IngestEvent::Readings(readings) => self.readings(readings).await?,
                            IngestEvent::DeadLetter(d) => self.dead_letter(d).await?,
                            IngestEvent::Command(raw) => self.command(raw).await?,
                        }
                    }
                    let confirm = StoreItem::Committed(OnCommit::new(move || confirmation.confirm()));
                    self.store(confirm).await?;
                },
                _ = tick.tick() => {
                    self.engine.advance(Timestamp::now(), &mut self.events);
                    self.metrics.active(self.engine.active().into_iter().map(|(_, _, l)| l));
                    self.check_reload();
                    self.emit().await?;
                    if self.changed && last_snapshot.elapsed() >= SNAPSHOT_EVERY.max(self.copy_took * SNAPSHOT_SPACING) {
                        self.snapshot().await?;
                        last_snapshot = Instant::now();
                    }
                }
            }
        }
        if self.changed {
            self.snapshot().await?;
        }
        self.summary.engine = self.engine.stats();
        self.summary.active_at_end = self.engine.active().into_iter().map(|(_, _, l)| l).collect();
        Ok((self.summary, self.publisher))
    }

    async fn readings(&mut self, mut readings: Vec<Reading>) -> Result<()> {
        self.summary.readings += readings.len() as u64;
        self.changed = true;
        let now = Timestamp::now();
        let began = Instant::now();
        self.drill.process_batch(&mut self.engine, &mut readings, now, &mut self.events);
        self.metrics.evaluated(readings.len(), began.elapsed());
        self.store(StoreItem::Readings(readings)).await?;
        self.emit().await
    }

    async fn dead_letter(&mut self, d: DeadLetter) -> Result<()> {
        self.summary.record_rejection(&d);
        self.metrics.rejection(d.reason);
        if let Err(err) = self.publisher.publish_rejection(&d).await {
            warn!(error = %err, "could not publish rejection notice");
        }
        self.store(StoreItem::DeadLetter(d)).await
    }

    async fn command(&mut self, raw: Vec<u8>) -> Result<()> {
        let now = Timestamp::now();
        self.changed = true;
        let record = match apply_command(&mut self.engine, &mut self.drill, &raw, now) {
            Ok(ev) => {
                info!(alert = %ev.alert_id, change = %ev.change, by = ?ev.by, "command applied");
                self.events.push(ev);
                CommandRecord { received_at: now, payload: raw, outcome: "ok".into(), error: None }
            }
            Err(refused) => {
                self.summary.commands_refused += 1;
                warn!(code = refused.code, error = %refused.error, "command refused");
                if let Err(err) = self.publisher.publish_command_error(refused.report(now)).await {
                    warn!(error = %err, "could not publish command error");
                }
                CommandRecord {
                    received_at: now,
                    payload: raw,
                    outcome: refused.code.into(),
                    error: Some(refused.error),
                }
            }
        };
        self.store(StoreItem::Command(record)).await?;
        self.emit().await
    }

    /// Publishes, stores and shows the events produced so far.
    async fn emit(&mut self) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        self.changed = true;
        for e in &self.events {
            self.summary.record_event(e);
            self.metrics.event(e);
            if let Err(err) = self.publisher.publish_event(e).await {
                warn!(error = %err, event = %e.event_id, "could not publish alert event");
            }
            if let Some(f) = &self.feed {
                let _ = f.send(e.clone());
            }
        }
        let events = std::mem::take(&mut self.events);
        self.store(StoreItem::Events(events)).await
    }

    /// Saves the engine's state: a copy here, serialised on the store's thread.
    async fn snapshot(&mut self) -> Result<()> {
        let began = Instant::now();
        let copy = self.engine.snapshot();
        self.copy_took = began.elapsed();
        self.metrics.state_copied(self.copy_took);
        self.changed = false;
        let state = EngineState::serialise_with(move || serde_json::to_string(&copy).map_err(|e| e.to_string()));
        self.store(StoreItem::Snapshot(state)).await
    }

    /// Hands `item` to the store. The error says only that the store has stopped: the item (and
    /// any confirmation in it) is dropped here, not carried in the error, so that the messages
    /// concerned are promptly left unacknowledged rather than held until the error is dropped.
    async fn store(&self, item: StoreItem) -> Result<()> {
        self.store.send(item).await.map_err(|_| anyhow::anyhow!("store stopped"))
    }

    /// Reloads the rules file if it changed; a broken edit keeps the running rules.
    fn check_reload(&mut self) {
        let Some(w) = self.reload.as_mut() else { return };
        let modified = std::fs::metadata(&w.path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == w.loaded {
            return;
        }
        w.loaded = modified;
        let result = std::fs::read_to_string(&w.path)
            .map_err(anyhow::Error::from)
            .and_then(|text| RuleSet::from_toml(&text).map_err(anyhow::Error::from))
            .and_then(|rules| {
                self.engine.reload(&rules, &w.registry, Timestamp::now(), &mut self.events)?;
                self.drill.reload(&rules, Arc::clone(&w.registry), &mut self.events).map_err(anyhow::Error::from)
            });
        match result {
            Ok(()) => {
                self.changed = true;
                self.summary.reloads += 1;
                println!("rules reloaded from {}", w.path.display());
            }
            Err(e) => {
                println!("rules file {} changed but cannot be used; keeping the running rules: {e:#}", w.path.display())
            }
        }
    }
}

/// Why an officer's command was not applied.
pub struct Refused {
    /// Machine-readable reason (wire-format.md §9.2).
    pub code: &'static str,
    /// The reason in words.
    pub error: String,
    /// The command's id, if it could be read.
    pub command_id: Option<String>,
    /// The alert concerned, if it could be read.
    pub alert_id: Option<String>,
}

impl Refused {
    /// The error report published on `riskwatch/v1/commands/errors`.
    pub fn report(&self, received_at: Timestamp) -> Vec<u8> {
        serde_json::json!({
            "command_id": self.command_id, "alert_id": self.alert_id, "code": self.code, "error": self.error,
            "received_at": received_at.to_rfc3339(),
        })
        .to_string()
        .into_bytes()
    }
}

/// Decodes a raw command and applies it to `engine`, or to `drill` for an exercise alert.
pub fn apply_command(
    engine: &mut Engine,
    drill: &mut Drill,
    raw: &[u8],
    now: Timestamp,
) -> Result<AlertEvent, Refused> {
    let cmd = serde_json::from_slice::<Command>(raw).map_err(|e| Refused {
        code: "bad_command",
        error: format!("not a valid command: {e}"),
        command_id: None,
        alert_id: None,
    })?;
    let result = match drill.command(&cmd, now) {
        Some(result) => result,
        None => engine.command(&cmd, now),
    };
    result.map_err(|e| Refused {
        code: e.code(),
        error: e.to_string(),
        command_id: cmd.command_id.clone(),
        alert_id: Some(cmd.alert_id.clone()),
    })
}
