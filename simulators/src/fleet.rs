//! Virtual gateways: pace simulated series in wall-clock time and publish them over MQTT.
//!
//! Each site gets its own gateway connection (as in the field, one gateway per station or
//! plant). Every series is compressed into the run's duration by its own speed factor, so a
//! six-day flood, a thirty-minute leak and a one-minute earthquake all unfold within one demo,
//! each in its own event time. Publishing is QoS 1; a run ends when the broker has
//! acknowledged every message or the deadline passes.

use crate::plan::Message;
use crate::Track;
use riskwatch_core::wire::{encode_reading, topic};
use riskwatch_core::Reading;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

/// A raw message a gateway sends at a given moment: used to show how riskwatch handles a
/// gateway bug (e.g. a detector in fault reporting `NaN`).
#[derive(Clone, Debug)]
pub struct Glitch {
    /// When, from the start of the run.
    pub after: Duration,
    /// Topic to publish on.
    pub topic: String,
    /// The raw payload.
    pub payload: Vec<u8>,
}

/// How to run a fleet.
#[derive(Clone)]
pub struct FleetConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client ids are `{prefix}-{site}`.
    pub client_prefix: String,
    /// Wall-clock time the series are compressed into.
    pub duration: Duration,
    /// Raw messages to send besides the series.
    pub glitches: Vec<Glitch>,
    /// MQTT username and password, if the broker requires them.
    pub credentials: Option<(String, String)>,
    /// TLS, if the broker requires it.
    pub transport: Option<rumqttc::Transport>,
}

/// What a fleet sent.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Messages handed to the MQTT client.
    pub published: AtomicU64,
    /// Messages acknowledged by the broker.
    pub acked: AtomicU64,
    /// Readings in the messages handed to the MQTT client (plans only).
    pub readings: AtomicU64,
}

/// Publishes all tracks (grouped into one gateway per site) until they end, `shutdown` turns
/// true, or the duration is over; then waits up to 5 s for outstanding acknowledgements.
pub async fn run(tracks: Vec<Track>, cfg: FleetConfig, shutdown: watch::Receiver<bool>) -> Arc<FleetStats> {
    let stats = Arc::new(FleetStats::default());
    let mut by_site: BTreeMap<String, Vec<Track>> = BTreeMap::new();
    for t in tracks {
        by_site.entry(t.spec.site.to_string()).or_default().push(t);
    }
    let mut glitches_by_site: BTreeMap<String, Vec<Glitch>> = BTreeMap::new();
    for g in &cfg.glitches {
        let site = topic::parse_reading_topic(&g.topic).map(|t| t.site.to_string()).unwrap_or_default();
        glitches_by_site.entry(site).or_default().push(g.clone());
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (site, tracks) in by_site {
        let glitches = glitches_by_site.remove(&site).unwrap_or_default();
        let gw = Gateway::connect(&cfg, &site, Arc::clone(&stats));
        tasks.push(tokio::spawn(gw.run(tracks, glitches, start, cfg.duration, shutdown.clone())));
    }
    for t in tasks {
        let _ = t.await;
    }
    stats
}

struct Gateway {
    client: AsyncClient,
    driver: tokio::task::JoinHandle<()>,
    stats: Arc<FleetStats>,
}

/// The next reading of one track and when (from the run start) it is due.
struct Cursor {
    track: Track,
    speed: f64,
    next: Option<Reading>,
}

impl Cursor {
    fn due(&self) -> Option<Duration> {
        self.next.as_ref().map(|r| {
            let event_ms = (r.ts.millis() - self.track.start.millis()).max(0) as f64;
            Duration::from_secs_f64(event_ms / self.speed / 1000.0)
        })
    }
}

impl Gateway {
    fn connect(cfg: &FleetConfig, site: &str, stats: Arc<FleetStats>) -> Self {
        let client_id = format!("{}-{site}", cfg.client_prefix);
        let mut opts =
            gateway_options(&client_id, &cfg.host, cfg.port, cfg.credentials.as_ref(), cfg.transport.as_ref());
        opts.set_inflight(200);
        let (client, mut eventloop) = AsyncClient::new(opts, 512);
        // Small messages go out at once, not after the previous one's TCP acknowledgement.
        eventloop.network_options.set_tcp_nodelay(true);
        let s = Arc::clone(&stats);
        let driver = tokio::spawn(async move {
            let mut outage = riskwatch_core::outage::OutageLog::new("simulated gateway");
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        s.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        outage.connected(std::time::Instant::now());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        outage.failed(std::time::Instant::now(), &e);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Gateway { client, driver, stats }
    }

    async fn run(
        self,
        tracks: Vec<Track>,
        mut glitches: Vec<Glitch>,
        start: Instant,
        duration: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Leave the last 15 % of the run for the pipeline to catch up before the demo ends.
        let budget_ms = duration.as_secs_f64() * 1000.0 * 0.85;
        let mut cursors: Vec<Cursor> = tracks
            .into_iter()
            .map(|mut t| {
                let speed = (t.span_ms as f64 / budget_ms).max(1e-9);
                let next = t.readings.next();
                Cursor { track: t, speed, next }
            })
            .collect();
        glitches.sort_by_key(|g| g.after);
        let mut glitches = glitches.into_iter().peekable();
        loop {
            let next_track_due = cursors.iter().filter_map(Cursor::due).min();
            let next_glitch_due = glitches.peek().map(|g| g.after);
            let Some(due) = next_track_due.into_iter().chain(next_glitch_due).min() else { break };
            if due > duration {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(start + due) => {}
            }
            let now = start.elapsed();
            while glitches.peek().is_some_and(|g| g.after <= now) {
                let g = glitches.next().expect("peeked");
                self.send(g.topic, g.payload).await;
            }
            for c in cursors.iter_mut() {
                while c.due().is_some_and(|d| d <= now) {
                    let r = c.next.take().expect("due implies a reading");
                    self.send(topic::reading_topic(r.site.as_str(), r.sensor.as_str()), encode_reading(&r)).await;
                    c.next = c.track.readings.next();
                }
            }
        }
        let published = || self.stats.published.load(Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.stats.acked.load(Ordering::Relaxed) < published() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.driver).await;
    }

    async fn send(&self, topic: String, payload: Vec<u8>) {
        match self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "simulated gateway could not queue a message"),
        }
    }
}

/// How to publish a [`Plan`].
#[derive(Clone)]
pub struct PlanPublishConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Event ms per wall ms: a message due `d` ms after the scenario start is sent `d / speed`
    /// ms after the run starts (or as soon as possible, if the fleet is behind).
    pub speed: f64,
    /// How long to wait for outstanding acknowledgements at the end.
    pub ack_timeout: Duration,
    /// MQTT username and password, if the broker requires them.
    pub credentials: Option<(String, String)>,
    /// TLS, if the broker requires it.
    pub transport: Option<rumqttc::Transport>,
}

