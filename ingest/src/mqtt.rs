//! MQTT source: subscribes to reading topics, validates each message against the wire format
//! and the registry, and forwards readings and dead letters to the pipeline.
//!
//! At-least-once: the session is persistent (fixed client id, `clean_session = false`) and
//! acknowledgements are manual. A QoS 1 message is acknowledged to the broker only after the
//! next stage confirmed its [`Delivery`] (the embedded pipeline: committed to SQLite;
//! `riskwatch ingest`: written to Kafka), so a crash or a failing disk in between makes the
//! broker re-deliver instead of losing it. Acknowledgements go out in arrival order, as MQTT
//! requires. Connection loss is retried with exponential backoff; the subscription is renewed
//! whenever the broker has no session for us.

use crate::IngestEvent;
use riskwatch_core::wire::{decode, topic, Limits};
use riskwatch_core::{DeadLetter, Registry, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Everything one MQTT message turned into, with the means to confirm it. The message is
/// acknowledged to the broker once [`Delivery::confirm`] is called; dropping the delivery
/// unconfirmed leaves it unacknowledged, so the broker re-delivers it after a reconnect.
#[derive(Debug)]
pub struct Delivery {
    /// The MQTT topic it arrived on.
    pub topic: String,
    /// Arrival time.
    pub received_at: Timestamp,
    /// Readings, dead letters or a command, in payload order.
    pub events: Vec<IngestEvent>,
    confirm: oneshot::Sender<()>,
}

impl Delivery {
    /// The message is safe downstream: acknowledge it to the broker.
    pub fn confirm(self) {
        let _ = self.confirm.send(());
    }

    /// Takes the events out, keeping the confirmation.
    pub fn split(self) -> (Vec<IngestEvent>, Confirmation) {
        (self.events, Confirmation(self.confirm))
    }
}

/// The confirmation half of a [`Delivery`].
#[derive(Debug)]
pub struct Confirmation(oneshot::Sender<()>);

impl Confirmation {
    /// Acknowledge the message to the broker.
    pub fn confirm(self) {
        let _ = self.0.send(());
    }
}

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
    /// Unacknowledged QoS 1 messages the broker may have in flight to us.
    pub inflight: u16,
    /// Optional username and password.
    pub credentials: Option<(String, String)>,
    /// TLS (or another transport); `None` is plain TCP.
    pub transport: Option<Tls>,
}

