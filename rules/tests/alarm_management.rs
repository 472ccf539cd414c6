//! Alarm management as control rooms practise it (ISA-18.2 / EEMUA 191), as timelines through
//! the rules host on a virtual clock: shelving, and out-of-service windows. Every timeline is
//! also cut at every input, saved, restored and finished, and must give the very same events.

use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level, Quality, Timestamp};
use riskwatch_rules::{Input, Outcome, RulesHost};

#[path = "support/timeline.rs"]
mod timeline_kit;
use timeline_kit::{run, Kit, MIN};

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sites]]
id = "wuchang"
[[sites]]
id = "dam"

[[sensors]]
id = "wl"
site = "hankou"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "wl-w"
site = "wuchang"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "d1"
site = "dam"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "d2"
site = "dam"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
levels = { blue = "warning_level - 0.5", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
remind = { red = "10m", orange = "30m" }

[[composites]]
id = "dam-incident"
sites = ["dam"]
members = { rules = ["water-level"] }
levels = { orange = "count(>= yellow) >= 2" }
group_members = true
"#;

const KIT: Kit = Kit { t0: T0, registry: REGISTRY, rules: RULES };

fn at(minute: i64) -> Timestamp {
    KIT.at(minute)
}

fn host() -> RulesHost {
    KIT.host()
}

fn reading(sensor: &str, minute: i64, v: f64) -> Input {
    KIT.reading(sensor, minute, v)
}

fn command(minute: i64, json: serde_json::Value) -> Input {
    KIT.command(minute, json)
}

fn ticks(from: i64, to: i64) -> Vec<Input> {
    KIT.ticks(from, to)
}

/// The refusal code of a command.
fn refused(host: &mut RulesHost, minute: i64, json: serde_json::Value) -> &'static str {
    match host.apply(&mut command(minute, json), &mut Vec::new()) {
        Outcome::Refused(r) => r.code,
        other => panic!("applied: {other:?}"),
    }
}

/// (rule, change, level, minute, shelved) of each event.
type Row = (String, AlertChange, Level, i64, bool);

fn timeline(evs: &[AlertEvent]) -> Vec<Row> {
    evs.iter()
        .map(|e| (e.rule_id.to_string(), e.change, e.level, (e.ts.millis() - T0) / MIN, e.shelved_until.is_some()))
        .collect()
}

fn row(rule: &str, change: AlertChange, level: Level, minute: i64, shelved: bool) -> Row {
    (rule.to_string(), change, level, minute, shelved)
}

fn survives_every_cut(inputs: &[Input]) -> Vec<AlertEvent> {
    KIT.survives_every_cut(inputs)
}

use AlertChange::*;
use Level::*;

const WL: &str = "water-level";

#[test]
fn a_shelved_alert_sends_nothing_until_its_time_is_up_then_comes_back() {
    let mut h = host();
    let raised = run(&mut h, &[reading("wl", 0, 29.2)]);
    let id = raised[0].alert_id.clone();
    let shelve = |minutes: Option<u32>, note: &str| serde_json::json!({"alert_id": id, "action": "shelve", "by": "Li Wei", "note": note, "minutes": minutes, "command_id": "c-7"});
    // Refusals first: each names what is wrong.
    assert_eq!(refused(&mut h, 1, shelve(Some(30), " ")), "missing_reason");
    assert_eq!(refused(&mut h, 1, shelve(None, "gauge being replaced")), "bad_duration");
    assert_eq!(refused(&mut h, 1, shelve(Some(0), "gauge being replaced")), "bad_duration");
    assert_eq!(refused(&mut h, 1, shelve(Some(721), "gauge being replaced")), "bad_duration");
    assert_eq!(
        refused(&mut h, 1, serde_json::json!({"alert_id": id, "action": "unshelve", "by": "Li Wei"})),
        "not_shelved"
    );

    let mut inputs = vec![reading("wl", 0, 29.2), command(2, shelve(Some(30), "gauge being replaced"))];
    inputs.extend(ticks(3, 19));
    inputs.push(reading("wl", 20, 28.7)); // lowered to orange while shelved
    inputs.extend(ticks(21, 70));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WL, Raised, Red, 0, false),
            row(WL, Shelved, Red, 2, true),
            row(WL, DeEscalated, Orange, 20, true),
            row(WL, Unshelved, Orange, 32, false),
            row(WL, Reminder, Orange, 62, false),
        ],
        "no reminder while shelved (red would remind every 10 min); back at minute 32, reminders one interval on"
    );
    let shelved = &evs[1];
    assert_eq!((shelved.by.as_deref(), shelved.note.as_deref()), (Some("Li Wei"), Some("gauge being replaced")));
    assert_eq!(shelved.command_id.as_deref(), Some("c-7"));
    assert_eq!(shelved.shelved_until, Some(at(32)));
    assert_eq!(shelved.alert_id, id, "shelving is an event of the alert itself");
    assert!(shelved.message_en.contains("shelved by Li Wei until"), "{}", shelved.message_en);
    assert!(evs[3].by.is_none() && evs[3].message_en.contains("time is up"), "{}", evs[3].message_en);
}

