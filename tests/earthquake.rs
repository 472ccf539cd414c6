//! A simulated earthquake through the embedded pipeline over real MQTT: several strong-motion
//! terminals see it, each raises at most a single-station (yellow) intensity alert, and the
//! network coincidence rule raises one orange site-level alert carrying every station's
//! intensity. A single terminal shaking alone — a faulty or kicked sensor — never goes beyond
//! yellow and raises no network alert.

mod common;

use common::{free_port, Riskwatch, TestClient};
use riskwatch_core::wire::{encode_reading, topic};
use riskwatch_core::{AlertCategory, AlertEvent, Level, Reading, SensorKind, Timestamp};
use riskwatch_simulators::seismic::{SeismicStation, SeismicStationParams};
use riskwatch_simulators::SensorSpec;
use rumqttc::Publish;
use std::time::Duration;

const REGISTRY: &str = r#"
[[sites]]
id = "eq-a"
[[sites]]
id = "eq-b"
[[sites]]
id = "eq-c"
[[sensors]]
id = "eq-a-acc"
site = "eq-a"
kind = "seismic_acceleration"
unit = "m/s2"
[[sensors]]
id = "eq-b-acc"
site = "eq-b"
kind = "seismic_acceleration"
unit = "m/s2"
[[sensors]]
id = "eq-c-acc"
site = "eq-c"
kind = "seismic_acceleration"
unit = "m/s2"
"#;

const RULES: &str = r#"
[[rules]]
id = "station-intensity"
applies_to = { kind = "seismic_acceleration" }
measure = "intensity"
deadband = 0.3
off_delay = { seconds = 20 }
precision = 1
levels = { blue = 2.0, yellow = 3.0 }

[[composites]]
id = "quake-network"
scope = "network"
members = { rules = ["station-intensity"] }
levels = { orange = "count(station-intensity >= yellow) >= 3" }
"#;

/// The stations' packets, interleaved in event time as gateways would deliver them.
fn quake(stations: &[(&str, &str, f64, f64)]) -> Vec<Reading> {
    let start = Timestamp::now();
    let mut all: Vec<Reading> = stations
        .iter()
        .enumerate()
        .flat_map(|(i, (sensor, site, km, peak))| {
            let params = SeismicStationParams {
                distance_km: *km,
                peak_accel_at_10km_m_s2: *peak,
                duration_s: 50,
                ..Default::default()
            };
            SeismicStation::track(
                params,
                SensorSpec::new(sensor, site, SensorKind::SeismicAcceleration, "m/s2"),
                start,
                100 + i as u64,
            )
            .readings
        })
        .collect();
    all.sort_by_key(|r| r.ts);
    all
}

async fn run(stations: &[(&str, &str, f64, f64)], want_network: bool) -> Vec<AlertEvent> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut rw = Riskwatch::spawn(
        &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "s.db", "--listen", &listen],
        dir.path(),
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut officer = TestClient::connect(port, "officer", &["riskwatch/v1/alerts/#"]).await;
    let mut gateway = TestClient::connect(port, "terminals", &[]).await;
    let packets = quake(stations);
    let n = packets.len();
    for r in &packets {
        gateway.publish_acked(&topic::reading_topic(r.site.as_str(), r.sensor.as_str()), encode_reading(r)).await;
    }
    let parse = |ps: &[Publish]| -> Vec<AlertEvent> {
        ps.iter().map(|p| serde_json::from_slice(&p.payload).unwrap()).collect()
    };
    let got = officer
        .collect_until(Duration::from_secs(if want_network { 30 } else { 5 }), |ps| {
            parse(ps).iter().any(|e| e.category == AlertCategory::Composite)
        })
        .await;
    // Stop only once every packet has been through the pipeline (the store has them all).
    let db = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored: i64 = db.query_row("SELECT count(*) FROM readings", [], |r| r.get(0)).unwrap_or(0);
        if stored as usize >= n || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(db);
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
    assert!(
        out.iter().any(|l| l.contains(&format!("readings processed    {n}"))),
        "all {n} packets processed:\n{}",
        out.join("\n")
    );
    parse(&got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earthquake_seen_by_three_terminals_raises_one_network_alert_with_intensities() {
    let events =
        run(&[("eq-a-acc", "eq-a", 12.0, 1.0), ("eq-b-acc", "eq-b", 35.0, 1.0), ("eq-c-acc", "eq-c", 60.0, 1.0)], true)
            .await;
    let network: Vec<&AlertEvent> = events.iter().filter(|e| e.category == AlertCategory::Composite).collect();
    assert_eq!(network.len(), 1, "exactly one site-level alert: {events:#?}");
    let n = network[0];
    assert_eq!((n.subject.as_str(), n.level, n.change.as_str()), ("quake-network", Level::Orange, "raised"));
    let members = n.details.as_ref().unwrap()["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let intensities: Vec<f64> = members.iter().map(|m| m["value"].as_f64().unwrap()).collect();
    assert!(intensities.iter().all(|i| *i >= 3.0), "every station at intensity III or more: {intensities:?}");
    // The nearest station shakes hardest; no single station went beyond yellow.
    let hazard: Vec<&AlertEvent> = events.iter().filter(|e| e.category == AlertCategory::Hazard).collect();
    assert!(hazard.iter().all(|e| e.level <= Level::Yellow), "{hazard:#?}");
    let peak = |s: &str| hazard.iter().filter(|e| e.subject.as_str() == s).map(|e| e.value).fold(0.0, f64::max);
    assert!(peak("eq-a-acc") > peak("eq-c-acc"), "near > far: {} vs {}", peak("eq-a-acc"), peak("eq-c-acc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_terminal_shaking_alone_never_goes_beyond_yellow() {
    // Only station A records strong shaking (as a faulty or disturbed terminal would); the
    // others see background noise only.
    let events =
        run(&[("eq-a-acc", "eq-a", 5.0, 3.0), ("eq-b-acc", "eq-b", 35.0, 0.0), ("eq-c-acc", "eq-c", 60.0, 0.0)], false)
            .await;
    let a: Vec<&AlertEvent> = events.iter().filter(|e| e.subject.as_str() == "eq-a-acc").collect();
    assert!(!a.is_empty(), "the shaking terminal raises its own alert");
    assert!(
        a.iter().any(|e| e.details.as_ref().is_some_and(|d| d["intensity"].as_f64().unwrap_or(0.0) >= 6.0)),
        "it measured strong shaking: {a:#?}"
    );
    assert!(events.iter().all(|e| e.level <= Level::Yellow), "nothing above yellow: {events:#?}");
    assert!(
        events.iter().all(|e| !e.subject.as_str().starts_with("eq-b") && !e.subject.as_str().starts_with("eq-c")),
        "quiet terminals stay quiet"
    );
    assert!(events.iter().all(|e| e.category != AlertCategory::Composite), "no network alert from one station");
}
