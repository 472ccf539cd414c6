//! The embedded topology: MQTT source → rule engine → SQLite, MQTT alert topics, live feed.
//!
//! Same components as the production path, wired in one process with bounded in-process
//! channels instead of Kafka (architecture.md, "Embedded mode").

use crate::summary::Summary;
use anyhow::{Context, Result};
use riskwatch_core::wire::Limits;
use riskwatch_core::{AlertEvent, Registry};
use riskwatch_ingest::{IngestEvent, MqttSource, MqttSourceConfig, SourceStats};
use riskwatch_rules::{Engine, RuleSet};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use riskwatch_sinks::sqlite::{SqliteSink, StoreItem};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How to assemble a pipeline.
pub struct PipelineConfig {
    /// Sensors and sites.
    pub registry: Arc<Registry>,
    /// The rules.
    pub rules: RuleSet,
    /// SQLite file for readings, alert events and dead letters.
    pub db: PathBuf,
    /// MQTT broker the source subscribes to and alerts are published on.
    pub mqtt_host: String,
    /// Its port.
    pub mqtt_port: u16,
    /// Prefix of the MQTT client ids (`{prefix}-ingest`, `{prefix}-alerts`).
    pub client_prefix: String,
    /// Print each alert event on stdout as it happens: `Some(colour)` to print, with or without
    /// ANSI colours; `None` for no live feed.
    pub console: Option<bool>,
}

/// A running pipeline.
pub struct Pipeline {
    shutdown: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    rules: JoinHandle<Result<(Summary, MqttAlertPublisher)>>,
    store: SqliteSink,
    source_stats: Arc<SourceStats>,
    printer: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Builds the engine, opens the store, connects to the broker and returns once the
    /// subscription is in place (readings published after this are processed).
    pub async fn start(cfg: PipelineConfig) -> Result<Pipeline> {
        let engine = Engine::new(&cfg.rules, &cfg.registry).context("rules do not fit the registry")?;
        info!(bindings = engine.binding_count(), "rule engine ready");
        let store = SqliteSink::start(&cfg.db).with_context(|| format!("opening store {}", cfg.db.display()))?;
        let publisher = MqttAlertPublisher::connect(&cfg.mqtt_host, cfg.mqtt_port, &format!("{}-alerts", cfg.client_prefix));
        let source = MqttSource::new(
            MqttSourceConfig::new(&cfg.mqtt_host, cfg.mqtt_port, &format!("{}-ingest", cfg.client_prefix)),
            Arc::clone(&cfg.registry),
            Limits::default(),
        );
        let source_stats = source.stats();
        let (tx, rx) = mpsc::channel::<IngestEvent>(1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let ingest = tokio::spawn(source.run(tx, shutdown_rx, ready_tx));
        let (feed, printer) = match cfg.console {
            Some(colour) => {
                let (feed_tx, mut feed_rx) = mpsc::unbounded_channel::<AlertEvent>();
                let printer = tokio::spawn(async move {
                    while let Some(e) = feed_rx.recv().await {
                        println!("{}", riskwatch_sinks::console::format_event(&e, colour));
                    }
                });
                (Some(feed_tx), Some(printer))
            }
            None => (None, None),
        };
        let rules = tokio::spawn(run_rules(engine, rx, store.sender(), publisher, feed));
        tokio::time::timeout(Duration::from_secs(15), ready_rx.wait_for(|r| *r))
            .await
            .context("MQTT source did not subscribe within 15 s (is the broker reachable?)")?
            .context("MQTT source stopped before subscribing")?;
        Ok(Pipeline { shutdown, ingest, rules, store, source_stats, printer })
    }

    /// MQTT messages the source has handled so far.
    pub fn messages_handled(&self) -> u64 {
        self.source_stats.messages.load(Ordering::Relaxed)
    }

    /// Stops ingest, lets everything already received flow through rules and sinks, and
    /// returns the run's summary.
    pub async fn stop(self) -> Result<Summary> {
        let _ = self.shutdown.send(true);
        let _ = self.ingest.await;
        let (mut summary, publisher) = self.rules.await.context("rules task panicked")??;
        let unacked = publisher.close(Duration::from_secs(5)).await;
        if unacked > 0 {
            warn!(unacked, "alert messages not acknowledged by the broker at shutdown");
        }
        summary.store = self.store.finish()?;
        if let Some(p) = self.printer {
            let _ = p.await;
        }
        summary.mqtt_messages = self.source_stats.messages.load(Ordering::Relaxed);
        Ok(summary)
    }
}

/// The rules stage: every reading through the engine, every outcome to the sinks.
async fn run_rules(
    mut engine: Engine,
    mut rx: mpsc::Receiver<IngestEvent>,
    store: mpsc::Sender<StoreItem>,
    publisher: MqttAlertPublisher,
    feed: Option<mpsc::UnboundedSender<AlertEvent>>,
) -> Result<(Summary, MqttAlertPublisher)> {
    let mut summary = Summary::default();
    let mut events = Vec::new();
    while let Some(item) = rx.recv().await {
        match item {
            IngestEvent::Readings(readings) => {
                summary.readings += readings.len() as u64;
                for r in &readings {
                    engine.process(r, &mut events);
                }
                store.send(StoreItem::Readings(readings)).await.context("store stopped")?;
                if events.is_empty() {
                    continue;
                }
                for e in &events {
                    summary.record_event(e);
                    if let Err(err) = publisher.publish_event(e).await {
                        warn!(error = %err, event = %e.event_id, "could not publish alert event");
                    }
                    if let Some(f) = &feed {
                        let _ = f.send(e.clone());
                    }
                }
                store.send(StoreItem::Events(std::mem::take(&mut events))).await.context("store stopped")?;
            }
            IngestEvent::DeadLetter(d) => {
                summary.record_rejection(&d);
                if let Err(err) = publisher.publish_rejection(&d).await {
                    warn!(error = %err, "could not publish rejection notice");
                }
                store.send(StoreItem::DeadLetter(d)).await.context("store stopped")?;
            }
        }
    }
    summary.engine = engine.stats();
    summary.active_at_end = engine.active().into_iter().map(|(_, _, l)| l).collect();
    Ok((summary, publisher))
}
