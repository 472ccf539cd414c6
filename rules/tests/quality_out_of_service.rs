//! Data-quality tests and out-of-service windows (ISA-18.2 / IEC 62682: an alarm out of service
//! is not annunciated while maintenance is under way), as timelines through the rules host on a
//! virtual clock: a gauge off its pole for calibration spikes and stands still without a
//! `dq.spike` or `dq.flat_line` alert — its readings still get their flags — and on its return
//! each test's alert is brought in line with what the test finds then. Every timeline is also
//! cut at every input, saved as JSON, restored and finished, and must give the very same events.

use riskwatch_core::{AlertChange, AlertEvent, Level, Quality};
use riskwatch_rules::{Input, Outcome, RulesHost};

#[path = "support/timeline.rs"]
mod timeline_kit;
use timeline_kit::{run, Kit, MIN};

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00

const REGISTRY: &str = timeline_kit::THREE_GAUGES;

/// A spike of 2 m fails; a value unchanged for 30 minutes (3 readings at least) fails; an
/// alert clears after 2 passing readings.
const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[quality]]
applies_to = { kind = "water_level" }
spike = { suspect = 1.0, fail = 2.0 }
flat_line = { fail_s = 1800 }
level = "yellow"
clear_after = 2
"#;

const SPIKE: &str = "dq.spike";
const FLAT: &str = "dq.flat_line";
const WINDOW: &str = "oos.window";

const KIT: Kit = Kit { t0: T0, registry: REGISTRY, rules: RULES };

fn host() -> RulesHost {
    KIT.host()
}

fn reading(sensor: &str, minute: i64, v: f64) -> Input {
    KIT.reading(sensor, minute, v)
}

/// Readings of `sensor` every 5 minutes from `from` to `to` (both included), each a centimetre
/// above the last from `v`: a gauge that moves (no flat line) and does not jump (no spike).
fn moving(sensor: &str, from: i64, to: i64, v: f64) -> Vec<Input> {
    (0..=(to - from) / 5).map(|k| reading(sensor, from + 5 * k, v + 0.01 * k as f64)).collect()
}

/// Readings of `sensor` every 5 minutes from `from` to `to`, all `v`: a gauge standing still.
fn still(sensor: &str, from: i64, to: i64, v: f64) -> Vec<Input> {
    (0..=(to - from) / 5).map(|k| reading(sensor, from + 5 * k, v)).collect()
}

fn command(minute: i64, json: serde_json::Value) -> Input {
    KIT.command(minute, json)
}

/// Opens a window on `target` (`{"sensor": …}`, `{"site": …}`, `{"rule": …}`) for two hours.
fn out_of_service(minute: i64, target: serde_json::Value) -> Input {
    let mut cmd =
        serde_json::json!({"action": "out_of_service", "minutes": 120, "by": "Li Wei", "note": "gauge calibration"});
    cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    command(minute, cmd)
}

fn back_in_service(minute: i64, target: serde_json::Value) -> Input {
    let mut cmd = serde_json::json!({"action": "return_to_service", "by": "Li Wei", "note": "calibrated"});
    cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    command(minute, cmd)
}

fn survives_every_cut(inputs: &[Input]) -> Vec<AlertEvent> {
    KIT.survives_every_cut(inputs)
}

/// (rule, change, level, minute, subject) of each event.
type Row = (String, AlertChange, Level, i64, String);

fn timeline(evs: &[AlertEvent]) -> Vec<Row> {
    evs.iter()
        .map(|e| (e.rule_id.to_string(), e.change, e.level, (e.ts.millis() - T0) / MIN, e.subject.to_string()))
        .collect()
}

fn row(rule: &str, change: AlertChange, level: Level, minute: i64, subject: &str) -> Row {
    (rule.to_string(), change, level, minute, subject.to_string())
}

/// The inputs without the window commands: what happens with nothing out of service.
fn without_windows(inputs: &[Input]) -> Vec<Input> {
    inputs.iter().filter(|i| !matches!(i, Input::Command { .. })).cloned().collect()
}

