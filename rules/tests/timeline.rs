//! Table-driven timelines: readings (and commands, and the passing of time) in, alert events
//! out — one test per engine capability a duty officer relies on.

use riskwatch_core::{
    AlertCategory, AlertChange, AlertEvent, Displacement, Level, Quality, Reading, Registry, SensorKind, Timestamp,
    Value,
};
use riskwatch_rules::{Action, Command, CommandError, Engine, RuleSet};

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00
const MIN: i64 = 60_000;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sites]]
id = "dam-1"
[[sites]]
id = "county"

[[sensors]]
id = "wl"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "rain"
site = "hankou"
kind = "rainfall"
unit = "mm"
interval_s = 300

[[sensors]]
id = "p1"
site = "dam-1"
kind = "gnss_displacement"
unit = "mm"
tags = ["tailings"]
[[sensors]]
id = "p2"
site = "dam-1"
kind = "gnss_displacement"
unit = "mm"
tags = ["tailings"]
[[sensors]]
id = "p3"
site = "dam-1"
kind = "gnss_displacement"
unit = "mm"
tags = ["tailings"]
[[sensors]]
id = "p4"
site = "dam-1"
kind = "gnss_displacement"
unit = "mm"
tags = ["tailings"]
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
levels = { blue = "warning_level - 0.5", yellow = ["warning_level", "rate(1h) >= 0.5"], orange = "guaranteed_level", red = "record_level" }
remind = { red = "10m", orange = "30m" }

[[rules]]
id = "rainfall"
applies_to = { kind = "rainfall" }
levels = { blue = ["sum(1h) >= 35", "sum(3h) >= 55"], yellow = ["sum(1h) >= 45", "sum(3h) >= 75"], orange = ["sum(1h) >= 60", "sum(3h) >= 100"], red = ["sum(1h) >= 80", "sum(3h) >= 120"] }

[[rules]]
id = "gnss"
applies_to = { kind = "gnss_displacement" }
measure = "horizontal"
levels = { blue = 10, yellow = 20, orange = 40, red = 80 }

[[quality]]
applies_to = { kind = "water_level" }
gross_range = { fail_min = 0, fail_max = 60 }
flat_line = { tolerance = 0.0005, suspect_s = 1800, fail_s = 3600 }
stale = { intervals = 3 }

[[composites]]
id = "tailings-rollup"
members = { rules = ["gnss"], tags = ["tailings"] }
levels = { yellow = "count(>= blue) >= 4", orange = "count(>= yellow) >= 3", red = "count(>= orange) >= 2" }

[[composites]]
id = "flood-and-rain"
levels = { red = "water-level >= orange and rainfall >= yellow" }
"#;

fn engine() -> Engine {
    Engine::new(&RuleSet::from_toml(RULES).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap()
}

fn at(minute: i64) -> Timestamp {
    Timestamp(T0 + minute * MIN)
}

fn scalar(sensor: &str, site: &str, kind: SensorKind, unit: &str, minute: i64, v: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        site: site.into(),
        kind,
        ts: at(minute),
        value: Value::Scalar(v),
        unit: unit.into(),
        quality: Quality::Good,
        exercise: false,
    }
}

fn wl(minute: i64, v: f64) -> Reading {
    scalar("wl", "hankou", SensorKind::WaterLevel, "m", minute, v)
}

fn rain(minute: i64, mm: f64) -> Reading {
    scalar("rain", "hankou", SensorKind::Rainfall, "mm", minute, mm)
}

fn gnss(point: &str, minute: i64, east_mm: f64) -> Reading {
    Reading {
        sensor: point.into(),
        site: "dam-1".into(),
        kind: SensorKind::GnssDisplacement,
        ts: at(minute),
        value: Value::Displacement(Displacement { e: east_mm, n: 0.0, u: 0.0 }),
        unit: "mm".into(),
        quality: Quality::Good,
        exercise: false,
    }
}

/// Feeds readings with the processing clock equal to event time (replay-style).
fn feed(e: &mut Engine, rs: &[Reading]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for r in rs {
        e.process(r, r.ts, &mut out);
    }
    out
}

