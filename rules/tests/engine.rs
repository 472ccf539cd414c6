//! Engine behaviour a duty officer would notice: which alerts, at which level, when.

use riskwatch_core::{AlertChange, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::{Engine, RuleError, RuleSet};

const REGISTRY: &str = r#"
    [[sites]]
    id = "hankou"
    [[sites]]
    id = "nanjing"
    [[sensors]]
    id = "hankou-wl"
    site = "hankou"
    kind = "water_level"
    unit = "m"
    attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
    [[sensors]]
    id = "nanjing-wl"
    site = "nanjing"
    kind = "water_level"
    unit = "m"
    attributes = { warning_level = 8.70, guaranteed_level = 10.00, record_level = 10.22 }
"#;

const RULES: &str = r#"
    [[rules]]
    id = "water-level"
    applies_to = { kind = "water_level" }
    deadband = 0.05
    on_delay = { samples = 2 }
    levels = { blue = "warning_level - 0.30", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
"#;

fn engine() -> Engine {
    let reg = Registry::from_toml(REGISTRY).unwrap();
    Engine::new(&RuleSet::from_toml(RULES).unwrap(), &reg).unwrap()
}

fn wl(sensor: &str, site: &str, minute: i64, v: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        site: site.into(),
        kind: SensorKind::WaterLevel,
        ts: Timestamp(1_594_080_000_000 + minute * 60_000),
        value: Value::Scalar(v),
        unit: "m".into(),
        quality: Quality::Good,
        exercise: false,
    }
}

fn feed(e: &mut Engine, rs: &[Reading]) -> Vec<riskwatch_core::AlertEvent> {
    let mut out = Vec::new();
    for r in rs {
        e.process(r, r.ts, &mut out);
    }
    out
}

#[test]
fn a_flood_wave_walks_up_and_down_the_ladder_per_station() {
    let mut e = engine();
    assert_eq!(e.binding_count(), 2);
    let levels = [26.5, 27.1, 27.1, 27.4, 27.4, 28.6, 28.6, 29.1, 29.1, 28.7, 27.2, 26.0];
    let rs: Vec<Reading> =
        levels.iter().enumerate().map(|(i, v)| wl("hankou-wl", "hankou", i as i64 * 5, *v)).collect();
    let ev = feed(&mut e, &rs);
    let summary: Vec<(AlertChange, Level, i64)> =
        ev.iter().map(|e| (e.change, e.level, (e.ts.millis() - 1_594_080_000_000) / 60_000)).collect();
    assert_eq!(
        summary,
        vec![
            (AlertChange::Raised, Level::Blue, 10),
            (AlertChange::Escalated, Level::Yellow, 20),
            (AlertChange::Escalated, Level::Orange, 30),
            (AlertChange::Escalated, Level::Red, 40),
            (AlertChange::DeEscalated, Level::Orange, 45),
            (AlertChange::DeEscalated, Level::Blue, 50),
            (AlertChange::Cleared, Level::Blue, 55),
        ]
    );
    // One alert id through the whole life, sequence numbers in order, highest level kept.
    assert!(ev.iter().all(|x| x.alert_id == ev[0].alert_id));
    assert_eq!(ev.iter().map(|x| x.seq).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert_eq!(ev.last().unwrap().highest_level, Level::Red);
    assert!((ev[1].threshold - 27.30).abs() < 1e-9);
    assert!(ev[3].message_en.contains("29.10 m"), "{}", ev[3].message_en);
    assert!(ev[3].message_zh.contains("红色预警"), "{}", ev[3].message_zh);
    assert!(e.active().is_empty());
}

#[test]
fn thresholds_come_from_each_stations_attributes() {
    let mut e = engine();
    // 9.0 m is over Nanjing's warning level (8.70) but far below Hankou's.
    let ev = feed(&mut e, &[wl("nanjing-wl", "nanjing", 0, 9.0), wl("nanjing-wl", "nanjing", 5, 9.0)]);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].level, ev[0].subject.as_str()), (Level::Yellow, "nanjing-wl"));
    let ev = feed(&mut e, &[wl("hankou-wl", "hankou", 0, 9.0), wl("hankou-wl", "hankou", 5, 9.0)]);
    assert!(ev.is_empty());
}

