//! The embedded broker's gateway front, as a gateway and a subscriber meet it on the wire:
//! pings answered, QoS 2 readings acknowledged once stored and released, live subscribers still
//! seeing every reading, a gateway that breaks the protocol or goes silent disconnected without
//! disturbing anyone else.

mod common;

use bytes::BytesMut;
use common::{duty, Riskwatch, TestClient};
use rumqttc::mqttbytes::v4::{Connect, Publish};
use rumqttc::mqttbytes::QoS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
levels = { yellow = "warning_level", red = "warning_level + 1.0" }
"#;

const TOPIC: &str = "riskwatch/v1/readings/hankou/hankou-wl";

fn start() -> (Riskwatch, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let (rw, port) = duty::start_pipeline(dir.path());
    (rw, port, dir)
}

/// A raw MQTT 3.1.1 connection with `keep_alive` seconds, CONNACK checked.
fn connect(port: u16, id: &str, keep_alive: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut c = Connect::new(id);
    c.keep_alive = keep_alive;
    let mut buf = BytesMut::new();
    c.write(&mut buf).unwrap();
    s.write_all(&buf).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_n(&mut s, 4), [0x20, 2, 0, 0], "{id}: CONNACK, accepted");
    s
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

fn reading(ts: i64, value: f64, qos: QoS, pkid: u16) -> BytesMut {
    let payload = format!(r#"{{"v":1,"kind":"water_level","ts":{ts},"unit":"m","value":{value}}}"#);
    let mut p = Publish::new(TOPIC, qos, payload);
    p.pkid = pkid;
    let mut buf = BytesMut::new();
    p.write(&mut buf).unwrap();
    buf
}

fn stored(db: &Path, ts: i64) -> bool {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM readings WHERE ts = ?1", [ts], |r| r.get::<_, i64>(0)))
        .map(|n| n == 1)
        .unwrap_or(false)
}

/// Waits for the peer to close `s` (EOF or reset); panics after `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) if start.elapsed() < within => return start.elapsed(),
            Ok(_) => continue,
            _ => panic!("the connection was still open after {within:?}"),
        }
    }
}

const T0: i64 = 1_594_051_200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_and_subscribers_on_the_front() {
    let (rw, port, dir) = start();
    let db = dir.path().join("store.db");
    // A live subscriber to the readings (a third-party dashboard) connects through the front.
    let mut watcher = TestClient::connect(port, "dashboard", &["riskwatch/v1/readings/#"]).await;

    let mut gw = connect(port, "gw-hankou", 60);
    // A ping is answered.
    gw.write_all(&[0xC0, 0]).unwrap();
    assert_eq!(read_n(&mut gw, 2), [0xD0, 0], "PINGRESP");

    // QoS 2: PUBREC once stored, PUBCOMP for the PUBREL.
    gw.write_all(&reading(T0, 26.0, QoS::ExactlyOnce, 9)).unwrap();
    assert_eq!(read_n(&mut gw, 4), [0x50, 2, 0, 9], "PUBREC for packet 9");
    assert!(stored(&db, T0), "the QoS 2 reading was stored before its PUBREC");
    gw.write_all(&[0x62, 2, 0, 9]).unwrap();
    assert_eq!(read_n(&mut gw, 4), [0x70, 2, 0, 9], "PUBCOMP for packet 9");

    // QoS 1 and QoS 0 readings; the PUBACK comes once stored.
    gw.write_all(&reading(T0 + 60_000, 26.5, QoS::AtMostOnce, 0)).unwrap();
    gw.write_all(&reading(T0 + 120_000, 28.9, QoS::AtLeastOnce, 10)).unwrap();
    assert_eq!(read_n(&mut gw, 4), [0x40, 2, 0, 10], "PUBACK for packet 10");
    assert!(stored(&db, T0 + 60_000) && stored(&db, T0 + 120_000), "both stored by the PUBACK");

    // The dashboard saw all three readings live.
    let seen = watcher.collect_until(Duration::from_secs(10), |ps| ps.len() >= 3).await;
    let values: Vec<f64> = seen
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [26.0, 26.5, 28.9], "live subscribers receive every reading, in order");

    // A gateway that sends garbage (packet type 15 does not exist) is disconnected …
    let mut bad = connect(port, "gw-broken", 60);
    bad.write_all(&[0xF0, 0]).unwrap();
    closed_within(&mut bad, Duration::from_secs(10));
    // … and one that goes silent past 1.5 × its keep-alive too …
    let mut silent = connect(port, "gw-silent", 1);
    let after = closed_within(&mut silent, Duration::from_secs(10));
    assert!(after >= Duration::from_millis(1400), "closed only after 1.5 × the keep-alive, not {after:?}");
    // … while the others carry on.
    gw.write_all(&reading(T0 + 180_000, 27.0, QoS::AtLeastOnce, 11)).unwrap();
    assert_eq!(read_n(&mut gw, 4), [0x40, 2, 0, 11], "PUBACK for packet 11");
    assert!(stored(&db, T0 + 180_000));
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
}
