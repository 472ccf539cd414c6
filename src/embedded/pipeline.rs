//! The embedded topology: MQTT source → rule engine → SQLite, MQTT alert topics, live feed.
//!
//! Same components as the production path, wired in one process with bounded in-process
//! channels instead of Kafka (architecture.md, "Embedded mode").

use super::publisher::{self, Outgoing};
use super::recovery;
use super::rules_stage::{ConfigWatch, RulesStage};
use super::summary::Summary;
use anyhow::{Context, Result};
use riskwatch_core::wire::{topic, Limits};
use riskwatch_core::{AlertEvent, Registry, Timestamp};
use riskwatch_ingest::{Delivery, FrontLimits, GatewayFront, MqttSource, MqttSourceConfig, Sl651Server, SourceStats};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use riskwatch_sinks::rule_state::{state_path, StateFile, StateWriter};
use riskwatch_sinks::sqlite::{CommitReport, SqliteSink, SqliteStore, StoreItem};
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
    /// Digest of the registry file's text ([`riskwatch_rules::host::text_digest`]).
    pub registry_digest: String,
    /// The rules file's text.
    pub rules_text: String,
    /// SQLite file for readings, alert events and dead letters.
    pub db: PathBuf,
    /// When its commits reach the disk (`[embedded] synchronous`).
    pub synchronous: riskwatch_sinks::sqlite::Synchronous,
    /// MQTT broker the source subscribes to and alerts are published on.
    pub mqtt_host: String,
    /// Its port.
    pub mqtt_port: u16,
    /// With an external broker: messages it may have in flight to ingest, unacknowledged
    /// (`[mqtt] inflight`); the bigger, the larger the store's commits under load.
    pub inflight: u16,
    /// With an external broker: receive coalescing's read period (`[mqtt] read_coalesce`).
    pub read_coalesce: std::time::Duration,
    /// Prefix of the MQTT client ids (`{prefix}-ingest`, `{prefix}-alerts`).
    pub client_prefix: String,
    /// The rules file, to hot-reload when it changes (`None`: rules are fixed).
    pub rules_path: Option<PathBuf>,
    /// The registry file, likewise.
    pub registry_path: Option<PathBuf>,
    /// MQTT username and password (brokers with `allow_anonymous false`).
    pub credentials: Option<(String, String)>,
    /// TLS for the broker connections.
    pub tls: Option<rumqttc::Transport>,
    /// Where the pipeline's Prometheus series go.
    pub metrics: crate::metrics::Metrics,
    /// Print each alert event on stdout as it happens: `Some(colour)` to print, with or without
    /// ANSI colours; `None` for no live feed.
    pub console: Option<bool>,
    /// With the embedded broker: the gateway front on the announced address
    /// (`mqtt_host:mqtt_port` is then rumqttd's own loopback address).
    pub front: Option<FrontConfig>,
    /// The SL 651 source's bound listening socket (`[sl651] listen`, `--sl651`), if any, and
    /// its limits on peers (`[sl651] idle_timeout`, `max_connections`): hydrological RTUs
    /// report over it, into the same pipeline as MQTT readings.
    pub sl651: Option<(std::net::TcpListener, riskwatch_ingest::Sl651Limits)>,
}

/// The gateway front of an embedded broker.
pub struct FrontConfig {
    /// The announced address, bound ([`super::broker::EmbeddedBroker::listener`]).
    pub listener: std::net::TcpListener,
    /// rumqttd's own address ([`super::broker::EmbeddedBroker::internal`]).
    pub upstream: std::net::SocketAddr,
    /// Its limits on messages taken and not yet stored.
    pub limits: FrontLimits,
}

/// A running pipeline.
pub struct Pipeline {
    shutdown: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    front: Option<JoinHandle<()>>,
    sl651: Option<JoinHandle<()>>,
    rules: JoinHandle<Result<Summary>>,
    outbox: JoinHandle<MqttAlertPublisher>,
    store: SqliteSink,
    db: PathBuf,
    source_stats: Arc<SourceStats>,
    printer: Option<JoinHandle<()>>,
    ready: watch::Receiver<bool>,
}

