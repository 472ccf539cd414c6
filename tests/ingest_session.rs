//! The MQTT source's own session against a real Mosquitto: at-least-once with batched
//! acknowledgements, and back-pressure at its unacknowledged-message limit. After a clean stop
//! every confirmed message has been acknowledged: a new session under the same client id is
//! handed nothing. A streamed burst read on the receive-coalescing timer arrives whole.

mod servers;

use riskwatch_core::wire::{topic, Limits};
use riskwatch_core::Registry;
use riskwatch_ingest::{Delivery, IngestEvent, MqttSource, MqttSourceConfig, SourceStats};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const REGISTRY: &str = r#"
[[sites]]
id = "river-0"
[[sensors]]
id = "river-0-wl"
site = "river-0"
kind = "water_level"
unit = "m"
"#;

/// Event time of the first message (the others follow a millisecond apart).
const T0: i64 = 1_700_000_000_000;

/// Publishes `n` single-reading messages (event times T0 + 1..=n ms) at QoS 1 and waits for the
/// broker's acknowledgements.
async fn publish(port: u16, n: u64) {
    let mut o = MqttOptions::new("test-gateway", "127.0.0.1", port);
    o.set_inflight(200);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let acked = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.expect("gateway connection") {
                acked += 1;
            }
        }
    });
    for ts in 1..=n {
        let body = format!(r#"{{"kind":"water_level","ts":{},"unit":"m","value":5.0}}"#, T0 + ts as i64);
        client.publish(topic::reading_topic("river-0", "river-0-wl"), QoS::AtLeastOnce, false, body).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), acked).await.expect("broker acknowledged the gateway").unwrap();
}

