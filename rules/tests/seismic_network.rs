//! The seismologist's trigger through the engine: a band-passed STA/LTA rule per terminal and a
//! weighted `coincidence` composite over them; the pre-filter's state survives snapshots.

use riskwatch_core::{
    AlertCategory, AlertChange, AlertEvent, Channel, Quality, Reading, Registry, SensorKind, Timestamp, Value, Waveform,
};
use riskwatch_rules::{Engine, RuleSet};

const T0: i64 = 1_700_000_000_000;
const RATE: usize = 100;

fn registry() -> Registry {
    let mut text = String::new();
    for s in ["a", "b", "c", "d"] {
        text += &format!(
            "[[sites]]\nid = \"{s}\"\n[[sensors]]\nid = \"{s}-acc\"\nsite = \"{s}\"\nkind = \"seismic_acceleration\"\nunit = \"m/s2\"\n"
        );
    }
    Registry::from_toml(&text).unwrap()
}

fn rules(filter: &str, sum: f64) -> RuleSet {
    RuleSet::from_toml(&format!(
        r#"
[[rules]]
id = "trigger"
applies_to = {{ kind = "seismic_acceleration" }}
measure = "sta_lta"
sta_lta = {{ sta_s = 0.5, lta_s = 10{filter} }}
levels = {{ yellow = 3.5 }}
deadband = 2.5
off_delay = {{ seconds = 2 }}

[[composites]]
id = "net"
scope = "network"
members = {{ rules = ["trigger"] }}
coincidence = {{ sum = {sum}, weights = {{ "d-acc" = 0.5 }} }}
"#
    ))
    .unwrap()
}

const BANDPASS: &str = r#", filter = { type = "bandpass", freqmin = 1, freqmax = 20, corners = 4 }"#;

/// One terminal's packets: LCG noise (σ ≈ 0.003 m/s²) plus gravity on z, and a 5 Hz burst of
/// amplitude `amp` from second `onset` for 6 s.
fn terminal(name: &str, seed: u64, seconds: usize, onset: usize, amp: f64) -> Vec<Reading> {
    let mut s = seed;
    let mut noise = move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.01
    };
    (0..seconds)
        .map(|second| {
            let z: Vec<f64> = (0..RATE)
                .map(|i| {
                    let t = second as f64 + i as f64 / RATE as f64;
                    let shake = if (onset as f64..onset as f64 + 6.0).contains(&t) {
                        amp * (2.0 * std::f64::consts::PI * 5.0 * t).sin()
                    } else {
                        0.0
                    };
                    9.81 + shake + noise()
                })
                .collect();
            Reading {
                sensor: format!("{name}-acc").as_str().into(),
                site: name.into(),
                kind: SensorKind::SeismicAcceleration,
                ts: Timestamp(T0 + second as i64 * 1000),
                value: Value::Waveform(Waveform {
                    rate_hz: RATE as f64,
                    channels: vec![Channel { name: "z".into(), samples: z }],
                }),
                unit: "m/s2".into(),
                quality: Quality::Good,
                exercise: false,
            }
        })
        .collect()
}

/// Four terminals, the arrival moving across them 1 s apart; packets in event-time order.
fn quake() -> Vec<Reading> {
    let mut all: Vec<Reading> = [("a", 1, 20), ("b", 2, 21), ("c", 3, 22), ("d", 4, 23)]
        .into_iter()
        .flat_map(|(name, seed, onset)| terminal(name, seed, 60, onset, 0.2))
        .collect();
    all.sort_by_key(|r| r.ts);
    all
}

fn run(rules: &RuleSet, readings: &[Reading]) -> Vec<AlertEvent> {
    let mut e = Engine::new(rules, &registry()).unwrap();
    let mut out = Vec::new();
    for r in readings {
        e.process(r, r.ts, &mut out);
    }
    out
}

