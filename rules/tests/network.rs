//! Network-scope composites: multi-station coincidence across sites (seismic terminals at
//! three sites must agree before orange; one station alone never goes beyond yellow).

use riskwatch_core::{AlertCategory, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::{CompositeRole, Engine, MemberLevel, RuleSet};

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

/// The Kafka path's split: each station's site in an engine of its own (site composites only),
/// their hazard level changes reported as member levels — each reported twice, as a readings
/// partition replayed after a crash does — to a network engine that evaluates the network
/// composite. Its events are exactly those of one engine over every site, ids included.
#[test]
fn network_composites_over_split_engines_match_one_engine_over_every_site() {
    let rules = RuleSet::from_toml(RULES).unwrap();
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let mut whole = Engine::new(&rules, &registry).unwrap();
    let mut parts: Vec<Engine> = ["sta-a", "sta-b", "sta-c"]
        .iter()
        .map(|site| {
            let part = registry.retain_sites(|s| s.as_str() == *site);
            Engine::with_role(&rules, &part, CompositeRole::Sites).unwrap()
        })
        .collect();
    let mut network = Engine::with_role(&rules, &registry, CompositeRole::Network).unwrap();
    // Red when all three agree, orange then clear as they calm down one by one (30-s holds),
    // a new alert when two shake again.
    let readings = [
        r("a", "sta-a", 0, 3.5),
        r("a", "sta-a", 1, 1.0),
        r("b", "sta-b", 5, 3.2),
        r("b", "sta-b", 6, 0.4),
        r("c", "sta-c", 12, 3.1),
        r("c", "sta-c", 13, 0.2),
        r("a", "sta-a", 35, 0.5),
        r("b", "sta-b", 40, 0.3),
        r("c", "sta-c", 45, 0.1),
        r("a", "sta-a", 50, 3.3),
        r("b", "sta-b", 52, 3.9),
    ];
    let (mut expected, mut got) = (Vec::new(), Vec::new());
    let mut replayed: Vec<MemberLevel> = Vec::new();
    for rd in &readings {
        whole.process(rd, rd.ts, &mut expected);
        let part = &mut parts[["a", "b", "c"].iter().position(|s| *s == rd.sensor.as_str()).unwrap()];
        let mut events = Vec::new();
        part.process(rd, rd.ts, &mut events);
        assert!(events.iter().all(|e| e.category != AlertCategory::Composite), "partitions leave network composites");
        let members: Vec<MemberLevel> = events.iter().filter_map(MemberLevel::of_event).collect();
        got.extend(events);
        network.set_members(&members, rd.ts, &mut got);
        // A partition replayed after a crash sends earlier updates again, after newer ones:
        // they change nothing.
        for old in &replayed {
            network.set_members(std::slice::from_ref(old), rd.ts, &mut got);
        }
        replayed.extend(members);
        network.advance(rd.ts, &mut got);
        whole.advance(rd.ts, &mut expected);
        for p in parts.iter_mut() {
            p.advance(rd.ts, &mut got);
        }
    }
    let composite = |v: &[riskwatch_core::AlertEvent]| -> Vec<riskwatch_core::AlertEvent> {
        v.iter().filter(|e| e.category == AlertCategory::Composite).cloned().collect()
    };
    let changes: Vec<&str> = composite(&expected).iter().map(|e| e.change.as_str()).collect();
    assert_eq!(changes, ["raised", "escalated", "de_escalated", "cleared", "raised"], "the scenario");
    let (mut want, mut have) = (composite(&expected), composite(&got));
    // The members' details carry each member's last value, which both know; the rest must match.
    for e in want.iter_mut().chain(have.iter_mut()) {
        e.details = None;
    }
    assert_eq!(have, want);
}

/// A member update that changes a station's value but not its level is state the network host
/// must save: a recovered host starts from the saved value while its marks say the update was
/// seen (it is not applied again).
#[test]
fn a_member_value_change_at_the_same_level_is_in_the_next_save() {
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let rules = RuleSet::from_toml(RULES).unwrap();
    let mut network = Engine::with_role(&rules, &registry, CompositeRole::Network).unwrap();
    let update = |value: f64, seq: u32| MemberLevel {
        rule: "station".into(),
        sensor: "a".into(),
        level: Some(Level::Yellow),
        value,
        ts: Timestamp(1_600_000_000_000 + i64::from(seq) * 1000),
        first_ts: Timestamp(1_600_000_000_000),
        seq,
    };
    let mut out = Vec::new();
    network.set_members(&[update(3.4, 1)], Timestamp(1_600_000_001_000), &mut out);
    network.snapshot_changes();
    network.set_members(&[update(3.9, 2)], Timestamp(1_600_000_002_000), &mut out);
    let (delta, full) = network.snapshot_changes();
    assert!(!full);
    let (_, sensors) = delta.split_sensors();
    let saved: Vec<String> = sensors.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
    assert_eq!(sensors.iter().map(|s| s.sensor()).collect::<Vec<_>>(), ["a"], "station a changed: {saved:?}");
    assert!(saved[0].contains("3.9"), "the save holds the new value: {}", saved[0]);
}
