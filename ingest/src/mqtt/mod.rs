//! MQTT source: subscribes to reading topics, validates each message against the wire format
//! and the registry, and forwards readings and dead letters to the pipeline.
//!
//! At-least-once: the session is persistent (fixed client id, `clean_session = false`) and a
//! QoS 1 message is acknowledged to the broker only after the next stage confirmed its
//! [`Delivery`] (the embedded pipeline: committed to SQLite; `riskwatch ingest`: written to
//! Kafka), so a crash or a failing disk in between makes the broker re-deliver instead of
//! losing it. Acknowledgements go out in arrival order, as MQTT requires, batched: one write per
//! group of confirmed deliveries ([`session`]). Connection loss is retried with exponential
//! backoff; the subscription is renewed whenever the broker has no session for us.

mod coalesce;
mod decode;
mod delivery;
mod session;
pub(crate) mod unacked;

pub use delivery::{Confirmation, Delivery, Message};
pub use session::{LinkError, READ_CHUNK};

pub(crate) use decode::Decoder;
use riskwatch_core::wire::{topic, Limits};
use riskwatch_core::Registry;
use session::{Dial, Ended, Link};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// A TLS transport for the broker connection (built by the binary from PEM files).
#[derive(Clone)]
pub struct Tls(pub rumqttc::Transport);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

/// Where and how to subscribe.
#[derive(Clone, Debug)]
pub struct MqttSourceConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; keep it fixed so the broker keeps our session (and queued messages).
    pub client_id: String,
    /// Topic filters, normally [`topic::READINGS_FILTER`] (or a `$share/GROUP/…` form) and,
    /// where this process applies officers' commands, [`topic::COMMANDS_TOPIC`].
    pub filters: Vec<String>,
    /// Persistent session unless set (tests of clean-session behaviour only).
    pub clean_session: bool,
    /// Largest MQTT packet accepted from the broker; above the wire cap so oversized payloads
    /// reach the decoder and are dead-lettered with a reason instead of breaking the link.
    pub max_packet_bytes: usize,
    /// Messages received and not yet acknowledged, at most: at this many, the source stops
    /// reading the broker's socket until the next stage confirms some (back-pressure; the broker
    /// holds the rest). Brokers cap what they send unacknowledged on their own side too
    /// (Mosquitto: `max_inflight_messages`, default 20 — raise it for ingest, see docs).
    pub inflight: u16,
    /// Receive coalescing: once messages stream in faster than one read per this period,
    /// the broker's socket is read once per period (or once 32 KiB are waiting) instead of on
    /// every TCP segment, so each read, hand-over and commit carries more messages; a message
    /// waits at most about this long. Zero reads every segment as it arrives. Plain TCP only.
    pub read_coalesce: Duration,
    /// Optional username and password.
    pub credentials: Option<(String, String)>,
    /// TLS (or another transport); `None` is plain TCP.
    pub transport: Option<Tls>,
}

impl MqttSourceConfig {
    /// [`MqttSourceConfig::inflight`] unless configured.
    pub const DEFAULT_INFLIGHT: u16 = 1000;

    /// [`MqttSourceConfig::read_coalesce`] unless configured.
    pub const DEFAULT_READ_COALESCE: Duration = Duration::from_millis(1);

    /// Defaults for a broker at `host:port`.
    pub fn new(host: &str, port: u16, client_id: &str) -> Self {
        MqttSourceConfig {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            filters: vec![topic::READINGS_FILTER.to_string()],
            clean_session: false,
            max_packet_bytes: 1024 * 1024,
            inflight: Self::DEFAULT_INFLIGHT,
            read_coalesce: Self::DEFAULT_READ_COALESCE,
            credentials: None,
            transport: None,
        }
    }
}