#[test]
fn band_passed_triggers_in_coincidence_raise_one_network_alert_listing_the_stations() {
    let events = run(&rules(BANDPASS, 3.0), &quake());
    let net: Vec<&AlertEvent> = events.iter().filter(|e| e.category == AlertCategory::Composite).collect();
    let raised: Vec<&&AlertEvent> = net.iter().filter(|e| e.change == AlertChange::Raised).collect();
    let summary: Vec<(String, String, f64, i64)> = events
        .iter()
        .map(|e| (e.subject.to_string(), e.change.as_str().to_string(), e.value, e.ts.millis() - T0))
        .collect();
    assert_eq!(raised.len(), 1, "{summary:?}");
    let c = &raised[0].details.as_ref().unwrap()["coincidence"];
    let stations: Vec<&str> = c["stations"].as_array().unwrap().iter().map(|s| s["sensor"].as_str().unwrap()).collect();
    // a, b, c make 3.0 at 22 s, before d (weight 0.5) turns on.
    assert_eq!(stations, ["a-acc", "b-acc", "c-acc"], "{c}");
    assert_eq!((c["sum"].as_f64(), raised[0].value), (Some(3.0), 3.0));
    assert_eq!(raised[0].ts, Timestamp(T0 + 22_000));
    assert!(net.iter().any(|e| e.change == AlertChange::Cleared), "it clears after the quake: {net:#?}");
    // With d's half weight counted the threshold 3.5 needs all four.
    let events = run(&rules(BANDPASS, 3.5), &quake());
    let raised: Vec<&AlertEvent> =
        events.iter().filter(|e| e.category == AlertCategory::Composite && e.change == AlertChange::Raised).collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].ts, Timestamp(T0 + 23_000));
    assert_eq!(raised[0].value, 3.5, "a, b, c and half of d");
    let d = &raised[0].details.as_ref().unwrap()["coincidence"]["stations"][3];
    assert_eq!((d["sensor"].as_str(), d["weight"].as_f64()), (Some("d-acc"), Some(0.5)));
}

#[test]
fn without_the_band_pass_gravity_on_z_hides_every_arrival() {
    // Raw STA/LTA of 9.81 ± 0.2 m/s² barely moves from 1: no station triggers.
    let events = run(&rules("", 3.0), &quake());
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn a_snapshot_mid_record_continues_the_filter_exactly() {
    let rules = rules(BANDPASS, 3.0);
    let readings = quake();
    let whole = run(&rules, &readings);
    let mut e = Engine::new(&rules, &registry()).unwrap();
    let mut out = Vec::new();
    let (first, rest) = readings.split_at(4 * 21 + 2);
    for r in first {
        e.process(r, r.ts, &mut out);
    }
    let snapshot = e.snapshot();
    let mut e = Engine::new(&rules, &registry()).unwrap();
    e.restore_exact(snapshot).unwrap();
    for r in rest {
        e.process(r, r.ts, &mut out);
    }
    assert_eq!(out, whole);
}

#[test]
fn filter_and_coincidence_problems_name_their_fields() {
    let err = RuleSet::from_toml(
        r#"
[[rules]]
id = "t"
applies_to = { kind = "seismic_acceleration" }
measure = "sta_lta"
sta_lta = { filter = { type = "bandpass", freq = 5, freqmax = 0, corners = 20 } }
levels = { yellow = 3.5 }

[[composites]]
id = "n"
scope = "network"
coincidence = { sum = 0, weights = { x = -1 } }
levels = { red = "any(>= red)" }
"#,
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "sta_lta.filter.freq: not used by type Bandpass",
        "sta_lta.filter.freqmin: required",
        "sta_lta.filter.freqmax: 0 must be a positive frequency",
        "sta_lta.filter.corners: 20 must be 1 to 16",
        "coincidence.sum: 0 must be a positive number",
        "coincidence.weights.x: -1 must be a number >= 0",
        "levels: a coincidence composite takes its level from coincidence.level",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}