impl Pipeline {
    /// Builds the engine, opens the store, connects to the broker and returns once the
    /// subscription is in place (readings published after this are processed).
    pub async fn start(cfg: PipelineConfig) -> Result<Pipeline> {
        let mut store = SqliteStore::open_with(&cfg.db, cfg.synchronous)
            .with_context(|| format!("opening store {}", cfg.db.display()))?;
        info!(store = %cfg.db.display(), synchronous = ?store.synchronous()?, "store opened");
        let state_path = state_path(&cfg.db);
        let state = StateFile::open_with(&state_path, cfg.synchronous)
            .with_context(|| format!("opening rule state {}", state_path.display()))?;
        // Pick up exactly where the last run stopped (saved state + input journal), before any
        // new message is taken in.
        let recovered = recovery::recover(
            &mut store,
            &state,
            &cfg.rules_text,
            Arc::clone(&cfg.registry),
            &cfg.registry_digest,
            Timestamp::now(),
        )?;
        let host = recovered.host;
        info!(bindings = host.engine().binding_count(), "rule engine ready");
        let retained = store.events_of_alerts(&host.open_alert_ids())?;
        crate::metrics::build_info(&cfg.metrics);
        let flushed = crate::metrics::sink_flush(&cfg.metrics, "sqlite");
        let store = SqliteSink::start_observed(
            store,
            Box::new(move |c: &CommitReport| flushed(c.readings, c.events, c.took, c.ok)),
        )?;
        let publisher = MqttAlertPublisher::connect_with(
            &cfg.mqtt_host,
            cfg.mqtt_port,
            &format!("{}-alerts", cfg.client_prefix),
            cfg.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            cfg.tls.clone(),
        );
        let source = MqttSource::new(
            MqttSourceConfig {
                // Behind a gateway front, readings come from the front; the broker only
                // carries copies of them for live subscribers.
                filters: if cfg.front.is_some() {
                    vec![topic::COMMANDS_TOPIC.into()]
                } else {
                    vec![
                        topic::READINGS_FILTER.into(),
                        topic::GATEWAY_READINGS_FILTER.into(),
                        riskwatch_core::wire::forecast::FORECASTS_FILTER.into(),
                        riskwatch_core::wire::forecast::GATEWAY_FORECASTS_FILTER.into(),
                        topic::COMMANDS_TOPIC.into(),
                    ]
                },
                credentials: cfg.credentials.clone(),
                transport: cfg.tls.clone().map(riskwatch_ingest::Tls),
                inflight: cfg.inflight,
                read_coalesce: cfg.read_coalesce,
                ..MqttSourceConfig::new(&cfg.mqtt_host, cfg.mqtt_port, &format!("{}-ingest", cfg.client_prefix))
            },
            Arc::clone(host.registry()),
            Limits::default(),
        );
        let source_stats = source.stats();
        crate::metrics::mqtt_source(&cfg.metrics, &source_stats);
        let (feed, printer) = match cfg.console {
            Some(colour) => {
                let (feed, printer) = publisher::LiveFeed::spawn(move |e: &AlertEvent| {
                    println!("{}", riskwatch_sinks::console::format_event(e, colour))
                });
                (Some(feed), Some(printer))
            }
            None => (None, None),
        };
        let (out, outbox) = publisher::spawn(publisher, feed);
        // The retained state of every open alert (the embedded broker forgets it on a restart),
        // then the events recovery produced, again, with their original ids.
        if !retained.is_empty() {
            out.send(Outgoing::Retained(retained)).await.context("publisher stopped")?;
        }
        if !recovered.events.is_empty() {
            out.send(Outgoing::Events(recovered.events)).await.context("publisher stopped")?;
        }
        let watch = ConfigWatch::new(cfg.rules_path, cfg.registry_path);
        let prune = store.sender();
        let state = StateWriter::start(
            state,
            Box::new(move |position| {
                // On the state file's thread: the journal up to `position` is no longer needed.
                let _ = prune.blocking_send(StoreItem::Prune(position));
            }),
            Box::new(|_| {}),
        )?;
        let stage = RulesStage::new(
            host,
            store.sender(),
            state,
            out,
            watch,
            Some(source.registry_handle()),
            crate::metrics::RuleMetrics::new(&cfg.metrics),
        );
        let (tx, rx) = mpsc::channel::<Delivery>(64);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let rules = tokio::spawn(stage.run(rx));
        let front = cfg.front.map(|f| {
            let front = GatewayFront::new(f.listener, f.upstream, &source, f.limits, super::broker::MAX_PACKET);
            tokio::spawn(front.run(tx.clone(), shutdown_rx.clone()))
        });
        let sl651 = cfg.sl651.map(|(listener, limits)| {
            let server = Sl651Server::new(listener, source.registry_handle()).with_limits(limits);
            crate::metrics::sl651_source(&cfg.metrics, &server.stats());
            tokio::spawn(server.run(tx.clone(), shutdown_rx.clone()))
        });
        let ingest = tokio::spawn(source.run_confirmed(tx, shutdown_rx, ready_tx));
        tokio::time::timeout(Duration::from_secs(15), ready_rx.wait_for(|r| *r))
            .await
            .context("MQTT source did not subscribe within 15 s (is the broker reachable?)")?
            .context("MQTT source stopped before subscribing")?;
        Ok(Pipeline {
            shutdown,
            ingest,
            front,
            sl651,
            rules,
            outbox,
            store,
            db: cfg.db,
            source_stats,
            printer,
            ready: ready_rx,
        })
    }

