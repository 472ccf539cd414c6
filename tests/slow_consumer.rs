//! A slow consumer: a subscriber to every riskwatch topic that stops reading its socket (a
//! duty-room screen whose network hangs; its receive buffer made small so that it is full at
//! once) must not hold up anyone else. While it is stalled, a gateway sends 50 000 readings
//! that raise and clear thousands of alerts — megabytes the stalled screen never reads: every
//! reading is stored, another officer receives every alert event, and riskwatch's memory
//! stays bounded.

mod common;
mod servers;

use common::{duty, unread_bytes, TestClient};
use riskwatch_core::wire::topic;
use riskwatch_core::AlertEvent;
use rumqttc::{Event, Packet};
use serde_json::json;
use servers::rss_kib;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MESSAGES: usize = 1000;
const PER_MESSAGE: usize = 50;
const READINGS: usize = MESSAGES * PER_MESSAGE;

/// Connects a raw MQTT 3.1.1 client with a 4 KiB receive buffer, subscribes to `filter` at
/// QoS 1, and returns the socket, which the caller then never reads.
fn stalled_subscriber(port: u16, filter: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let id = b"stalled-screen";
    let mut connect = vec![0x10, (10 + 2 + id.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0x02, 0x58];
    connect.extend_from_slice(&[0, id.len() as u8]);
    connect.extend_from_slice(id);
    s.write_all(&connect).unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    let mut sub = vec![0x82, (2 + 2 + filter.len() + 1) as u8, 0, 1, 0, filter.len() as u8];
    sub.extend_from_slice(filter.as_bytes());
    sub.push(1);
    s.write_all(&sub).unwrap();
    let mut suback = [0u8; 5];
    s.read_exact(&mut suback).unwrap();
    assert_eq!(suback, [0x90, 3, 0, 1, 1], "SUBACK granted QoS 1");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_up_nobody_and_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    duty::write_files(d);
    let (rw, port) = duty::start_pipeline(d);
    let pid = rw.child.id();

    // The stalled screen: subscribes, then never reads again.
    let stalled = stalled_subscriber(port, "riskwatch/v1/#");
    let stalled_port = stalled.local_addr().unwrap().port();

    let mut officer = TestClient::connect(port, "officer", &["riskwatch/v1/alerts/#"]).await;
    let officer_task = tokio::spawn(async move {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(15), officer.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    if let Ok(e) = serde_json::from_slice::<AlertEvent>(&p.payload) {
                        events.push(e.event_id);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("officer's connection: {e}"),
                Err(_) => break, // 15 s of quiet: the stream is over
            }
        }
        events
    });

    let before = rss_kib(pid);
    let mut gw = TestClient::connect(port, "gw-plant-a", &[]).await;
    let t0 = riskwatch_core::Timestamp::now().millis() - READINGS as i64 * 1000;
    for m in 0..MESSAGES {
        // Every 20 readings the gas concentration crosses the red threshold and back.
        let batch: Vec<_> = (m * PER_MESSAGE..(m + 1) * PER_MESSAGE)
            .map(|i| {
                let v = if (i / 10) % 2 == 1 { 55.0 } else { 5.0 };
                json!({"sensor": "a-gas-1", "kind": "gas_combustible", "ts": t0 + i as i64 * 1000, "unit": "%LEL", "value": v})
            })
            .collect();
        let body = json!({"v": 1, "readings": batch});
        gw.publish_acked(&topic::batch_topic("plant-a"), body.to_string()).await;
    }

    let db = d.join("store.db");
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&db).and_then(|c| c.query_row(sql, [], |r| r.get(0))).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak = rss_kib(pid);
    while count("SELECT count(*) FROM readings") < READINGS as i64 {
        peak = peak.max(rss_kib(pid));
        assert!(Instant::now() < deadline, "{} of {READINGS} readings stored", count("SELECT count(*) FROM readings"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received: BTreeSet<String> = officer_task.await.unwrap().into_iter().collect();
    peak = peak.max(rss_kib(pid));
    let stored: BTreeSet<String> = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut st = c.prepare("SELECT event_id FROM alert_events").unwrap();
        st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    assert!(stored.len() >= READINGS / 20, "the readings raised and cleared alerts: {} events", stored.len());
    assert_eq!(received, stored, "the officer received every alert event while the screen was stalled");
    // The stalled screen subscribes to every topic, so the embedded broker (rumqttd) keeps the
    // QoS 0 copies of the readings and the alert events it has not read in its in-memory log —
    // up to 64 MiB per subscription filter, then the oldest go (a "cursor jump", logged). On the
    // 2-core test VM this run grows riskwatch by ~63 MB (RSS) for ~16 MB of traffic. The bound
    // catches runaway growth; the gateway's own burst is held back by the gateway front and
    // bounded tightly in tests/gateway_burst.rs.
    assert!(peak < before + 128 * 1024, "riskwatch's memory stays bounded: {before} KiB before, peak {peak} KiB");
    eprintln!(
        "slow consumer: {} readings stored, {} alert events all received by the officer, {} bytes unread at the \
         stalled screen, riskwatch RSS {before} KiB before, peak {peak} KiB",
        READINGS,
        stored.len(),
        unread_bytes(stalled_port)
    );
    assert!(unread_bytes(stalled_port) > 0, "the screen really was stalled: data waits unread in its socket");
    drop(stalled);
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
}