#[test]
fn a_shelved_alert_that_escalates_comes_back_at_once() {
    let mut inputs = vec![
        reading("wl", 0, 28.6),
        command(
            1,
            serde_json::json!({"alert_id": "?", "action": "shelve", "by": "Li Wei", "note": "known fault", "minutes": 120}),
        ),
    ];
    inputs.extend(ticks(2, 4));
    inputs.push(reading("wl", 5, 29.2));
    inputs.extend(ticks(6, 16));
    // The alert id, known once raised.
    let id = run(&mut host(), &inputs[..1])[0].alert_id.clone();
    inputs[1] = command(
        1,
        serde_json::json!({"alert_id": id, "action": "shelve", "by": "Li Wei", "note": "known fault", "minutes": 120}),
    );
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WL, Raised, Orange, 0, false),
            row(WL, Shelved, Orange, 1, true),
            row(WL, Escalated, Red, 5, false),
            row(WL, Reminder, Red, 15, false),
        ],
        "the escalation is notified as any other, and red reminders run from it"
    );
    // Unshelving by hand: refused now, it is no longer shelved.
    let mut h = host();
    run(&mut h, &inputs);
    assert_eq!(
        refused(&mut h, 17, serde_json::json!({"alert_id": id, "action": "unshelve", "by": "Li Wei"})),
        "not_shelved"
    );
}

#[test]
fn an_officer_may_unshelve_early_and_a_shelved_alert_clears_and_resolves_normally() {
    let mut h = host();
    let id = run(&mut h, &[reading("wl", 0, 29.2)])[0].alert_id.clone();
    let evs = run(
        &mut h,
        &[
            command(
                1,
                serde_json::json!({"alert_id": id, "action": "shelve", "by": "Li", "note": "pump test", "minutes": 60}),
            ),
            reading("wl", 10, 26.0),
            command(11, serde_json::json!({"alert_id": id, "action": "unshelve", "by": "Wang", "note": "test over"})),
            command(
                12,
                serde_json::json!({"alert_id": id, "action": "resolve", "by": "Wang", "note": "pump test finished"}),
            ),
        ],
    );
    assert_eq!(
        timeline(&evs),
        vec![
            row(WL, Shelved, Red, 1, true),
            row(WL, Cleared, Red, 10, true),
            row(WL, Unshelved, Red, 11, false),
            row(WL, Resolved, Red, 12, false),
        ]
    );
    assert_eq!(evs[2].by.as_deref(), Some("Wang"));
}

#[test]
fn an_out_of_service_sensor_crossing_red_raises_no_hazard_alert_only_a_data_quality_note() {
    let window = |minute, action: &str| {
        command(
            minute,
            serde_json::json!({"action": action, "sensor": "wl", "site": "hankou", "minutes": 60, "by": "Li", "note": "calibration"}),
        )
    };
    let close = command(40, serde_json::json!({"action": "return_to_service", "sensor": "wl", "by": "Li"}));
    let mut inputs = vec![window(0, "out_of_service"), reading("wl", 5, 29.2), reading("wl-w", 5, 29.2)];
    inputs.extend(ticks(6, 39));
    inputs.push(close);
    inputs.extend(ticks(41, 44));
    let evs = survives_every_cut(&inputs);
    let tl: Vec<(String, AlertChange, Level, i64, String)> = evs
        .iter()
        .map(|e| (e.rule_id.to_string(), e.change, e.level, (e.ts.millis() - T0) / MIN, e.subject.to_string()))
        .collect();
    let r = |rule: &str, c, l, m, s: &str| (rule.to_string(), c, l, m, s.to_string());
    assert_eq!(
        tl,
        vec![
            r("oos.window", Raised, Blue, 0, "wl"),
            r("dq.out_of_service", Raised, Blue, 5, "wl"),
            r(WL, Raised, Red, 5, "wl-w"),
            r(WL, Reminder, Red, 15, "wl-w"),
            r(WL, Reminder, Red, 25, "wl-w"),
            r(WL, Reminder, Red, 35, "wl-w"),
            r("oos.window", Cleared, Blue, 40, "wl"),
            r(WL, Raised, Red, 40, "wl"),
            r("dq.out_of_service", Cleared, Blue, 40, "wl"),
        ],
        "the covered sensor's red is withheld (a note instead) until it is back in service; the other sensor is not covered"
    );
    assert_eq!(evs[0].category, AlertCategory::DataQuality);
    assert_eq!((evs[0].by.as_deref(), evs[0].note.as_deref()), (Some("Li"), Some("calibration")));
    assert!(evs[1].message_en.contains("would raise a red alert"), "{}", evs[1].message_en);
    // Evaluated and stored: the reading keeps its (good) quality flag for the store.
    let mut h = host();
    run(&mut h, &inputs[..1]);
    let mut r = reading("wl", 5, 29.2);
    h.apply(&mut r, &mut Vec::new());
    let Input::Readings { readings, .. } = r else { unreachable!() };
    assert_eq!(readings[0].quality, Quality::Good);
    // The same by site, and by rule.
    for target in [serde_json::json!({"site": "hankou"}), serde_json::json!({"rule": WL, "site": "hankou"})] {
        let mut cmd =
            serde_json::json!({"action": "out_of_service", "minutes": 60, "by": "Li", "note": "dam maintenance"});
        cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
        let evs = run(&mut host(), &[command(0, cmd), reading("wl", 5, 29.2)]);
        let rules: Vec<&str> = evs.iter().map(|e| &*e.rule_id).collect();
        assert_eq!(rules, ["oos.window", "dq.out_of_service"], "{target}");
    }
}

