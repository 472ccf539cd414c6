//! Drills: exercise readings never touch live alerts, and every alert they cause says so.

use riskwatch_core::{AlertChange, AlertEvent, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::drill::{is_exercise_alert, EXERCISE_PREFIX};
use riskwatch_rules::{Action, Command, CommandError, Drill, Engine, RuleSet};

const REGISTRY: &str = r#"
    [[sites]]
    id = "hankou"
    [[sensors]]
    id = "hankou-wl"
    site = "hankou"
    kind = "water_level"
    unit = "m"
    attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

const RULES: &str = r#"
    [[rules]]
    id = "water-level"
    applies_to = { kind = "water_level" }
    deadband = 0.05
    levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
    remind = { orange = "30m" }
"#;

fn setup() -> (Engine, Drill) {
    let reg = Registry::from_toml(REGISTRY).unwrap();
    let rules = RuleSet::from_toml(RULES).unwrap();
    (Engine::new(&rules, &reg).unwrap(), Drill::new(&rules, std::sync::Arc::new(reg)))
}

/// A reading `minute` minutes after 2020-07-07 00:00 UTC (an exercise replays 2020), or after
/// 2026-11-23 00:00 UTC (live).
fn wl(minute: i64, v: f64, exercise: bool) -> Reading {
    let base = if exercise { 1_594_080_000_000 } else { 1_795_392_000_000 };
    Reading {
        sensor: "hankou-wl".into(),
        site: "hankou".into(),
        kind: SensorKind::WaterLevel,
        ts: Timestamp(base + minute * 60_000),
        value: Value::Scalar(v),
        unit: "m".into(),
        quality: Quality::Good,
        exercise,
    }
}

fn run(engine: &mut Engine, drill: &mut Drill, mut batch: Vec<Reading>) -> (Vec<Reading>, Vec<AlertEvent>) {
    let mut out = Vec::new();
    let now = Timestamp(1_795_392_000_000 + 3_600_000);
    drill.process_batch(engine, &mut batch, now, &mut out);
    (batch, out)
}

#[test]
fn exercise_readings_raise_marked_alerts_and_leave_live_state_alone() {
    let (mut engine, mut drill) = setup();
    // Live: the station is quiet at 26 m. Exercise: the 2020 crest at 28.8 m, interleaved in
    // the same batches as a gateway and a drill publisher would be.
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.push(wl(i * 5, 26.0, false));
        batch.push(wl(i * 5, 27.5 + 0.25 * i as f64, true));
    }
    let (batch, events) = run(&mut engine, &mut drill, batch);
    assert!(drill.active());
    assert!(engine.active().is_empty(), "no live alert: {:?}", engine.active());
    let raised: Vec<(AlertChange, Level)> = events.iter().map(|e| (e.change, e.level)).collect();
    assert_eq!(raised, vec![(AlertChange::Raised, Level::Yellow), (AlertChange::Escalated, Level::Orange)]);
    for e in &events {
        assert!(e.exercise, "{e:?}");
        assert!(is_exercise_alert(&e.alert_id) && e.event_id.starts_with(EXERCISE_PREFIX), "{e:?}");
        assert!(e.message_zh.starts_with("【演习】") && e.message_en.starts_with("[EXERCISE] "), "{e:?}");
        // Event time is the replayed flood's.
        assert!(e.ts.millis() < 1_600_000_000_000);
    }
    // Every reading got its quality flag back, in place.
    assert_eq!(batch.len(), 12);
    assert!(batch.iter().all(|r| r.quality == Quality::Good));
    // The live station rising later is a live alert, unmarked, with its own id.
    let (_, live) = run(&mut engine, &mut drill, vec![wl(40, 27.6, false), wl(45, 27.7, false)]);
    assert_eq!(live.len(), 1);
    assert!(!live[0].exercise && !is_exercise_alert(&live[0].alert_id));
    assert_ne!(live[0].alert_id, events[0].alert_id);
}

#[test]
fn commands_on_exercise_alerts_reach_the_drill_and_errors_name_the_exercise_id() {
    let (mut engine, mut drill) = setup();
    let (_, events) = run(&mut engine, &mut drill, vec![wl(0, 28.6, true), wl(5, 28.7, true)]);
    let id = events[0].alert_id.clone();
    let ack = Command {
        command_id: Some("c1".into()),
        alert_id: id.clone(),
        action: Action::Acknowledge,
        by: "duty-officer-li".into(),
        note: "drill: acknowledged".into(),
        unit: None,
        site: Some("hankou".into()),
        minutes: None,
    };
    let now = Timestamp::now();
    let ev = drill.command(&ack, now).expect("an exercise alert").expect("applied");
    assert_eq!(ev.change, AlertChange::Acknowledged);
    assert_eq!(ev.alert_id, id);
    assert!(ev.exercise);
    // Stamped in the drill's own time frame (2020), not today's.
    assert!(ev.ts.millis() < 1_600_000_000_000, "{}", ev.ts);
    match drill.command(&ack, now) {
        Some(Err(CommandError::AlreadyAcknowledged { alert, .. })) => assert_eq!(alert, id),
        other => panic!("expected already acknowledged, got {other:?}"),
    }
    // A live alert id is not the drill's business, and the live engine does not know the
    // exercise alert.
    let live = Command { alert_id: id.trim_start_matches(EXERCISE_PREFIX).into(), ..ack.clone() };
    assert!(drill.command(&live, now).is_none());
    assert!(matches!(engine.command(&ack, now), Err(CommandError::UnknownAlert(_))));
    let unknown = Command { alert_id: format!("{EXERCISE_PREFIX}0000000000000000"), ..ack };
    assert!(matches!(drill.command(&unknown, now), Some(Err(CommandError::UnknownAlert(a))) if a == unknown.alert_id));
}