/// (rule, change, level, minute) of each event — the timeline a test asserts.
fn timeline(evs: &[AlertEvent]) -> Vec<(String, AlertChange, Level, i64)> {
    evs.iter().map(|e| (e.rule_id.to_string(), e.change, e.level, (e.ts.millis() - T0) / MIN)).collect()
}

/// The timeline of one rule's events.
fn only(evs: &[AlertEvent], rule: &str) -> Vec<(String, AlertChange, Level, i64)> {
    timeline(evs).into_iter().filter(|r| r.0 == rule).collect()
}

fn row(rule: &str, change: AlertChange, level: Level, minute: i64) -> (String, AlertChange, Level, i64) {
    (rule.to_string(), change, level, minute)
}

use AlertChange::*;
use Level::*;

#[test]
fn any_of_conditions_rate_of_rise_raises_yellow_below_the_warning_level() {
    let mut e = engine();
    // Below the warning level but rising 0.6 m/h: the rate condition raises yellow.
    let rs: Vec<Reading> = (0..8).map(|i| wl(i * 10, 26.0 + 0.1 * i as f64)).collect();
    let ev = feed(&mut e, &rs);
    let tl = timeline(&ev);
    assert_eq!(tl, vec![row("water-level", Raised, Yellow, 30)], "{ev:#?}");
    assert!(ev[0].message_en.contains("m/h"), "rate events carry a per-hour unit: {}", ev[0].message_en);
    assert!((ev[0].value - 0.6).abs() < 1e-6, "{}", ev[0].value);
}

#[test]
fn rainfall_accumulation_over_one_and_three_hours() {
    let mut e = engine();
    // 5 mm every 5 minutes = 60 mm/h: after 35 mm in the hour, blue; 45 → yellow; 60 → orange.
    let rs: Vec<Reading> = (0..12).map(|i| rain(i * 5, 5.0)).collect();
    let tl = only(&feed(&mut e, &rs), "rainfall");
    assert_eq!(
        tl,
        vec![
            row("rainfall", Raised, Blue, 30),
            row("rainfall", Escalated, Yellow, 40),
            row("rainfall", Escalated, Orange, 55)
        ]
    );
    // Light rain for two more hours keeps the 3-hour sum high after the 1-hour sum has dropped.
    let more: Vec<Reading> = (12..36).map(|i| rain(i * 5, 1.5)).collect();
    let tl = only(&feed(&mut e, &more), "rainfall");
    assert_eq!(tl.first(), Some(&row("rainfall", DeEscalated, Yellow, 60)), "{tl:?}");
    assert!(tl.iter().all(|r| r.1 != Cleared), "the 3-h sum (≥ 75 mm) keeps it yellow: {tl:?}");
}

#[test]
fn reminders_fire_once_per_interval_until_acknowledged() {
    let mut e = engine();
    let mut out = feed(&mut e, &[wl(0, 29.2)]);
    assert_eq!(timeline(&out), vec![row("water-level", Raised, Red, 0)]);
    let id = out[0].alert_id.clone();
    // Time passes without readings; the clock ticks every minute.
    out.clear();
    for m in 1..=25 {
        e.advance(at(m), &mut out);
    }
    assert_eq!(
        only(&out, "water-level"),
        vec![row("water-level", Reminder, Red, 10), row("water-level", Reminder, Red, 20)]
    );
    let ack = Command {
        command_id: Some("c1".into()),
        alert_id: id.clone(),
        action: Action::Acknowledge,
        by: "Li Wei".into(),
        note: "patrol sent".into(),
        unit: None,
        site: None,
        minutes: None,
    };
    let ev = e.command(&ack, at(26)).unwrap();
    assert_eq!((ev.change, ev.by.as_deref(), ev.note.as_deref()), (Acknowledged, Some("Li Wei"), Some("patrol sent")));
    out.clear();
    for m in 27..=60 {
        e.advance(at(m), &mut out);
    }
    assert!(only(&out, "water-level").is_empty(), "no reminder after acknowledgement: {:?}", timeline(&out));
    assert_eq!(
        e.command(&ack, at(61)).unwrap_err(),
        CommandError::AlreadyAcknowledged { alert: id, by: "Li Wei".into() }
    );
}