/// The flag each reading of `sensor` gets, by minute, applying `inputs` to a fresh host.
fn flags(inputs: &[Input], sensor: &str) -> Vec<(i64, Quality)> {
    let mut h = host();
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for input in inputs {
        let mut input = input.clone();
        assert!(matches!(h.apply(&mut input, &mut out), Outcome::Applied));
        if let Input::Readings { readings, .. } = &input {
            for r in readings.iter().filter(|r| r.sensor.as_str() == sensor) {
                flags.push(((r.ts.millis() - T0) / MIN, r.quality));
            }
        }
    }
    flags
}

use AlertChange::*;
use Level::*;

/// The calibration: the gauge is taken off its pole at minute 12, jumps 5 m at minute 15 (a
/// spike), then reads a steady 20.05 m on the bench from minute 30 to 70 (a flat line); both
/// conditions have passed again before the return at minute 90.
fn calibration(target: &serde_json::Value) -> Vec<Input> {
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.push(out_of_service(12, target.clone()));
    inputs.push(reading("wl", 15, 25.0));
    inputs.extend(moving("wl", 20, 25, 20.03));
    inputs.extend(still("wl", 30, 70, 20.05));
    inputs.extend(moving("wl", 75, 85, 20.06));
    inputs.push(back_in_service(90, target.clone()));
    inputs.extend(moving("wl", 95, 100, 20.09));
    inputs
}

#[test]
fn a_spike_and_a_flat_line_during_a_window_raise_nothing_and_the_readings_keep_their_flags() {
    for target in [serde_json::json!({"sensor": "wl", "site": "hankou"}), serde_json::json!({"site": "hankou"})] {
        let inputs = calibration(&target);
        let subject = target.get("sensor").unwrap_or(&target["site"]).as_str().unwrap().to_string();
        let evs = survives_every_cut(&inputs);
        assert_eq!(
            timeline(&evs),
            vec![row(WINDOW, Raised, Blue, 12, &subject), row(WINDOW, Cleared, Blue, 90, &subject)],
            "{target}: no data-quality alert, no note: the spike and the flat line are what the calibration causes"
        );
        // Without the window, the same readings raise and clear both alerts.
        assert_eq!(
            timeline(&run(&mut host(), &without_windows(&inputs))),
            vec![
                row(SPIKE, Raised, Yellow, 15, "wl"),
                row(SPIKE, Cleared, Yellow, 25, "wl"),
                row(FLAT, Raised, Yellow, 60, "wl"),
                row(FLAT, Cleared, Yellow, 80, "wl"),
            ]
        );
        // The readings are flagged (and stored with the flags) exactly as without the window.
        let flagged = flags(&inputs, "wl");
        assert_eq!(flagged, flags(&without_windows(&inputs), "wl"));
        let failed: Vec<i64> = flagged.iter().filter(|(_, q)| *q == Quality::Fail).map(|(m, _)| *m).collect();
        assert_eq!(failed, [15, 60, 65, 70], "the spike, and the flat line once it held 30 minutes");
    }
}

