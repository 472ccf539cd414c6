//! A burst far beyond the embedded broker's limits. Two gateways publish one reading per MQTT
//! message as fast as their sockets take them — one at QoS 1 (never waiting for an
//! acknowledgement before sending the next), one at QoS 0 — ~1 KiB each, 60 MB in all, while
//! riskwatch may take at most 150 messages ahead of its store (`[embedded] unacked_limit`).
//! What a plant expects:
//! - overload becomes back-pressure: riskwatch stops reading the gateways' sockets (bytes wait
//!   unread in them) instead of buffering the burst, and its memory stays bounded;
//! - a PUBACK means stored: when the QoS 1 gateway has its last PUBACK, every one of its
//!   readings is already in SQLite, and the PUBACKs came in publishing order;
//! - nothing is lost: every reading of both gateways is stored.

mod common;

use bytes::BytesMut;
use common::{free_port, private_kib, unread_bytes, Riskwatch};
use rumqttc::mqttbytes::v4::{Connect, Publish};
use rumqttc::mqttbytes::QoS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENSORS: usize = 50;
const PER_GATEWAY: usize = 30_000;
/// Ignored by the wire format (unknown fields are), it makes each message ~1 KiB.
const PADDING: usize = 900;
const GATEWAY_INFLIGHT: usize = 100;
const UNACKED_LIMIT: usize = 150;
/// riskwatch's private memory may grow this much over its warmed-up size during the burst
/// (store and state caches filling, allocator pools): the burst is 60 MB, and an unbounded buffer
/// anywhere — the embedded broker's log before the gateway front, a front reading sockets
/// regardless of its limits — exceeds it. (The store's memory-mapped file pages are the
/// kernel's page cache, not riskwatch's memory, and are not counted.)
const ALLOWANCE_KIB: u64 = 24 * 1024;

fn registry() -> String {
    let mut r = String::from("[[sites]]\nid = \"basin-a\"\n[[sites]]\nid = \"basin-b\"\n");
    for site in ["a", "b"] {
        for i in 0..SENSORS {
            r.push_str(&format!(
                "[[sensors]]\nid = \"{site}-wl-{i:02}\"\nsite = \"basin-{site}\"\nkind = \"water_level\"\nunit = \"m\"\n\
                 attributes = {{ warning_level = 10.0 }}\n"
            ));
        }
    }
    r
}

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.2
levels = { blue = "warning_level - 1.0", yellow = "warning_level", orange = "warning_level + 1.0", red = "warning_level + 2.0" }
"#;

/// 2024-01-01T00:00:00Z
const T0: i64 = 1_704_067_200_000;

/// The `i`-th message of gateway `site`: sensor `i % SENSORS`, one reading a minute per sensor.
fn message(site: &str, i: usize, qos: QoS) -> BytesMut {
    let sensor = format!("{site}-wl-{:02}", i % SENSORS);
    let ts = T0 + (i / SENSORS) as i64 * 60_000;
    // Through every level and back once at the start (each alert raised is state riskwatch
    // keeps until an officer resolves it, so the burst raises few), then calm.
    let step = i / SENSORS;
    let value = if step < 40 { 8.0 + step as f64 * 0.15 } else { 5.0 };
    let payload = format!(
        r#"{{"v":1,"kind":"water_level","ts":{ts},"unit":"m","value":{value:.2},"gateway_note":"{}"}}"#,
        "x".repeat(PADDING)
    );
    let mut p = Publish::new(format!("riskwatch/v1/readings/basin-{site}/{sensor}"), qos, payload);
    p.pkid = if qos == QoS::AtMostOnce { 0 } else { (i % 65_535) as u16 + 1 };
    let mut buf = BytesMut::new();
    p.write(&mut buf).unwrap();
    buf
}

/// A raw MQTT 3.1.1 connection, CONNACK received.
fn connect(port: u16, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut c = Connect::new(id);
    c.keep_alive = 0;
    c.clean_session = true;
    let mut buf = BytesMut::new();
    c.write(&mut buf).unwrap();
    s.write_all(&buf).unwrap();
    let mut connack = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "{id}: connection accepted");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

/// Writes every message of gateway `site`, as fast as the socket takes them.
fn blast(mut s: TcpStream, site: &'static str, qos: QoS) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = BytesMut::new();
        for i in 0..PER_GATEWAY {
            chunk.extend_from_slice(&message(site, i, qos));
            if chunk.len() > 32 * 1024 || i + 1 == PER_GATEWAY {
                s.write_all(&chunk).unwrap_or_else(|e| panic!("gateway {site}: {e}"));
                chunk.clear();
            }
        }
    })
}