#[test]
fn commands_close_the_loop_and_invalid_ones_are_refused_with_reasons() {
    let mut e = engine();
    let ev = feed(&mut e, &[wl(0, 28.6)]);
    let id = ev[0].alert_id.clone();
    let cmd = |action, note: &str, unit: Option<&str>| Command {
        command_id: None,
        alert_id: id.clone(),
        action,
        by: "Wang Fang".into(),
        note: note.into(),
        unit: unit.map(str::to_string),
        site: None,
        minutes: None,
    };
    let unknown = Command { alert_id: "0000000000000000".into(), ..cmd(Action::Acknowledge, "", None) };
    assert_eq!(e.command(&unknown, at(1)).unwrap_err().code(), "unknown_alert");
    assert_eq!(e.command(&cmd(Action::Assign, "", None), at(1)).unwrap_err().code(), "missing_unit");
    let assigned =
        e.command(&cmd(Action::Assign, "dike patrol", Some("Jiang'an district flood office")), at(2)).unwrap();
    assert_eq!(assigned.assignee.as_deref(), Some("Jiang'an district flood office"));
    let err = e.command(&cmd(Action::Resolve, "done", None), at(3)).unwrap_err();
    assert_eq!(err.code(), "wrong_state", "cannot resolve while the water is still high: {err}");
    let ev = feed(&mut e, &[wl(5, 26.0)]);
    assert_eq!(timeline(&ev), vec![row("water-level", Cleared, Orange, 5)]);
    assert_eq!(e.command(&cmd(Action::Resolve, " ", None), at(6)).unwrap_err().code(), "missing_note");
    let done = e.command(&cmd(Action::Resolve, "sandbags placed, seepage stopped", None), at(7)).unwrap();
    assert_eq!((done.change, done.seq), (Resolved, 3));
    assert_eq!(e.command(&cmd(Action::Acknowledge, "", None), at(8)).unwrap_err().code(), "unknown_alert");
}

#[test]
fn a_stuck_sensor_raises_a_data_quality_alert_and_never_a_hazard() {
    let mut e = engine();
    // The gauge freezes at 27.50 (above warning) for 70 minutes, then moves again.
    let mut rs: Vec<Reading> = (0..=14).map(|i| wl(i * 5, 27.50)).collect();
    rs.extend((15..20).map(|i| wl(i * 5, 27.50 + 0.01 * (i - 14) as f64)));
    let ev = feed(&mut e, &rs);
    let dq: Vec<_> = ev.iter().filter(|e| e.category == AlertCategory::DataQuality).collect();
    assert_eq!(dq.len(), 2, "{:?}", timeline(&ev));
    assert_eq!((dq[0].rule_id.as_ref(), dq[0].change, (dq[0].ts.millis() - T0) / MIN), ("dq.flat_line", Raised, 60));
    assert_eq!((dq[1].change, (dq[1].ts.millis() - T0) / MIN), (Cleared, 85), "clears after 3 good readings");
    // The hazard alert was raised by the first (good) readings and is not cleared by failed ones.
    let hazard: Vec<_> =
        ev.iter().filter(|e| e.category == AlertCategory::Hazard).map(|e| (e.change, e.level)).collect();
    assert_eq!(hazard, vec![(Raised, Yellow)]);
}

#[test]
fn a_silent_sensor_raises_a_stale_alert_cleared_when_data_returns() {
    let mut e = engine();
    let mut out = feed(&mut e, &[wl(0, 25.0)]);
    for m in 1..=20 {
        e.advance(at(m), &mut out);
    }
    // 3 × the 5-minute interval = 15 minutes of silence.
    assert_eq!(timeline(&out), vec![row("dq.stale", Raised, Blue, 16)]);
    let back = feed(&mut e, &[wl(21, 25.0)]);
    assert_eq!(timeline(&back), vec![row("dq.stale", Cleared, Blue, 21)]);
}

