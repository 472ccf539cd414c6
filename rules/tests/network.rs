//! Network-scope composites: multi-station coincidence across sites (seismic terminals at
//! three sites must agree before orange; one station alone never goes beyond yellow).

use riskwatch_core::{AlertCategory, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::{Engine, RuleSet};

const REGISTRY: &str = r#"
[[sites]]
id = "sta-a"
[[sites]]
id = "sta-b"
[[sites]]
id = "sta-c"
[[sensors]]
id = "a"
site = "sta-a"
kind = "pressure"
unit = "kPa"
[[sensors]]
id = "b"
site = "sta-b"
kind = "pressure"
unit = "kPa"
[[sensors]]
id = "c"
site = "sta-c"
kind = "pressure"
unit = "kPa"
"#;

// A stand-in for per-station intensity: each station alone stops at yellow and holds its level
// for 30 s after the shaking (the coincidence window).
const RULES: &str = r#"
[[rules]]
id = "station"
applies_to = { kind = "pressure" }
levels = { blue = 2.0, yellow = 3.0 }
off_delay = { seconds = 30 }

[[composites]]
id = "quake-network"
scope = "network"
members = { rules = ["station"] }
levels = { orange = "count(station >= yellow) >= 2", red = "count(station >= yellow) >= 3" }
"#;

fn r(sensor: &str, site: &str, s: i64, v: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        site: site.into(),
        kind: SensorKind::Pressure,
        ts: Timestamp(1_600_000_000_000 + s * 1000),
        value: Value::Scalar(v),
        unit: "kPa".into(),
        quality: Quality::Good,
        exercise: false,
    }
}

#[test]
fn stations_agreeing_within_the_window_escalate_one_network_alert() {
    let mut e = Engine::new(&RuleSet::from_toml(RULES).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap();
    let mut out = Vec::new();
    // Station A shakes at t=0, B at t=5, C at t=12: all within A's 30-s hold.
    for rd in [r("a", "sta-a", 0, 3.5), r("a", "sta-a", 1, 1.0), r("b", "sta-b", 5, 3.2), r("c", "sta-c", 12, 3.1)] {
        e.process(&rd, rd.ts, &mut out);
    }
    let net: Vec<_> = out.iter().filter(|x| x.category == AlertCategory::Composite).collect();
    assert_eq!(net.len(), 2, "{out:#?}");
    assert_eq!(
        (net[0].subject.as_str(), net[0].site.as_str(), net[0].level),
        ("quake-network", "quake-network", Level::Orange)
    );
    assert_eq!(
        (net[1].level, net[1].ts.millis() - net[0].ts.millis()),
        (Level::Red, 7000),
        "red when the third station agrees"
    );
    assert!(out.iter().filter(|x| x.category == AlertCategory::Hazard).all(|x| x.level <= Level::Yellow));
}

#[test]
fn stations_too_far_apart_in_time_do_not_coincide() {
    let mut e = Engine::new(&RuleSet::from_toml(RULES).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap();
    let mut out = Vec::new();
    // A at t=0, B at t=100, C at t=200: each alone, never three at once.
    for rd in [
        r("a", "sta-a", 0, 3.5),
        r("a", "sta-a", 1, 1.0),
        r("a", "sta-a", 40, 1.0),
        r("b", "sta-b", 100, 3.2),
        r("b", "sta-b", 101, 1.0),
        r("b", "sta-b", 140, 1.0),
        r("c", "sta-c", 200, 3.1),
    ] {
        e.process(&rd, rd.ts, &mut out);
    }
    assert!(out.iter().all(|x| x.category != AlertCategory::Composite), "{out:#?}");
}

#[test]
fn a_composite_off_delay_runs_out_with_the_clock() {
    let rules = RULES.replace(
        "levels = { orange = \"count(station >= yellow) >= 2\"",
        "off_delay = { seconds = 10 }\nlevels = { orange = \"count(station >= yellow) >= 2\"",
    );
    let mut e = Engine::new(&RuleSet::from_toml(&rules).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap();
    let mut out = Vec::new();
    // Two stations shake at t=0 and report calm every second until t=35; their own 30-s holds
    // (counted from the first calm reading at t=1) end at t=31, after which nothing changes
    // any member any more.
    for rd in [r("a", "sta-a", 0, 3.5), r("b", "sta-b", 0, 3.5)] {
        e.process(&rd, rd.ts, &mut out);
    }
    for s in 1..=35 {
        for rd in [r("a", "sta-a", s, 1.0), r("b", "sta-b", s, 1.0)] {
            e.process(&rd, rd.ts, &mut out);
        }
    }
    for s in 36..=60 {
        e.advance(Timestamp(1_600_000_000_000 + s * 1000), &mut out);
    }
    let net: Vec<(i64, &str)> = out
        .iter()
        .filter(|x| x.category == AlertCategory::Composite)
        .map(|x| ((x.ts.millis() - 1_600_000_000_000) / 1000, x.change.as_str()))
        .collect();
    assert_eq!(
        net,
        vec![(0, "raised"), (41, "cleared")],
        "the network alert clears 10 s after its members, on the clock"
    );
}