#[test]
fn on_return_a_test_that_still_flags_the_data_raises_its_alert_then_and_clears_as_usual() {
    // Still on the bench at the return: the flat line is raised at the return, with the
    // stuck value, and clears after two readings that move again.
    let wl = serde_json::json!({"sensor": "wl", "site": "hankou"});
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.push(out_of_service(12, wl.clone()));
    inputs.extend(still("wl", 15, 65, 20.05));
    inputs.push(back_in_service(67, wl.clone()));
    inputs.extend(still("wl", 70, 70, 20.05));
    inputs.extend(moving("wl", 75, 80, 20.06));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 12, "wl"),
            row(WINDOW, Cleared, Blue, 67, "wl"),
            row(FLAT, Raised, Yellow, 67, "wl"),
            row(FLAT, Cleared, Yellow, 80, "wl"),
        ]
    );
    let raised = &evs[2];
    assert_eq!(raised.value, 20.05);
    assert!(raised.message_en.contains("has stayed within") && raised.message_en.ends_with("(back in service)"));
    assert!(raised.message_zh.ends_with("（恢复运行）"), "{}", raised.message_zh);
    assert_eq!(evs[3].alert_id, raised.alert_id);
    assert!(!evs[3].message_en.contains("back in service"), "an ordinary clear: {}", evs[3].message_en);

    // A spike in the last reading before the return: raised at the return with the spike's value.
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.push(out_of_service(12, wl.clone()));
    inputs.push(reading("wl", 15, 26.0));
    inputs.push(back_in_service(17, wl));
    inputs.extend(moving("wl", 20, 25, 20.03));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 12, "wl"),
            row(WINDOW, Cleared, Blue, 17, "wl"),
            row(SPIKE, Raised, Yellow, 17, "wl"),
            row(SPIKE, Cleared, Yellow, 25, "wl"),
        ]
    );
    assert_eq!(evs[2].value, 26.0);
}

#[test]
fn a_data_quality_alert_open_when_the_window_opens_stays_until_the_return_then_follows_the_test() {
    let wl = serde_json::json!({"sensor": "wl", "site": "hankou"});
    // A spike raises dq.spike at minute 15; the window opens at 17; the readings pass again
    // from 20 (the test's ladder clears at 25) but the alert stays until the return at 40.
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.push(reading("wl", 15, 25.0));
    inputs.push(out_of_service(17, wl.clone()));
    inputs.extend(moving("wl", 20, 35, 20.03));
    inputs.push(back_in_service(40, wl.clone()));
    inputs.extend(moving("wl", 45, 50, 20.07));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(SPIKE, Raised, Yellow, 15, "wl"),
            row(WINDOW, Raised, Blue, 17, "wl"),
            row(WINDOW, Cleared, Blue, 40, "wl"),
            row(SPIKE, Cleared, Yellow, 40, "wl"),
        ],
        "left as it was throughout the window, cleared on the return: the test passed meanwhile"
    );
    assert_eq!(evs[3].alert_id, evs[0].alert_id);
    assert!(
        evs[3].message_en.starts_with("Data quality recovered") && evs[3].message_en.ends_with("(back in service)")
    );
    assert!((evs[3].value - 20.06).abs() < 1e-9, "the last good reading: {}", evs[3].value);

    // A flat line open when the window opens and still there at the return: nothing changes
    // at the return; it clears as usual once the gauge moves again.
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.extend(still("wl", 15, 45, 20.05));
    inputs.push(out_of_service(47, wl.clone()));
    inputs.extend(still("wl", 50, 60, 20.05));
    inputs.push(back_in_service(62, wl));
    inputs.extend(moving("wl", 65, 70, 20.06));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(FLAT, Raised, Yellow, 45, "wl"),
            row(WINDOW, Raised, Blue, 47, "wl"),
            row(WINDOW, Cleared, Blue, 62, "wl"),
            row(FLAT, Cleared, Yellow, 70, "wl"),
        ]
    );
}