#[test]
fn out_of_range_readings_raise_data_quality_not_flood_alerts() {
    let mut e = engine();
    let ev = feed(&mut e, &[wl(0, 99.0), wl(5, 99.0)]);
    assert_eq!(timeline(&ev), vec![row("dq.gross_range", Raised, Blue, 0)]);
    assert_eq!(e.stats().bad_quality, 2);
}

#[test]
fn tailings_rollup_k_of_n() {
    let mut e = engine();
    // Points reach blue one by one: the fourth makes the dam yellow.
    let ev = feed(&mut e, &[gnss("p1", 0, 12.0), gnss("p2", 1, 12.0), gnss("p3", 2, 12.0)]);
    assert!(ev.iter().all(|x| x.category == AlertCategory::Hazard), "{:?}", timeline(&ev));
    let ev = feed(&mut e, &[gnss("p4", 3, 12.0)]);
    let site: Vec<_> = ev.iter().filter(|x| x.category == AlertCategory::Composite).collect();
    assert_eq!(site.len(), 1);
    assert_eq!(
        (site[0].rule_id.as_ref(), site[0].subject.as_str(), site[0].level),
        ("tailings-rollup", "dam-1", Yellow)
    );
    // Three yellow points ⇒ orange; two orange ⇒ red.
    let ev = feed(&mut e, &[gnss("p1", 4, 25.0), gnss("p2", 5, 25.0), gnss("p3", 6, 25.0)]);
    let lv: Vec<Level> = ev.iter().filter(|x| x.category == AlertCategory::Composite).map(|x| x.level).collect();
    assert_eq!(lv, vec![Orange]);
    let ev = feed(&mut e, &[gnss("p1", 7, 45.0), gnss("p2", 8, 45.0)]);
    let lv: Vec<Level> = ev.iter().filter(|x| x.category == AlertCategory::Composite).map(|x| x.level).collect();
    assert_eq!(lv, vec![Red]);
}

#[test]
fn and_across_kinds() {
    let mut e = engine();
    // Water at orange alone: no composite.
    let ev = feed(&mut e, &[wl(0, 28.6)]);
    assert!(ev.iter().all(|x| x.category != AlertCategory::Composite));
    // 45 mm of rain in an hour (yellow) while the river is orange ⇒ red for the site.
    let rs: Vec<Reading> = (1..=9).map(|i| rain(i * 5, 5.0)).collect();
    let ev = feed(&mut e, &rs);
    let site: Vec<_> = ev.iter().filter(|x| x.category == AlertCategory::Composite).collect();
    assert_eq!(site.len(), 1, "{:?}", timeline(&ev));
    assert_eq!((site[0].rule_id.as_ref(), site[0].level), ("flood-and-rain", Red));
}

/// A realistic mixed stream: flood wave, rain, moving GNSS points, a stuck spell, silence.
fn mixed_stream() -> Vec<Reading> {
    let mut rs = Vec::new();
    for i in 0..300 {
        let m = i * 5;
        let level = 26.0 + 3.2 * (-(((m as f64) - 700.0) / 300.0).powi(2)).exp();
        if !(400..460).contains(&m) {
            rs.push(wl(m, if (200..300).contains(&m) { 27.4 } else { level }));
        }
        rs.push(rain(m, if (600..700).contains(&m) { 6.0 } else { 0.2 }));
        for (k, p) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
            rs.push(gnss(p, m, (m as f64 / 15.0) * (1.0 + k as f64 * 0.2)));
        }
    }
    rs.sort_by_key(|r| r.ts);
    rs
}