#[test]
fn a_window_still_open_after_its_end_is_itself_an_alert() {
    let mut h = host();
    let open = serde_json::json!({"action": "out_of_service", "site": "wuchang", "minutes": 30, "by": "Li", "note": "sluice maintenance"});
    assert_eq!(
        refused(
            &mut h,
            0,
            serde_json::json!({"action": "out_of_service", "site": "nowhere", "minutes": 30, "by": "Li", "note": "x"})
        ),
        "unknown_target"
    );
    assert_eq!(
        refused(&mut h, 0, serde_json::json!({"action": "out_of_service", "site": "wuchang", "by": "Li", "note": "x"})),
        "bad_window"
    );
    assert_eq!(
        refused(
            &mut h,
            0,
            serde_json::json!({"action": "out_of_service", "site": "wuchang", "minutes": 5, "by": "Li"})
        ),
        "missing_reason"
    );
    assert_eq!(
        refused(&mut h, 0, serde_json::json!({"action": "out_of_service", "minutes": 5, "by": "Li", "note": "x"})),
        "bad_target"
    );
    assert_eq!(
        refused(&mut h, 0, serde_json::json!({"action": "return_to_service", "site": "wuchang", "by": "Li"})),
        "not_out_of_service"
    );
    let mut inputs = vec![command(0, open.clone())];
    inputs.extend(ticks(1, 50));
    inputs.push(command(
        51,
        serde_json::json!({"action": "return_to_service", "site": "wuchang", "by": "Wang", "note": "done"}),
    ));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row("oos.window", Raised, Blue, 0, false),
            row("oos.window", Escalated, Yellow, 30, false),
            row("oos.window", Cleared, Yellow, 51, false),
        ]
    );
    assert!(evs[1].message_en.contains("overrun"), "{}", evs[1].message_en);
    let mut h = host();
    run(&mut h, &inputs[..1]);
    assert_eq!(refused(&mut h, 1, open), "already_out_of_service");
}

#[test]
fn an_active_incident_groups_its_members_lower_alerts_under_it() {
    let mut inputs = vec![
        reading("d1", 0, 27.5),
        reading("d2", 1, 27.5),
        reading("d1", 2, 28.6),
        reading("d1", 3, 29.2),
        reading("d1", 4, 26.0),
        reading("d1", 5, 27.5),
    ];
    inputs.extend(ticks(6, 8));
    let evs = survives_every_cut(&inputs);
    // The incidents (site alerts), in order: grouping names one of them.
    let incidents: Vec<String> = evs
        .iter()
        .filter(|e| e.rule_id.as_ref() == "dam-incident" && e.change == Raised)
        .map(|e| e.alert_id.clone())
        .collect();
    let tl: Vec<(String, AlertChange, Level, i64, Option<usize>)> = evs
        .iter()
        .map(|e| {
            let who = if e.rule_id.as_ref() == WL { e.subject.to_string() } else { e.rule_id.to_string() };
            let grouped =
                e.grouped_under.as_ref().map(|g| 1 + incidents.iter().position(|i| i == g).expect("an incident"));
            (who, e.change, e.level, (e.ts.millis() - T0) / MIN, grouped)
        })
        .collect();
    let r = |w: &str, c, l, m, g| (w.to_string(), c, l, m, g);
    assert_eq!(
        tl,
        vec![
            r("d1", Raised, Yellow, 0, None),
            r("d2", Raised, Yellow, 1, Some(1)),
            r("dam-incident", Raised, Orange, 1, None),
            r("d1", Escalated, Orange, 2, Some(1)),
            r("d1", Escalated, Red, 3, None),
            r("d1", Cleared, Red, 4, None),
            r("dam-incident", Cleared, Orange, 4, None),
            r("d1", Raised, Yellow, 5, Some(2)),
            r("dam-incident", Raised, Orange, 5, None),
        ],
        "members at or below the incident's level are grouped under it; above it, or once it cleared, on their own"
    );
    let grouped: Vec<String> = serde_json::from_value(evs[2].details.as_ref().unwrap()["grouped"].clone())
        .expect("the incident lists its grouped alerts");
    assert_eq!(grouped, vec![evs[0].alert_id.clone(), evs[1].alert_id.clone()]);
    assert!(evs[2].details.as_ref().unwrap()["members"].as_array().is_some_and(|m| m.len() == 2), "members listed");
}