/// Options for one simulated gateway's connection.
fn gateway_options(
    client_id: &str,
    host: &str,
    port: u16,
    credentials: Option<&(String, String)>,
    transport: Option<&rumqttc::Transport>,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, host, port);
    if let Some((user, password)) = credentials {
        opts.set_credentials(user.as_str(), password.as_str());
    }
    if let Some(t) = transport {
        opts.set_transport(t.clone());
    }
    opts.set_keep_alive(Duration::from_secs(15)).set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts
}

/// Publishes a plan over MQTT at QoS 1, one connection per gateway client id, pacing messages
/// by their due time compressed by `speed`. The plan is generated on its own thread while the
/// previous messages are being sent. Ends when the plan is exhausted (and acknowledged, or
/// `ack_timeout` passed) or `shutdown` turns true.
pub async fn publish_plan<P>(plan: P, cfg: PlanPublishConfig, mut shutdown: watch::Receiver<bool>) -> Arc<FleetStats>
where
    P: IntoIterator<Item = Message> + Send + 'static,
{
    let stats = Arc::new(FleetStats::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4096);
    let producer = std::thread::spawn(move || {
        for m in plan {
            if tx.blocking_send(m).is_err() {
                break;
            }
        }
    });
    let mut clients: HashMap<Arc<str>, (AsyncClient, tokio::task::JoinHandle<()>)> = HashMap::new();
    let speed = if cfg.speed.is_finite() && cfg.speed > 0.0 { cfg.speed } else { f64::MAX };
    let start = Instant::now();
    loop {
        let m = tokio::select! {
            m = rx.recv() => m,
            _ = shutdown.changed() => None,
        };
        let Some(m) = m else { break };
        let due = Duration::from_secs_f64((m.due_ms.max(0) as f64 / speed / 1000.0).min(1e9));
        if start.elapsed() < due {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(start + due) => {}
            }
        }
        let client = clients.entry(Arc::clone(&m.client)).or_insert_with(|| {
            connect_gateway(
                gateway_options(&m.client, &cfg.host, cfg.port, cfg.credentials.as_ref(), cfg.transport.as_ref()),
                Arc::clone(&stats),
            )
        });
        let sent = tokio::select! {
            r = client.0.publish(m.topic, QoS::AtLeastOnce, false, m.payload) => r,
            _ = shutdown.changed() => break,
        };
        match sent {
            Ok(()) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                stats.readings.fetch_add(u64::from(m.readings), Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "simulated gateway could not queue a message"),
        }
    }
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || producer.join()).await;
    let published = || stats.published.load(Ordering::Relaxed);
    let _ = tokio::time::timeout(cfg.ack_timeout, async {
        while stats.acked.load(Ordering::Relaxed) < published() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for (_, (client, driver)) in clients {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    }
    stats
}

fn connect_gateway(mut opts: MqttOptions, stats: Arc<FleetStats>) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    opts.set_inflight(500).set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    // Small messages go out at once, not after the previous one's TCP acknowledgement.
    eventloop.network_options.set_tcp_nodelay(true);
    let driver = tokio::spawn(async move {
        let mut outage = riskwatch_core::outage::OutageLog::new("simulated gateway");
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    outage.connected(std::time::Instant::now());
                }
                Ok(_) => {}
                Err(e) => {
                    outage.failed(std::time::Instant::now(), &e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    (client, driver)
}