#[test]
fn a_window_on_another_sensor_or_site_or_another_test_does_not_silence_this_one() {
    // Windows on wl-2, on the dam, and on the flat-line test at hankou: wl's spike is raised.
    for target in [
        serde_json::json!({"sensor": "wl-2", "site": "hankou"}),
        serde_json::json!({"site": "dam"}),
        serde_json::json!({"rule": FLAT, "site": "hankou"}),
        serde_json::json!({"rule": SPIKE, "site": "dam"}),
    ] {
        let mut inputs = moving("wl", 0, 10, 20.0);
        inputs.push(out_of_service(12, target.clone()));
        inputs.push(reading("wl", 15, 25.0));
        inputs.extend(moving("wl", 20, 25, 20.03));
        let evs: Vec<Row> = timeline(&survives_every_cut(&inputs)).into_iter().filter(|r| r.0 != WINDOW).collect();
        assert_eq!(evs, vec![row(SPIKE, Raised, Yellow, 15, "wl"), row(SPIKE, Cleared, Yellow, 25, "wl")], "{target}");
    }

    // The spike test alone out of service at hankou: wl's spike is silent, its flat line is
    // raised as usual, and the dam's gauge spikes as usual.
    let rule = serde_json::json!({"rule": SPIKE, "site": "hankou"});
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.extend(moving("d1", 0, 10, 20.0));
    inputs.push(out_of_service(12, rule.clone()));
    inputs.push(reading("wl", 15, 25.0));
    inputs.push(reading("d1", 15, 25.0));
    inputs.extend(still("wl", 20, 50, 20.03));
    inputs.push(back_in_service(52, rule));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 12, SPIKE),
            row(SPIKE, Raised, Yellow, 15, "d1"),
            row(FLAT, Raised, Yellow, 50, "wl"),
            row(WINDOW, Cleared, Blue, 52, SPIKE),
        ]
    );

    // Two windows cover the gauge: its own closes first, the site's still silences it; the
    // test is brought in line when the last one closes.
    let (wl, site) = (serde_json::json!({"sensor": "wl", "site": "hankou"}), serde_json::json!({"site": "hankou"}));
    let mut inputs = moving("wl", 0, 10, 20.0);
    inputs.push(out_of_service(11, wl.clone()));
    inputs.push(out_of_service(12, site.clone()));
    inputs.push(reading("wl", 15, 25.0));
    inputs.push(back_in_service(17, wl));
    inputs.push(back_in_service(19, site));
    inputs.extend(moving("wl", 20, 25, 20.03));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 11, "wl"),
            row(WINDOW, Raised, Blue, 12, "hankou"),
            row(WINDOW, Cleared, Blue, 17, "wl"),
            row(WINDOW, Cleared, Blue, 19, "hankou"),
            row(SPIKE, Raised, Yellow, 19, "wl"),
            row(SPIKE, Cleared, Yellow, 25, "wl"),
        ]
    );
    assert_eq!(evs[4].value, 25.0, "the last value the test flagged");
}

/// The rule ids offered for a window on a rule include each configured data-quality test, and
/// the engine takes each (at a site, and everywhere); a test not configured is refused.
#[test]
fn each_configured_data_quality_test_is_offered_for_a_window_and_accepted() {
    let ids = riskwatch_rules::RuleSet::from_toml(RULES).unwrap().window_rule_ids();
    assert_eq!(ids, ["water-level", SPIKE, FLAT]);
    for id in &ids {
        let mut h = host();
        run(&mut h, &[out_of_service(0, serde_json::json!({"rule": id, "site": "dam"}))]);
        run(&mut h, &[out_of_service(1, serde_json::json!({"rule": id}))]);
    }
    for id in ["dq.gross_range", "dq.rate_of_change", "dq.timing", "dq.stale", "dq.sensor_fault"] {
        let outcome = host().apply(&mut out_of_service(0, serde_json::json!({"rule": id})), &mut Vec::new());
        assert!(matches!(&outcome, Outcome::Refused(r) if r.code == "unknown_target"), "{id}: {outcome:?}");
    }
    let outcome =
        host().apply(&mut out_of_service(0, serde_json::json!({"rule": SPIKE, "site": "nowhere"})), &mut Vec::new());
    assert!(matches!(&outcome, Outcome::Refused(r) if r.code == "unknown_target"), "{outcome:?}");
    let all = format!(
        "{RULES}gross_range = {{ fail_min = 0 }}\nrate_of_change = {{ fail_per_hour = 5 }}\ntiming = {{ max_age_s = 600 }}\nstale = {{ intervals = 3 }}\n"
    );
    assert_eq!(
        riskwatch_rules::RuleSet::from_toml(&all).unwrap().window_rule_ids(),
        ["water-level", "dq.gross_range", SPIKE, FLAT, "dq.rate_of_change", "dq.timing", "dq.stale"]
    );
}
