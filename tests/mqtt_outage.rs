//! The alert publisher against a real Mosquitto that restarts and forgets every session: alerts
//! queued before and during the outage are all acknowledged by the broker afterwards (rumqttc
//! alone drops its in-flight messages when the broker has no session for it), each exactly
//! once and in order, and while the broker is down the publisher holds back whoever publishes
//! instead of queueing without bound: ten times its memory allowance is offered during the
//! outage, and its memory stays within the allowance.

mod common;
mod servers;

use common::{assert_each_once, private_kib, TestClient};
use riskwatch_core::wire::topic::COMMAND_ERRORS_TOPIC;
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use rumqttc::{Event, Packet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each message: "msg {n} " and padding, about the size of an alert event with its messages.
const PAYLOAD: usize = 2 * 1024;
const BEFORE: u64 = 5;
const BURST: u64 = 2000;
/// How much this process's private memory may grow while the broker is away. The publisher
/// holds what it has taken until the broker acknowledges it, and takes at most its queue's
/// worth of messages (about 2 × 1 024) before a publisher waits: a few MB at this size.
const ALLOWANCE_KIB: u64 = 24 * 1024;
/// Offered while the broker is down: ten times the allowance.
const OFFERED: u64 = 10 * ALLOWANCE_KIB * 1024 / PAYLOAD as u64 + 1;
const TOTAL: u64 = BEFORE + BURST + OFFERED;

fn payload(n: u64) -> Vec<u8> {
    let mut p = format!("msg {n} ").into_bytes();
    p.resize(PAYLOAD, b'x');
    p
}

fn number(p: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(&p[..p.len().min(32)]).to_string();
    text.split(' ').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a test message: {text:?}"))
}

/// Waits until `cond` holds, polling; panics naming `what` at the deadline.
async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_alerts_survive_a_broker_restart_that_lost_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = servers::mosquitto_with(dir.path(), false);
    let publisher = Arc::new(MqttAlertPublisher::connect("127.0.0.1", broker.port, "outage-test-alerts"));
    let me = std::process::id();
    for n in 0..BEFORE {
        publisher.publish_command_error(payload(n)).await.unwrap();
    }
    until(Duration::from_secs(30), "the first messages acknowledged", || publisher.acked() >= BEFORE).await;
    let before = private_kib(me);

    // A burst, and the broker dies under it: some messages are in flight, unacknowledged.
    for n in BEFORE..BEFORE + BURST {
        publisher.publish_command_error(payload(n)).await.unwrap();
    }
    broker.kill9();
    // Ten times the allowance offered while the broker is down, as fast as the publisher takes it.
    let p = Arc::clone(&publisher);
    let sender = tokio::spawn(async move {
        for n in BEFORE + BURST..TOTAL {
            p.publish_command_error(payload(n)).await.unwrap();
        }
    });
    // The publisher holds the sender back: `sent` stops growing.
    let peak = Arc::new(AtomicU64::new(before));
    let (stop, pk) = (Arc::new(AtomicBool::new(false)), Arc::clone(&peak));
    let s = Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            pk.fetch_max(private_kib(me), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (mut last, mut since) = (publisher.sent(), Instant::now());
    until(Duration::from_secs(60), "the publisher to hold the sender back", || {
        let now = publisher.sent();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_secs(2)
    })
    .await;
    let taken = publisher.sent();
    let outage_peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "broker down: the publisher took {taken} of {TOTAL} messages and held the rest back; private memory \
         {before} KiB before the burst, peak {outage_peak} KiB (+{} KiB, allowance {ALLOWANCE_KIB} KiB)",
        outage_peak.saturating_sub(before)
    );
    assert!(
        outage_peak <= before + ALLOWANCE_KIB,
        "the publisher's memory stays within the allowance while {} MB are offered to an absent broker: {before} KiB \
         before, peak {outage_peak} KiB",
        OFFERED * PAYLOAD as u64 / 1_000_000
    );
    assert!(taken < TOTAL / 10, "back-pressure: the publisher took {taken} of {TOTAL} messages without a broker");

    // The broker comes back without any session; a witness subscribes at once and sees every
    // message from the first it gets on: in order, each once.
    tokio::task::block_in_place(|| broker.start());
    let mut witness = TestClient::connect(broker.port, "outage-witness", &[COMMAND_ERRORS_TOPIC]).await;
    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    let w = Arc::clone(&seen);
    let watching = tokio::spawn(async move {
        loop {
            match witness.eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => w.lock().unwrap().push(number(&p.payload)),
                Ok(_) => {}
                Err(e) => panic!("witness: {e}"),
            }
        }
    });
    until(Duration::from_secs(120), "every message acknowledged after the restart", || publisher.acked() >= TOTAL)
        .await;
    sender.await.unwrap();
    until(Duration::from_secs(30), "the last message at the witness", || seen.lock().unwrap().contains(&(TOTAL - 1)))
        .await;
    // Copies, if any, would follow closely: 1 s without news.
    let (mut n, mut since) = (seen.lock().unwrap().len(), Instant::now());
    until(Duration::from_secs(30), "the witness's stream to end", || {
        let now = seen.lock().unwrap().len();
        if now != n {
            (n, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_secs(1)
    })
    .await;
    watching.abort();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    let first = *seen.iter().min().unwrap();
    assert!(first < TOTAL - OFFERED / 2, "the witness saw most of the stream: from message {first} on");
    assert_each_once("messages at the witness (by number)", seen.iter().copied(), first..TOTAL);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in publishing order");
    assert_eq!(
        (publisher.sent(), publisher.acked(), publisher.pending()),
        (TOTAL, TOTAL, 0),
        "sent, acknowledged and pending: each message acknowledged once"
    );
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("after the restart: {} messages at the witness, each once; peak private memory {peak} KiB", seen.len());
    let publisher = Arc::try_unwrap(publisher).ok().expect("the sender is done");
    assert_eq!(publisher.close(Duration::from_secs(5)).await, 0);
}