#[test]
fn snapshot_and_restore_mid_stream_gives_exactly_the_uninterrupted_events() {
    let rs = mixed_stream();
    let mut reference = engine();
    let mut want = Vec::new();
    let mut ack_done = false;
    let run = |e: &mut Engine, r: &Reading, out: &mut Vec<AlertEvent>, ack_done: &mut bool| {
        e.process(r, r.ts, out);
        // Acknowledge the first red alert one hour after it appears, in both runs.
        if !*ack_done {
            if let Some(red) =
                out.iter().find(|x| x.level == Red && x.change == Raised && r.ts.millis() - x.ts.millis() >= 60 * MIN)
            {
                let cmd = Command {
                    command_id: None,
                    alert_id: red.alert_id.clone(),
                    action: Action::Acknowledge,
                    by: "duty".into(),
                    note: String::new(),
                    unit: None,
                    site: None,
                    minutes: None,
                };
                out.push(e.command(&cmd, r.ts).unwrap());
                *ack_done = true;
            }
        }
    };
    for r in &rs {
        run(&mut reference, r, &mut want, &mut ack_done);
    }
    assert!(want.len() > 20, "the stream exercises the engine: {} events", want.len());
    assert!(want.iter().any(|e| e.change == Reminder), "reminders are part of the stream");
    assert!(want.iter().any(|e| e.category == AlertCategory::DataQuality));
    assert!(want.iter().any(|e| e.category == AlertCategory::Composite));

    for cut in [1, rs.len() / 3, rs.len() / 2, rs.len() - 7] {
        let mut first = engine();
        let mut got = Vec::new();
        let mut ack = false;
        for r in &rs[..cut] {
            run(&mut first, r, &mut got, &mut ack);
        }
        let json = serde_json::to_string(&first.snapshot()).unwrap();
        drop(first);
        let mut second = engine();
        let mut restore_events = Vec::new();
        second.restore(serde_json::from_str(&json).unwrap(), rs[cut - 1].ts, &mut restore_events).unwrap();
        assert!(restore_events.is_empty(), "same rules: restoring emits nothing");
        for r in &rs[cut..] {
            run(&mut second, r, &mut got, &mut ack);
        }
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            first_diff.is_none() && got.len() == want.len(),
            "cut after {cut} readings: {} vs {} events, first difference at {first_diff:?}: {:#?}",
            got.len(),
            want.len(),
            first_diff.map(|i| (&got[i], &want[i]))
        );
    }
}

#[test]
fn hot_reload_keeps_active_alerts_and_clears_those_of_removed_rules() {
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let mut e = engine();
    let ev = feed(&mut e, &[wl(0, 28.6), gnss("p1", 0, 30.0)]);
    let water_id = ev.iter().find(|x| x.rule_id.as_ref() == "water-level").unwrap().alert_id.clone();
    // New file: the water rule's orange threshold moves up, the GNSS rule is gone.
    let edited = RULES.replace("orange = \"guaranteed_level\"", "orange = \"guaranteed_level + 0.2\"");
    let start = edited.find("[[rules]]\nid = \"gnss\"").unwrap();
    let end = edited[start..].find("[[quality]]").unwrap() + start;
    let edited = format!("{}{}", &edited[..start], &edited[end..]).replace("[[composites]]\nid = \"tailings-rollup\"\nmembers = { rules = [\"gnss\"], tags = [\"tailings\"] }\nlevels = { yellow = \"count(>= blue) >= 4\", orange = \"count(>= yellow) >= 3\", red = \"count(>= orange) >= 2\" }\n", "");
    let mut out = Vec::new();
    e.reload(&RuleSet::from_toml(&edited).unwrap(), &registry, at(1), &mut out).unwrap();
    assert_eq!(
        timeline(&out),
        vec![row("gnss", Cleared, Yellow, 1)],
        "the removed rule's alert is cleared, with a reason"
    );
    assert!(out[0].message_en.contains("removed"));
    // The water alert lives on with its id; the next reading is judged by the new threshold.
    let ev = feed(&mut e, &[wl(5, 28.6)]);
    assert_eq!(timeline(&ev), vec![row("water-level", DeEscalated, Yellow, 5)]);
    assert_eq!(ev[0].alert_id, water_id);
    // A broken file leaves the engine as it was.
    assert!(e
        .reload(
            &RuleSet::from_toml(RULES.replace("warning_level", "warn_level").as_str()).unwrap(),
            &registry,
            at(6),
            &mut out
        )
        .is_err());
}