fn stored(db: &Path, site: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM readings WHERE site = ?1", [site], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn a_burst_beyond_the_limits_is_held_back_at_the_gateways_and_every_reading_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("registry.toml"), registry()).unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    std::fs::write(
        d.join("plant.toml"),
        format!(
            "registry = \"registry.toml\"\nrules = \"rules.toml\"\n[embedded]\ndb = \"store.db\"\n\
             listen = \"127.0.0.1:{port}\"\ngateway_inflight = {GATEWAY_INFLIGHT}\nunacked_limit = {UNACKED_LIMIT}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ),
    )
    .unwrap();
    let mut rw = Riskwatch::spawn(&["run", "--config", "plant.toml"], d);
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let pid = rw.child.id();
    let db = d.join("store.db");

    // Warm up (store, engine, sockets) with a few messages, then take the baseline.
    {
        let mut s = connect(port, "warm-up");
        for i in 0..SENSORS * 4 {
            s.write_all(&message("a", 1_000_000 + i, QoS::AtMostOnce)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while stored(&db, "basin-a") < (SENSORS * 4) as i64 {
            assert!(Instant::now() < deadline, "warm-up readings not stored");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let before = private_kib(pid);

    // Gateway A, QoS 1: a reader thread checks its PUBACKs (order, count); the moment the last
    // one arrives, its readings are counted in the store.
    let a = connect(port, "gw-a");
    let acks = Arc::new(AtomicU64::new(0));
    let mut reader = a.try_clone().unwrap();
    let (acks_r, db_r) = (Arc::clone(&acks), db.clone());
    let a_reader = std::thread::spawn(move || {
        let mut expected: u16 = 1;
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        while acks_r.load(Ordering::Relaxed) < PER_GATEWAY as u64 {
            let n = reader.read(&mut buf).expect("gateway A: reading PUBACKs");
            assert!(n > 0, "riskwatch closed gateway A's connection");
            pending.extend_from_slice(&buf[..n]);
            let whole = pending.len() / 4 * 4;
            for ack in pending[..whole].chunks(4) {
                assert_eq!(ack[..2], [0x40, 2], "a PUBACK");
                let pkid = u16::from_be_bytes([ack[2], ack[3]]);
                assert_eq!(pkid, expected, "PUBACKs come in publishing order");
                expected = if expected == 65_535 { 1 } else { expected + 1 };
                acks_r.fetch_add(1, Ordering::Relaxed);
            }
            pending.drain(..whole);
        }
        // Acknowledged means stored.
        stored(&db_r, "basin-a")
    });
    let b = connect(port, "gw-b");
    let a_writer = blast(a, "a", QoS::AtLeastOnce);
    let b_writer = blast(b, "b", QoS::AtMostOnce);

    let (mut peak, mut most_unread) = (before, 0u64);
    let deadline = Instant::now() + Duration::from_secs(300);
    let total = 2 * PER_GATEWAY as i64 + (SENSORS * 4) as i64;
    while stored(&db, "basin-a") + stored(&db, "basin-b") < total {
        peak = peak.max(private_kib(pid));
        most_unread = most_unread.max(unread_bytes(port));
        assert!(
            Instant::now() < deadline,
            "{} + {} of {total} readings stored after 300 s",
            stored(&db, "basin-a"),
            stored(&db, "basin-b")
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    a_writer.join().unwrap();
    b_writer.join().unwrap();
    let a_stored_at_last_ack = a_reader.join().expect("gateway A's PUBACKs");
    peak = peak.max(private_kib(pid));
    eprintln!(
        "burst: {} readings stored; riskwatch private memory {before} KiB before, peak {peak} KiB (+{} KiB); up to {} KiB \
         waited unread in the gateways' connections",
        total,
        peak - before,
        most_unread / 1024
    );
    assert_eq!(
        a_stored_at_last_ack,
        (PER_GATEWAY + SENSORS * 4) as i64,
        "when gateway A had its last PUBACK, all its readings were stored"
    );
    assert!(
        most_unread > 256 * 1024,
        "riskwatch held the gateways back (left their bytes unread) rather than buffering: at most {most_unread} \
         bytes waited"
    );
    assert!(
        peak < before + ALLOWANCE_KIB,
        "riskwatch's private memory stays bounded: {before} KiB before, peak {peak} KiB during a 60-MB burst"
    );
    // Operators see it: how often a limit held the gateways back.
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics")).unwrap().text().unwrap();
    let value = |series: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(-1.0)
    };
    let held: f64 = ["gateway_inflight", "unacked_limit", "pipeline"]
        .iter()
        .map(|l| value(&format!("riskwatch_gateway_backpressure_total{{limit=\"{l}\"}}")))
        .sum();
    assert!(held > 0.0, "the back-pressure counters show the gateways were held back:\n{metrics}");
    eprintln!("held back: {held} times; gateway connections open now: {}", value("riskwatch_gateway_connections"));
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
}