/// Live counters of a running source (shared, so the CLI can report while it runs).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// MQTT messages received (each acknowledged once handled).
    pub messages: AtomicU64,
    /// Valid readings forwarded.
    pub readings: AtomicU64,
    /// Dead letters forwarded (whole messages or batch items).
    pub rejected: AtomicU64,
    /// Connection errors seen (each followed by a backoff and a reconnect).
    pub reconnects: AtomicU64,
    /// Reads of the broker's socket made on receive coalescing's timer that brought messages
    /// (a steady stream read a period's worth at a time; [`MqttSourceConfig::read_coalesce`]).
    pub coalesced_reads: AtomicU64,
    /// Gateway connections open on the gateway front (embedded wiring).
    pub gateways: AtomicU64,
    /// Times the gateway front stopped taking a gateway's messages, by the limit reached:
    /// the connection's `gateway_inflight` …
    pub held_by_gateway_limit: AtomicU64,
    /// … the front's `unacked_limit` …
    pub held_by_total_limit: AtomicU64,
    /// … or a full pipeline queue.
    pub held_by_pipeline: AtomicU64,
}

/// The registry a running source checks readings against, replaceable while it runs.
pub type RegistryHandle = Arc<RwLock<Arc<Registry>>>;

/// A running MQTT source.
pub struct MqttSource {
    cfg: MqttSourceConfig,
    decoder: Decoder,
}

impl MqttSource {
    /// Prepares a source; [`MqttSource::run_confirmed`] does the work.
    pub fn new(cfg: MqttSourceConfig, registry: Arc<Registry>, limits: Limits) -> Self {
        let decoder =
            Decoder { registry: Arc::new(RwLock::new(registry)), limits, stats: Arc::new(SourceStats::default()) };
        MqttSource { cfg, decoder }
    }

    /// The registry readings are checked against; replace what it holds to take in a new
    /// registry (a sensor added without a restart) from the next message on.
    pub fn registry_handle(&self) -> RegistryHandle {
        Arc::clone(&self.decoder.registry)
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<SourceStats> {
        Arc::clone(&self.decoder.stats)
    }

    /// Runs until `shutdown` turns true or the receiver of `tx` is gone. Each read from the
    /// broker's socket becomes one [`Delivery`]; its messages are acknowledged once it is
    /// confirmed, in arrival order. `ready` is true while subscribed.
    pub async fn run_confirmed(
        self,
        tx: mpsc::Sender<Delivery>,
        mut shutdown: watch::Receiver<bool>,
        ready: watch::Sender<bool>,
    ) {
        let cfg = &self.cfg;
        let transport = cfg.transport.as_ref().map(|t| &t.0);
        let dial = Dial {
            host: &cfg.host,
            port: cfg.port,
            client_id: &cfg.client_id,
            clean_session: cfg.clean_session,
            keep_alive: Duration::from_secs(15),
            credentials: cfg.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            transport,
            filters: &cfg.filters,
            max_packet_bytes: cfg.max_packet_bytes,
            read_coalesce: cfg.read_coalesce,
        };
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let mut backoff = Duration::from_millis(100);
        let mut outage = riskwatch_core::outage::OutageLog::new("ingest");
        loop {
            let opened = tokio::select! {
                _ = shutdown.changed() => return,
                l = Link::open(&dial) => l,
            };
            let error = match opened {
                Ok(link) => {
                    backoff = Duration::from_millis(100);
                    outage.connected(std::time::Instant::now());
                    info!(%broker, session_present = link.session_present, "ingest connected");
                    if !link.session_present {
                        info!(filters = ?cfg.filters, "ingest subscribed");
                    }
                    let _ = ready.send(true);
                    match session::serve(link, &self.decoder, &tx, &mut shutdown, usize::from(cfg.inflight.max(1)))
                        .await
                    {
                        Ended::Stop(drain) => {
                            let _ = ready.send(false);
                            // Nothing more goes downstream; acknowledge what it confirms.
                            drop(tx);
                            drain.finish(Duration::from_secs(10)).await;
                            return;
                        }
                        Ended::Lost(e) => e,
                    }
                }
                Err(e) => e,
            };
            self.decoder.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            outage.failed(std::time::Instant::now(), &format_args!("{broker}: {error}"));
            let _ = ready.send(false);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

impl MqttSource {
    /// The decoder, for a [`crate::front::GatewayFront`] that feeds the same pipeline (same
    /// registry, limits and counters).
    pub(crate) fn decoder(&self) -> Decoder {
        self.decoder.clone()
    }
}