#[test]
fn replaying_the_same_history_gives_the_same_ids() {
    let rs: Vec<Reading> =
        [27.5, 27.5, 26.0].iter().enumerate().map(|(i, v)| wl("hankou-wl", "hankou", i as i64, *v)).collect();
    let a = feed(&mut engine(), &rs);
    let b = feed(&mut engine(), &rs);
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

#[test]
fn failed_quality_readings_neither_raise_nor_clear() {
    let mut e = engine();
    let mut bad = wl("hankou-wl", "hankou", 0, 35.0);
    bad.quality = Quality::Fail;
    let mut bad2 = bad.clone();
    bad2.ts = Timestamp(bad.ts.millis() + 60_000);
    // A gauge reporting fault raises a sensor-fault alert — never a flood alert.
    let ev = feed(&mut e, &[bad, bad2]);
    let seen: Vec<(&str, AlertChange)> = ev.iter().map(|x| (x.rule_id.as_ref(), x.change)).collect();
    assert_eq!(seen, vec![("dq.sensor_fault", AlertChange::Raised)]);
    assert_eq!(ev[0].category, riskwatch_core::AlertCategory::DataQuality);
    let ev = feed(&mut e, &[wl("hankou-wl", "hankou", 2, 28.0), wl("hankou-wl", "hankou", 3, 28.0)]);
    let hazard: Vec<Level> = ev.iter().filter(|x| x.rule_id.as_ref() == "water-level").map(|x| x.level).collect();
    assert_eq!(hazard, vec![Level::Yellow]);
    let mut low = wl("hankou-wl", "hankou", 4, 20.0);
    low.quality = Quality::Missing;
    // It neither clears the flood alert nor reports a fault: the third reading without a fault
    // flag clears the sensor-fault alert.
    let ev = feed(&mut e, &[low]);
    let seen: Vec<(&str, AlertChange)> = ev.iter().map(|x| (x.rule_id.as_ref(), x.change)).collect();
    assert_eq!(seen, vec![("dq.sensor_fault", AlertChange::Cleared)]);
    assert_eq!(e.stats().bad_quality, 3);
}

#[test]
fn duplicates_and_late_readings_do_not_move_state() {
    let mut e = engine();
    let ev = feed(
        &mut e,
        &[wl("hankou-wl", "hankou", 10, 28.0), wl("hankou-wl", "hankou", 10, 28.0), wl("hankou-wl", "hankou", 5, 28.0)],
    );
    assert!(ev.is_empty(), "the duplicate and the late reading must not count toward the on-delay");
    assert_eq!(e.stats().out_of_order, 2);
}

#[test]
fn a_rule_naming_a_missing_attribute_is_refused_with_the_sensor_named() {
    let reg = Registry::from_toml(REGISTRY).unwrap();
    let rules = RuleSet::from_toml(
        r#"
        [[rules]]
        id = "flood-limit"
        applies_to = { kind = "water_level" }
        levels = { yellow = "flood_limit_level" }
        "#,
    )
    .unwrap();
    let Err(RuleError::Invalid(p)) = Engine::new(&rules, &reg) else { panic!("expected Invalid") };
    assert!(p.iter().any(|x| x.contains("sensor hankou-wl") && x.contains("flood_limit_level")), "{p:?}");
}

#[test]
fn rules_file_problems_are_all_reported() {
    let err = RuleSet::from_toml(
        r#"
        [[rules]]
        id = "a"
        applies_to = { kind = "water_level" }
        deadband = -1
        levels = {}
        [[rules]]
        id = "a"
        applies_to = { kind = "water_level" }
        levels = { red = 3 }
        message = { en = "{colour}" }
        "#,
    )
    .unwrap_err();
    let s = err.to_string();
    for needle in [
        "line 5: rules[0].deadband: must be",
        "line 6: rules[0].levels: give at least one",
        "line 8: rules[1].id: id \"a\" is used twice (first at line 3, rules[0].id)",
        "line 11: rules[1].message: unknown placeholder {colour}",
    ] {
        assert!(s.contains(needle), "{needle} missing from: {s}");
    }
    let err = RuleSet::from_toml(
        "[[rules]]\nid = \"x\"\napplies_to = { kind = \"gas\" }\nlevels = { red = 1 }\nmeasure = \"pgd\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("pgd"), "{err}");
}

#[test]
fn thresholds_out_of_order_are_refused() {
    // Numbers: when the file is read, at the line of the higher level.
    let err = RuleSet::from_toml(
        "[[rules]]\nid = \"x\"\napplies_to = { kind = \"water_level\" }\nlevels = { yellow = 30,\n  orange = 20 }\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("line 5: rules[0].levels.orange: value: yellow threshold 30 must be ≤ orange threshold 20"),
        "{err}"
    );
    // Falling: the reverse.
    let err = RuleSet::from_toml(
        "[[rules]]\nid = \"x\"\ndirection = \"falling\"\napplies_to = { kind = \"water_level\" }\nlevels = { blue = 5, red = 6 }\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("rules[0].levels.red: value: blue threshold 5 must be ≥ red threshold 6"),
        "{err}"
    );
    // Attributes: against the registry, per sensor.
    let reg = Registry::from_toml(REGISTRY).unwrap();
    let rules = RuleSet::from_toml(
        "[[rules]]\nid = \"x\"\napplies_to = { kind = \"water_level\" }\nlevels = { yellow = \"warning_level + 5\", orange = \"warning_level\" }\n",
    )
    .unwrap();
    assert_eq!(rules.attribute_thresholds(), 2);
    let Err(RuleError::Invalid(p)) = Engine::new(&rules, &reg) else { panic!() };
    assert!(p[0].contains("line 4: rules[0].levels.orange: sensor hankou-wl: value: yellow threshold"), "{p:?}");
}
