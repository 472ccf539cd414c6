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
    quake_for(stations, 50)
}

fn quake_for(stations: &[(&str, &str, f64, f64)], duration_s: u32) -> Vec<Reading> {
    let start = Timestamp::now();
    let mut all: Vec<Reading> = stations
        .iter()
        .enumerate()
        .flat_map(|(i, (sensor, site, km, peak))| {
            let params = SeismicStationParams {
                distance_km: *km,
                peak_accel_at_10km_m_s2: *peak,
                duration_s,
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
    let within = Duration::from_secs(if want_network { 30 } else { 5 });
    let done = |events: &[AlertEvent]| events.iter().any(|e| e.category == AlertCategory::Composite);
    run_with(REGISTRY, RULES, quake(stations), within, done).await
}

/// Runs riskwatch with `registry` and `rules`, publishes `packets` as terminals would, and
/// collects alerts until `done` holds for them (or `within` has passed).
async fn run_with(
    registry: &str,
    rules: &str,
    packets: Vec<Reading>,
    within: Duration,
    done: impl Fn(&[AlertEvent]) -> bool,
) -> Vec<AlertEvent> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut rw = Riskwatch::spawn(
        &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "s.db", "--listen", &listen],
        dir.path(),
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut officer = TestClient::connect(port, "officer", &["riskwatch/v1/alerts/#"]).await;
    let mut gateway = TestClient::connect(port, "terminals", &[]).await;
    let n = packets.len();
    for r in &packets {
        gateway.publish_acked(&topic::reading_topic(r.site.as_str(), r.sensor.as_str()), encode_reading(r)).await;
    }
    let parse = |ps: &[Publish]| -> Vec<AlertEvent> {
        ps.iter().map(|p| serde_json::from_slice(&p.payload).unwrap()).collect()
    };
    let got = officer.collect_until(within, |ps| done(&parse(ps))).await;
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

const NETWORK_REGISTRY: &str = r#"
[[sites]]
id = "eq-a"
[[sites]]
id = "eq-b"
[[sites]]
id = "eq-c"
[[sites]]
id = "eq-d"
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
[[sensors]]
id = "eq-d-acc"
site = "eq-d"
kind = "seismic_acceleration"
unit = "m/s2"
"#;

/// ObsPy practice: band-pass, recursive STA/LTA (0.5 s / 10 s, on 3.5, off 1.0), and a
/// network coincidence of weighted station triggers; the 2-s off delay is the trigger-off
/// extension.
const NETWORK_RULES: &str = r#"
[[rules]]
id = "station-trigger"
applies_to = { kind = "seismic_acceleration" }
measure = "sta_lta"
sta_lta = { sta_s = 0.5, lta_s = 10, filter = { type = "bandpass", freqmin = 1, freqmax = 20, corners = 4 } }
levels = { yellow = 3.5 }
deadband = 2.5
off_delay = { seconds = 2 }

[[composites]]
id = "quake-network"
scope = "network"
members = { rules = ["station-trigger"] }
coincidence = { sum = 3.0, weights = { "eq-d-acc" = 0.5 }, trigger = "yellow", level = "orange" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_band_passed_coincidence_of_four_terminals_raises_one_network_alert_listing_them() {
    // Four terminals 12-60 km from the source; their vertical channel also carries gravity
    // (9.81 m/s^2), as a real accelerometer's does: raw STA/LTA would read a ratio of about 1
    // throughout, the 1-20 Hz band-pass removes it.
    let stations = [
        ("eq-a-acc", "eq-a", 12.0, 1.0),
        ("eq-b-acc", "eq-b", 25.0, 1.0),
        ("eq-c-acc", "eq-c", 40.0, 1.0),
        ("eq-d-acc", "eq-d", 60.0, 1.0),
    ];
    let mut packets = quake_for(&stations, 80);
    for r in &mut packets {
        if let riskwatch_core::Value::Waveform(w) = &mut r.value {
            let z = w.channels.iter_mut().find(|c| c.name == "z").expect("a z channel");
            z.samples.iter_mut().for_each(|x| *x += 9.81);
        }
    }
    // Done once the network alert has been raised and cleared again (every trigger ended).
    let cleared = |events: &[AlertEvent]| {
        events.iter().any(|e| e.category == AlertCategory::Composite && e.change.as_str() == "cleared")
    };
    let events = run_with(NETWORK_REGISTRY, NETWORK_RULES, packets, Duration::from_secs(60), cleared).await;
    let network: Vec<&AlertEvent> = events.iter().filter(|e| e.category == AlertCategory::Composite).collect();
    let raised: Vec<&&AlertEvent> = network.iter().filter(|e| e.change.as_str() == "raised").collect();
    assert_eq!(raised.len(), 1, "exactly one network alert: {network:#?}");
    assert!(cleared(&events), "the network alert cleared after the quake: {network:#?}");
    let n = raised[0];
    assert_eq!((n.subject.as_str(), n.level), ("quake-network", Level::Orange));
    let c = &n.details.as_ref().expect("details")["coincidence"];
    let listed: Vec<&str> = c["stations"].as_array().unwrap().iter().map(|s| s["sensor"].as_str().unwrap()).collect();
    let sum = c["sum"].as_f64().unwrap();
    assert!(sum >= 3.0 && listed.len() >= 3, "sum {sum} of {listed:?}");
    let weights: f64 = listed.iter().map(|s| if *s == "eq-d-acc" { 0.5 } else { 1.0 }).sum();
    assert_eq!(sum, weights, "the sum is the listed stations' weights: {c}");
    // Every terminal triggered on its own (yellow), nearest first.
    let first_trigger =
        |s: &str| events.iter().find(|e| e.subject.as_str() == s && e.change.as_str() == "raised").map(|e| e.ts);
    let order: Vec<_> =
        stations.iter().map(|s| first_trigger(s.0).unwrap_or_else(|| panic!("{} triggered", s.0))).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "triggers follow the P wave's moveout: {order:?}");
}
