//! What a duty officer reads: every event the engine emits names its site and sensor by their
//! registry names (Chinese first), rounds numbers to the rule's precision, and says its change
//! in words — raised, escalated, cleared, reminded, acknowledged, gone silent.

use riskwatch_core::{AlertChange, AlertEvent, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::{Action, Command, Engine, RuleSet};

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00
const MIN: i64 = 60_000;

const REGISTRY: &str = r#"
[[sites]]
id = "plant-a"
name = "Chemical plant A, tank farm"
name_zh = "A化工厂罐区"

[[sites]]
id = "bare"

[[sensors]]
id = "plant-a-lel-01"
site = "plant-a"
kind = "gas_combustible"
unit = "%LEL"
name = "LEL detector 01"
name_zh = "可燃气体探测器 LEL-01"
interval_s = 10

[[sensors]]
id = "bare-wl"
site = "bare"
kind = "water_level"
unit = "m"
"#;

const RULES: &str = r#"
[[rules]]
id = "lel"
applies_to = { kind = "gas_combustible" }
precision = 1
levels = { yellow = 20, orange = 40, red = 100 }
remind = { red = "5m" }

[[rules]]
id = "wl"
applies_to = { kind = "water_level" }
precision = 2
levels = { red = 7 }

[[quality]]
applies_to = { kind = "gas_combustible" }
stale = { intervals = 6 }
"#;

fn engine() -> Engine {
    let registry = Registry::from_toml(REGISTRY).unwrap_or_else(|e| panic!("{e}"));
    let rules = RuleSet::from_toml(RULES).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(&rules, &registry).unwrap_or_else(|e| panic!("{e}"))
}

fn reading(sensor: &str, site: &str, kind: SensorKind, unit: &str, at_min: i64, v: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        site: site.into(),
        kind,
        ts: Timestamp(T0 + at_min * MIN),
        value: Value::Scalar(v),
        unit: unit.into(),
        quality: Quality::Good,
        exercise: false,
    }
}

fn lel(at_min: i64, v: f64) -> Reading {
    reading("plant-a-lel-01", "plant-a", SensorKind::GasCombustible, "%LEL", at_min, v)
}

fn run(e: &mut Engine, r: Reading) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let now = r.ts;
    e.process(&r, now, &mut out);
    out
}

fn only(events: &[AlertEvent], change: AlertChange) -> &AlertEvent {
    let found: Vec<_> = events.iter().filter(|e| e.change == change).collect();
    assert_eq!(found.len(), 1, "one {change:?} event expected in {events:#?}");
    found[0]
}

#[test]
fn a_hazard_alert_speaks_in_names_and_rounded_numbers() {
    let mut e = engine();
    let raised = run(&mut e, lel(0, 100.04999));
    let ev = only(&raised, AlertChange::Raised);
    assert_eq!(ev.level, Level::Red);
    assert_eq!(ev.site_name, "A化工厂罐区");
    assert_eq!(ev.sensor_name, "可燃气体探测器 LEL-01");
    assert_eq!(ev.decimals, Some(1), "the rule's precision travels with the event");
    assert_eq!(ev.value_text(), "100.0 %LEL");
    assert_eq!(
        ev.message_zh,
        "【红色预警】A化工厂罐区 可燃气体探测器 LEL-01 可燃气体浓度 100.0 %LEL，达到红色预警（阈值 100.0 %LEL）"
    );
    assert_eq!(
        ev.message_en,
        "Red alert: combustible gas at LEL detector 01 (Chemical plant A, tank farm) is 100.0 %LEL, reached red (threshold 100.0 %LEL)"
    );
    for text in [&ev.message_zh, &ev.message_en] {
        assert!(!text.contains("plant-a"), "no ids where names exist: {text}");
        assert!(!text.contains(&ev.alert_id), "no internal alert id: {text}");
    }

    let down = run(&mut e, lel(1, 30.0));
    let ev = only(&down, AlertChange::DeEscalated);
    assert!(ev.message_zh.ends_with("30.0 %LEL，降为黄色预警（红色解除阈值 100.0 %LEL）"), "{}", ev.message_zh);

    let cleared = run(&mut e, lel(2, 3.0));
    let ev = only(&cleared, AlertChange::Cleared);
    assert!(ev.message_zh.starts_with("【黄色预警解除】A化工厂罐区 可燃气体探测器 LEL-01"), "{}", ev.message_zh);
    assert!(ev.message_zh.contains("解除阈值"), "{}", ev.message_zh);
    assert!(ev.message_en.starts_with("Yellow alert cleared: "), "{}", ev.message_en);
}

#[test]
fn without_names_the_ids_stand_in() {
    let mut e = engine();
    let out = run(&mut e, reading("bare-wl", "bare", SensorKind::WaterLevel, "m", 0, 7.23176));
    let ev = only(&out, AlertChange::Raised);
    assert_eq!((ev.site_name.as_str(), ev.sensor_name.as_str()), ("bare", "bare-wl"));
    assert_eq!(ev.message_zh, "【红色预警】bare bare-wl 水位 7.23 m，达到红色预警（阈值 7.00 m）");
}

#[test]
fn reminders_acknowledgements_and_silence_name_the_place_too() {
    let mut e = engine();
    let raised = run(&mut e, lel(0, 120.0));
    let id = only(&raised, AlertChange::Raised).alert_id.clone();

    // Still red six minutes on, unacknowledged: a reminder.
    let later = run(&mut e, lel(6, 120.0));
    let reminder = only(&later, AlertChange::Reminder);
    assert_eq!(reminder.site_name, "A化工厂罐区");
    assert!(
        reminder.message_zh.starts_with("【提醒】A化工厂罐区 可燃气体探测器 LEL-01 红色预警已持续 6 分钟"),
        "{}",
        reminder.message_zh
    );

    let ack = Command {
        command_id: Some("c1".into()),
        alert_id: id.clone(),
        action: Action::Acknowledge,
        by: "duty".into(),
        note: "checking on site".into(),
        unit: None,
        site: None,
        minutes: None,
    };
    let ev = e.command(&ack, Timestamp(T0 + 7 * MIN)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(ev.sensor_name, "可燃气体探测器 LEL-01");
    assert_eq!(ev.message_zh, "【红色预警】A化工厂罐区 可燃气体探测器 LEL-01：duty 已确认：checking on site");
    assert!(!ev.message_zh.contains(&id) && !ev.message_en.contains(&id), "no internal id: {ev:?}");

    // Nothing for over a minute: the sensor has gone silent.
    let mut out = Vec::new();
    e.advance(Timestamp(T0 + 9 * MIN), &mut out);
    let stale = out.iter().find(|ev| ev.rule_id.as_ref() == "dq.stale").unwrap_or_else(|| panic!("{out:#?}"));
    assert_eq!(stale.sensor_name, "可燃气体探测器 LEL-01");
    assert!(stale.message_zh.starts_with("【通信中断】A化工厂罐区 可燃气体探测器 LEL-01："), "{}", stale.message_zh);
    assert!(stale.message_zh.contains("分钟"), "a duration a person reads: {}", stale.message_zh);
}