impl MqttSourceConfig {
    /// Defaults for a broker at `host:port`.
    pub fn new(host: &str, port: u16, client_id: &str) -> Self {
        MqttSourceConfig {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            filters: vec![topic::READINGS_FILTER.to_string()],
            clean_session: false,
            max_packet_bytes: 1024 * 1024,
            inflight: 100,
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
}

/// The registry a running source checks readings against, replaceable while it runs.
pub type RegistryHandle = Arc<RwLock<Arc<Registry>>>;

/// A running MQTT source.
pub struct MqttSource {
    cfg: MqttSourceConfig,
    registry: RegistryHandle,
    limits: Limits,
    stats: Arc<SourceStats>,
}

impl MqttSource {
    /// Prepares a source; [`MqttSource::run`] does the work.
    pub fn new(cfg: MqttSourceConfig, registry: Arc<Registry>, limits: Limits) -> Self {
        let registry = Arc::new(RwLock::new(registry));
        MqttSource { cfg, registry, limits, stats: Arc::new(SourceStats::default()) }
    }

    /// The registry readings are checked against; replace what it holds to take in a new
    /// registry (a sensor added without a restart) from the next message on.
    pub fn registry_handle(&self) -> RegistryHandle {
        Arc::clone(&self.registry)
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<SourceStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` turns true or the pipeline side of `tx` is gone, acknowledging each
    /// message once its events were accepted by `tx`. `ready` is set to true once the
    /// subscription is acknowledged by the broker.
    pub async fn run(self, tx: mpsc::Sender<IngestEvent>, shutdown: watch::Receiver<bool>, ready: watch::Sender<bool>) {
        let (dtx, mut drx) = mpsc::channel::<Delivery>(64);
        let forward = tokio::spawn(async move {
            while let Some(d) = drx.recv().await {
                let (events, confirmation) = d.split();
                for ev in events {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                confirmation.confirm();
            }
        });
        self.run_confirmed(dtx, shutdown, ready).await;
        let _ = forward.await;
    }

    /// Runs until `shutdown` turns true or the receiver of `tx` is gone; each message is
    /// acknowledged only once its [`Delivery`] is confirmed, in arrival order.
    pub async fn run_confirmed(
        self,
        tx: mpsc::Sender<Delivery>,
        mut shutdown: watch::Receiver<bool>,
        ready: watch::Sender<bool>,
    ) {
        let mut opts = MqttOptions::new(&self.cfg.client_id, &self.cfg.host, self.cfg.port);
        opts.set_clean_session(self.cfg.clean_session)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_inflight(self.cfg.inflight)
            .set_max_packet_size(self.cfg.max_packet_bytes, self.cfg.max_packet_bytes);
        if let Some(t) = &self.cfg.transport {
            opts.set_transport(t.0.clone());
        }
        if let Some((u, p)) = &self.cfg.credentials {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        // Small messages go out at once, not after the previous one's TCP acknowledgement.
        eventloop.network_options.set_tcp_nodelay(true);
        let acker = spawn_acker(client.clone());
        let mut backoff = Duration::from_millis(100);
        let mut pending_subacks = 0usize;
        loop {
            let polled = tokio::select! {
                _ = shutdown.changed() => break,
                ev = eventloop.poll() => ev,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    info!(broker = %format!("{}:{}", self.cfg.host, self.cfg.port), session_present = ack.session_present, "ingest connected");
                    if !ack.session_present || self.cfg.clean_session {
                        pending_subacks = self.cfg.filters.len();
                        for f in &self.cfg.filters {
                            if let Err(e) = client.subscribe(f, QoS::AtLeastOnce).await {
                                warn!(error = %e, filter = %f, "subscribe request failed");
                            }
                        }
                    } else {
                        let _ = ready.send(true);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    pending_subacks = pending_subacks.saturating_sub(1);
                    if pending_subacks == 0 {
                        info!(filters = ?self.cfg.filters, "ingest subscribed");
                        let _ = ready.send(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.stats.messages.fetch_add(1, Ordering::Relaxed);
                    let (confirm, confirmed) = oneshot::channel();
                    let delivery = Delivery {
                        topic: p.topic.clone(),
                        received_at: Timestamp::now(),
                        events: self.handle(&p.topic, &p.payload),
                        confirm,
                    };
                    if acker.0.send((p, confirmed)).is_err() || tx.send(delivery).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection error; reconnecting");
                    let _ = ready.send(false);
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        drop(tx);
        // Acknowledge what the next stage confirms while it drains, then disconnect.
        drop(acker.0);
        let drained = async {
            let mut acks_done = acker.1;
            loop {
                tokio::select! {
                    _ = &mut acks_done => break,
                    ev = eventloop.poll() => if ev.is_err() { break },
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
        let _ = client.disconnect().await;
        // Let the DISCONNECT (and pending acks) go out.
        let _ =
            tokio::time::timeout(Duration::from_millis(500), async { while eventloop.poll().await.is_ok() {} }).await;
    }

    /// Decodes one message into what the pipeline should see.
    fn handle(&self, topic_name: &str, payload: &[u8]) -> Vec<IngestEvent> {
        if topic_name == topic::COMMANDS_TOPIC {
            return vec![IngestEvent::Command(payload.to_vec())];
        }
        let now = Timestamp::now();
        let mut out = Vec::with_capacity(2);
        let registry = Arc::clone(&self.registry.read().unwrap_or_else(|e| e.into_inner()));
        match decode(topic_name, payload, &registry, &self.limits) {
            Ok(decoded) => {
                for rej in decoded.rejected {
                    debug!(topic = topic_name, reason = rej.error.code(), "reading rejected");
                    out.push(IngestEvent::DeadLetter(DeadLetter::new(
                        now,
                        topic_name,
                        &rej.error,
                        rej.index,
                        rej.sensor,
                        rej.raw.into_bytes(),
                    )));
                }
                if !decoded.readings.is_empty() {
                    self.stats.readings.fetch_add(decoded.readings.len() as u64, Ordering::Relaxed);
                    out.push(IngestEvent::Readings(decoded.readings));
                }
            }
            Err(e) => {
                debug!(topic = topic_name, reason = e.code(), "message rejected");
                let sensor = topic::parse_reading_topic(topic_name).ok().and_then(|t| t.sensor.map(str::to_string));
                out.push(IngestEvent::DeadLetter(DeadLetter::new(now, topic_name, &e, None, sensor, payload.to_vec())));
            }
        }
        let rejected = out.iter().filter(|ev| matches!(ev, IngestEvent::DeadLetter(_))).count();
        self.stats.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        out
    }
}

type AckQueue = mpsc::UnboundedSender<(Publish, oneshot::Receiver<()>)>;

/// The task that acknowledges messages in arrival order as their deliveries are confirmed.
/// Returns its queue and a receiver that completes when the task has finished.
///
/// The queue is unbounded on purpose: the acker waits on the client's request channel, which
/// only the receive loop drains by polling; were the receive loop also to wait on the acker,
/// a burst of confirmations (one store commit confirms hundreds of messages) would deadlock the
/// two. Its length is bounded by the messages received and not yet acknowledged, which the
/// broker's in-flight window and the pipeline's bounded channels limit.
fn spawn_acker(client: AsyncClient) -> (AckQueue, oneshot::Receiver<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Publish, oneshot::Receiver<()>)>();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut unconfirmed = 0u64;
        while let Some((publish, confirmed)) = rx.recv().await {
            match confirmed.await {
                Ok(()) => {
                    if let Err(e) = client.ack(&publish).await {
                        warn!(error = %e, "could not queue MQTT ack");
                    }
                }
                Err(_) => unconfirmed += 1,
            }
        }
        if unconfirmed > 0 {
            warn!(unconfirmed, "messages not confirmed downstream; left unacknowledged for the broker to re-deliver");
        }
        let _ = done_tx.send(());
    });
    (tx, done_rx)
}