    /// Readiness: true while the MQTT source is connected and subscribed.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// MQTT messages the source has handled so far.
    pub fn messages_handled(&self) -> u64 {
        self.source_stats.messages.load(Ordering::Relaxed)
    }

    /// Resolves once the store has failed (disk full, I/O error), with the reason; the pipeline
    /// cannot go on and should be stopped. Nothing it had not committed was acknowledged.
    pub fn store_failed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        self.store.failed()
    }

    /// Stops ingest, lets everything already received flow through rules and sinks, and
    /// returns the run's summary.
    pub async fn stop(self) -> Result<Summary> {
        let _ = self.shutdown.send(true);
        let _ = self.ingest.await;
        if let Some(front) = self.front {
            let _ = front.await;
        }
        if let Some(sl651) = self.sl651 {
            let _ = sl651.await;
        }
        let db = self.db;
        // A failed store shows in the rules stage only as "store stopped": name the cause.
        let store_failed = |cause: riskwatch_sinks::sqlite::StoreError| {
            anyhow::anyhow!(
                "{cause} (store {}); readings not yet stored were not acknowledged to the broker, \
                 which re-delivers them once riskwatch runs again",
                db.display()
            )
        };
        let rules = self.rules.await.context("rules task panicked")?;
        // Off the runtime: committing runs the outbox hand-over, which may wait for the outbox.
        let store = self.store;
        let finished = tokio::task::spawn_blocking(move || store.finish()).await.context("store thread panicked")?;
        let mut summary = match rules {
            Ok(summary) => summary,
            Err(e) => return Err(finished.err().map(store_failed).unwrap_or(e)),
        };
        summary.store = finished.map_err(store_failed)?;
        // Every committed event is in the outbox now; it ends once it has sent them.
        let publisher = self.outbox.await.context("publisher task panicked")?;
        let unacked = publisher.close(Duration::from_secs(5)).await;
        if unacked > 0 {
            warn!(unacked, "alert messages not acknowledged by the broker at shutdown");
        }
        if let Some(p) = self.printer {
            let _ = p.await;
        }
        summary.mqtt_messages = self.source_stats.messages.load(Ordering::Relaxed);
        Ok(summary)
    }
}