/// Event times of the readings in a delivery, as 1..=n.
fn times(d: &Delivery) -> Vec<i64> {
    d.messages
        .iter()
        .flat_map(|m| &m.events)
        .flat_map(|e| match e {
            IngestEvent::Readings(r) => r.iter().map(|r| r.ts.millis() - T0).collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

async fn next(rx: &mut mpsc::Receiver<Delivery>, what: &str) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no delivery within 30 s ({what})"))
        .expect("source running")
}

/// A running source under test.
struct Running {
    stats: Arc<SourceStats>,
    rx: mpsc::Receiver<Delivery>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a source with `cfg` on the one-gauge registry and waits until it is subscribed.
async fn start(cfg: MqttSourceConfig) -> Running {
    let registry = Arc::new(Registry::from_toml(REGISTRY).unwrap());
    let source = MqttSource::new(cfg, registry, Limits::default());
    let stats = source.stats();
    let (tx, rx) = mpsc::channel::<Delivery>(4);
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready) = watch::channel(false);
    let task = tokio::spawn(source.run_confirmed(tx, stop_rx, ready_tx));
    tokio::time::timeout(Duration::from_secs(15), ready.wait_for(|r| *r)).await.unwrap().unwrap();
    Running { stats, rx, stop, task }
}

impl Running {
    /// Stops the source (it acknowledges what was confirmed) and waits for it.
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(20), self.task).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_messages_come_back_and_the_unacked_limit_holds() {
    const N: u64 = 3000;
    const LIMIT: u16 = 40;
    let dir = tempfile::tempdir().unwrap();
    let mqtt = servers::mosquitto(dir.path());
    let mut cfg = MqttSourceConfig::new("127.0.0.1", mqtt.port, "test-ingest");
    cfg.inflight = LIMIT;
    let mut source = start(cfg).await;
    let rx = &mut source.rx;
    publish(mqtt.port, N).await;

    // Hold deliveries unconfirmed: the source stops reading at LIMIT messages.
    let mut held = Vec::new();
    let mut held_messages = 0;
    while held_messages < usize::from(LIMIT) {
        let d = next(rx, "filling the unacknowledged window").await;
        held_messages += d.messages.len();
        held.push(d);
    }
    assert!(held_messages <= usize::from(LIMIT), "{held_messages} messages handed over unconfirmed, limit {LIMIT}");
    // Nothing more comes while they are held (the broker keeps the rest).
    let more = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(more.is_err(), "a delivery beyond the unacknowledged limit: {:?}", more.map(|d| d.map(|d| times(&d))));

    // Confirm them and go on, confirming everything up to event time 1500 …
    let mut confirmed: BTreeMap<i64, u32> = BTreeMap::new();
    for d in held {
        for t in times(&d) {
            *confirmed.entry(t).or_default() += 1;
        }
        d.confirm();
    }
    let dropped = loop {
        let d = next(rx, "the first half").await;
        let ts = times(&d);
        if ts.iter().any(|t| *t > 1500) {
            break ts; // … then drop this one unconfirmed: the source must not acknowledge it.
        }
        for t in ts {
            *confirmed.entry(t).or_default() += 1;
        }
        d.confirm();
    };
    let before_drop = confirmed.clone();
    // The rest arrives, the dropped messages again among them (after a reconnect).
    let mut again = 0;
    while (1..=N as i64).any(|t| !confirmed.contains_key(&t)) {
        let d = next(rx, "the re-delivery and the second half").await;
        for t in times(&d) {
            again += usize::from(before_drop.contains_key(&t));
            *confirmed.entry(t).or_default() += 1;
        }
        d.confirm();
    }
    assert!(dropped.iter().all(|t| confirmed.contains_key(t)), "the unconfirmed messages came back");
    // Not asserted: after the reconnect, Mosquitto 2.0.11 re-sent, in about one run in five,
    // messages acknowledged long before (from one of the first 40 on). At-least-once allows it;
    // the check after a clean stop, below, is the one on acknowledgements.
    if again > 0 {
        eprintln!("{again} confirmed messages delivered again after the reconnect");
    }
    assert!(
        source.stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the source reconnected after the drop"
    );
    source.stop().await;

    // Everything confirmed was acknowledged: a new session under the same client id gets nothing.
    let mut source = start(MqttSourceConfig::new("127.0.0.1", mqtt.port, "test-ingest")).await;
    let again = tokio::time::timeout(Duration::from_secs(1), source.rx.recv()).await;
    assert!(again.is_err(), "acknowledged messages delivered again: {:?}", again.map(|d| d.map(|d| times(&d))));
    source.stop().await;
}

/// Receive coalescing (`[mqtt] read_coalesce`): a burst makes the source read the broker's socket
/// on its timer, and the burst's tail — fewer bytes than wake the source while it streams —
/// still arrives, each message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_burst_is_read_on_the_coalescing_timer_and_its_tail_is_not_left_behind() {
    const N: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let mqtt = servers::mosquitto(dir.path());
    let mut cfg = MqttSourceConfig::new("127.0.0.1", mqtt.port, "test-ingest-coalesce");
    cfg.read_coalesce = Duration::from_millis(20);
    let mut source = start(cfg).await;
    let gateway = tokio::spawn(publish(mqtt.port, N));

    // The whole burst within a deadline: a tail left in the socket would wait for the broker's
    // next bytes (in this test, none come).
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    let whole = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < N as usize {
            let d = next(&mut source.rx, "the burst, to its last message").await;
            for t in times(&d) {
                *seen.entry(t).or_default() += 1;
            }
            d.confirm();
        }
    })
    .await;
    assert!(whole.is_ok(), "{} of {N} messages within 10 s", seen.len());
    gateway.await.unwrap();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (1..=N as i64).collect::<Vec<_>>());
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "messages delivered more than once without a reconnect: {twice:?}");
    let timed = source.stats.coalesced_reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(timed > 0, "the burst was never read on the coalescing timer");
    assert_eq!(source.stats.reconnects.load(std::sync::atomic::Ordering::Relaxed), 0);
    source.stop().await;
}
