//! End to end over real MQTT: readings published to the embedded broker of a running
//! `riskwatch run` come back as alert events on the alert topics, everything lands in SQLite,
//! and a malformed payload is dead-lettered with its reason while its neighbours go through.

mod common;

use common::{free_port, Riskwatch, TestClient};
use riskwatch_core::alert::alert_id;
use riskwatch_core::{AlertEvent, Timestamp};
use std::time::Duration;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sites]]
id = "plant-a"

[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "lel-01"
site = "plant-a"
kind = "gas_combustible"
unit = "%LEL"
attributes = { alarm_1 = 25.0, alarm_2 = 50.0 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
levels = { blue = "warning_level - 0.50", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[rules]]
id = "gas"
applies_to = { kind = "gas_combustible" }
levels = { yellow = "alarm_1", orange = "alarm_2", red = 100 }
"#;

/// 2020-07-07T00:00:00+08:00
const T0: i64 = 1_594_051_200_000;
const STEP: i64 = 300_000;

fn ts(i: i64) -> Timestamp {
    Timestamp(T0 + i * STEP)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_become_alerts_on_mqtt_and_rows_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut rw = Riskwatch::spawn(
        &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen],
        dir.path(),
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));

    let mut officer =
        TestClient::connect(port, "duty-officer", &["riskwatch/v1/alerts/#", "riskwatch/v1/rejections/#"]).await;
    let mut gateway = TestClient::connect(port, "gateway-hankou", &[]).await;

    // A flood wave at 5-minute steps; on-delay is two readings.
    let levels = [26.50, 26.90, 26.95, 27.35, 27.40, 28.60, 28.70, 29.05, 29.10, 28.90, 27.00, 26.00];
    for (i, v) in levels.iter().enumerate() {
        let i = i as i64;
        // Alternate the two timestamp forms a gateway may use.
        let t = if i % 2 == 0 { serde_json::json!(ts(i).millis()) } else { serde_json::json!(ts(i).to_rfc3339_cst()) };
        let payload =
            serde_json::json!({"v": 1, "kind": "water_level", "ts": t, "unit": "m", "value": v, "quality": 1});
        gateway.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", payload.to_string()).await;
        if i == 5 {
            // A gateway bug in the middle of the wave: a bare NaN.
            let bad = format!(r#"{{"kind":"water_level","ts":{},"unit":"m","value":NaN}}"#, ts(5).millis() + 1);
            gateway.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", bad).await;
        }
    }
    // A plant gateway batch where the second item has the wrong unit.
    let batch = serde_json::json!({"readings": [
        {"sensor": "lel-01", "kind": "gas_combustible", "ts": T0, "unit": "%LEL", "value": 3.2},
        {"sensor": "lel-01", "kind": "gas_combustible", "ts": T0 + 1000, "unit": "ppm", "value": 3.3},
    ]});
    gateway.publish_acked("riskwatch/v1/readings/plant-a", batch.to_string()).await;

    let got = officer
        .collect_until(Duration::from_secs(30), |ps| {
            ps.iter().filter(|p| p.topic.contains("/alerts/")).count() >= 7
                && ps.iter().filter(|p| p.topic.contains("/rejections/")).count() >= 2
        })
        .await;
    let events: Vec<(String, AlertEvent)> = got
        .iter()
        .filter(|p| p.topic.contains("/alerts/"))
        .map(|p| (p.topic.clone(), serde_json::from_slice(&p.payload).expect("alert payload is an AlertEvent")))
        .collect();
    let seen: Vec<(&str, &str, Timestamp)> =
        events.iter().map(|(_, e)| (e.change.as_str(), e.level.as_str(), e.ts)).collect();
    assert_eq!(
        seen,
        vec![
            ("raised", "blue", ts(2)),
            ("escalated", "yellow", ts(4)),
            ("escalated", "orange", ts(6)),
            ("escalated", "red", ts(8)),
            ("de_escalated", "orange", ts(9)),
            ("de_escalated", "blue", ts(10)),
            ("cleared", "blue", ts(11)),
        ]
    );
    let id = alert_id("water-level", "hankou-wl", ts(2));
    for (seq, (_, e)) in events.iter().enumerate() {
        assert_eq!(e.alert_id, id);
        assert_eq!(e.event_id, format!("{id}-{seq}"));
        assert_eq!(e.site.as_str(), "hankou");
    }
    assert_eq!(events[0].0, "riskwatch/v1/alerts/blue/hankou/hankou-wl");
    assert_eq!(events[4].0, "riskwatch/v1/alerts/red/hankou/hankou-wl", "leaving red is published under red");
    assert!(events[3].1.message_en.contains("29.10"), "{}", events[3].1.message_en);

    let rejections: Vec<serde_json::Value> = got
        .iter()
        .filter(|p| p.topic.contains("/rejections/"))
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect();
    assert_eq!(rejections[0]["reason"], "non_finite");
    assert_eq!(rejections[0]["sensor"], "hankou-wl");
    assert_eq!(rejections[1]["reason"], "unit_mismatch");
    assert_eq!(rejections[1]["index"], 1);
    assert!(rejections[1]["error"].as_str().unwrap().contains("readings[1].unit"));

    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "riskwatch exits 0 on Ctrl-C; output:\n{}", out.join("\n"));
    assert!(out.iter().any(|l| l.contains("readings processed    13")), "{}", out.join("\n"));

    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let n: i64 = db.query_row("SELECT count(*) FROM readings WHERE sensor = 'hankou-wl'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 12, "every valid water-level reading around the bad one is stored");
    let gas: f64 = db.query_row("SELECT value FROM readings WHERE sensor = 'lel-01'", [], |r| r.get(0)).unwrap();
    assert_eq!(gas, 3.2);
    let stored: Vec<(String, String, i64)> = db
        .prepare("SELECT change, level, ts FROM alert_events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(String, String, i64)> =
        seen.iter().map(|(c, l, t)| (c.to_string(), l.to_string(), t.millis())).collect();
    assert_eq!(stored, expected);
    let dead: Vec<(String, String, Vec<u8>)> = db
        .prepare("SELECT reason, error, raw FROM dead_letters ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].0, "non_finite");
    assert!(String::from_utf8_lossy(&dead[0].2).contains("NaN"), "raw bytes are kept");
    assert_eq!(dead[1].0, "unit_mismatch");
    assert!(dead[1].1.contains("readings[1].unit"), "{}", dead[1].1);
}

/// A topology file without `[kafka]` runs the embedded wiring (the single-plant deployment):
/// in-process broker on `[embedded] listen`, SQLite store at `[embedded] db`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_without_kafka_runs_the_embedded_wiring() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("plant.toml"),
        format!(
            "registry = \"registry.toml\"\nrules = \"rules.toml\"\n[embedded]\ndb = \"plant.db\"\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let mut rw = Riskwatch::spawn(&["run", "--config", "plant.toml"], dir.path());
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut officer = TestClient::connect(port, "duty-officer", &["riskwatch/v1/alerts/#"]).await;
    let mut gateway = TestClient::connect(port, "gateway-plant-a", &[]).await;
    let payload = serde_json::json!({"v": 1, "kind": "gas_combustible", "ts": T0, "unit": "%LEL", "value": 60.0});
    gateway.publish_acked("riskwatch/v1/readings/plant-a/lel-01", payload.to_string()).await;
    let got = officer.collect_until(Duration::from_secs(30), |ps| !ps.is_empty()).await;
    let e: AlertEvent = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!((e.change.as_str(), e.level.as_str(), e.subject.as_str()), ("raised", "orange", "lel-01"));
    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
    let db = rusqlite::Connection::open(dir.path().join("plant.db")).unwrap();
    let n: i64 = db.query_row("SELECT count(*) FROM alert_events", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "the store named in the topology file holds the event");
}
