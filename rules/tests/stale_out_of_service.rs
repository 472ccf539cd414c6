//! Stale detection and out-of-service windows (ISA-18.2: an alarm out of service is not
//! annunciated), as timelines through the rules host on a virtual clock: a gauge taken off its
//! pole for maintenance falls silent without a `dq.stale` alert; back in service, its silence
//! counts afresh from the return. Every timeline is also cut at every input, saved as JSON,
//! restored and finished, and must give the very same events.

use riskwatch_core::{AlertChange, AlertEvent, Level};
use riskwatch_rules::{Input, Outcome, RulesHost};

#[path = "support/timeline.rs"]
mod timeline_kit;
use timeline_kit::{run, Kit, MIN};

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00

/// Gauges reporting every 5 minutes: stale after 3 intervals, 15 minutes of silence.
const REGISTRY: &str = timeline_kit::THREE_GAUGES;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[quality]]
applies_to = { kind = "water_level" }
stale = { intervals = 3 }
level = "yellow"
"#;

const STALE: &str = "dq.stale";
const WINDOW: &str = "oos.window";
const WL: &str = "water-level";

const KIT: Kit = Kit { t0: T0, registry: REGISTRY, rules: RULES };

fn host() -> RulesHost {
    KIT.host()
}

fn reading(sensor: &str, minute: i64, v: f64) -> Input {
    KIT.reading(sensor, minute, v)
}

fn command(minute: i64, json: serde_json::Value) -> Input {
    KIT.command(minute, json)
}

/// Opens a window on `target` (`{"sensor": …}`, `{"site": …}`, `{"rule": …}`) for two hours.
fn out_of_service(minute: i64, target: serde_json::Value) -> Input {
    let mut cmd =
        serde_json::json!({"action": "out_of_service", "minutes": 120, "by": "Li Wei", "note": "gauge off its pole"});
    cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    command(minute, cmd)
}

fn back_in_service(minute: i64, target: serde_json::Value) -> Input {
    let mut cmd = serde_json::json!({"action": "return_to_service", "by": "Li Wei", "note": "re-installed"});
    cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    command(minute, cmd)
}

fn ticks(from: i64, to: i64) -> Vec<Input> {
    KIT.ticks(from, to)
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

use AlertChange::*;
use Level::*;

#[test]
fn a_silent_out_of_service_gauge_raises_no_stale_alert_and_after_its_return_only_after_a_full_limit() {
    let wl = serde_json::json!({"sensor": "wl", "site": "hankou"});
    let mut inputs = vec![reading("wl", 0, 20.0), reading("wl-2", 0, 20.0), out_of_service(1, wl.clone())];
    inputs.extend(ticks(2, 59));
    inputs.push(back_in_service(60, wl));
    inputs.extend(ticks(61, 80));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 1, "wl"),
            row(STALE, Raised, Yellow, 16, "d1"),
            row(STALE, Raised, Yellow, 16, "wl-2"),
            row(WINDOW, Cleared, Blue, 60, "wl"),
            row(STALE, Raised, Yellow, 76, "wl"),
        ],
        "the gauge out of service stays quiet for an hour of silence (the others, in service, are stale \
         after 15 minutes); back at minute 60, it is stale only once silent for 15 minutes more"
    );
    // The alert tells the whole silence, since the last reading, against the limit.
    let stale = &evs[4];
    assert_eq!((stale.value, stale.threshold), (76.0 * 60.0, 15.0 * 60.0));
    // A gauge that does report within its limit after the return raises nothing.
    let mut inputs = inputs[..inputs.len() - 20].to_vec();
    inputs.extend(ticks(61, 70));
    inputs.push(reading("wl", 71, 20.0));
    inputs.extend(ticks(72, 85));
    let evs = run(&mut host(), &inputs);
    assert!(timeline(&evs).iter().all(|r| !(r.0 == STALE && r.4 == "wl")), "{:?}", timeline(&evs));
}

#[test]
fn a_stale_alert_open_when_the_window_opens_stays_until_the_return_then_clears_and_counts_afresh() {
    let wl = serde_json::json!({"sensor": "wl", "site": "hankou"});
    let mut inputs = vec![reading("wl", 0, 20.0)];
    inputs.extend(ticks(1, 19));
    inputs.push(out_of_service(20, wl.clone()));
    inputs.extend(ticks(21, 29));
    // A reading while out of service: the stale alert is left as it was, as hazard alerts are.
    inputs.push(reading("wl", 30, 20.0));
    inputs.extend(ticks(31, 44));
    inputs.push(back_in_service(45, wl));
    inputs.extend(ticks(46, 65));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(STALE, Raised, Yellow, 16, "d1"),
            row(STALE, Raised, Yellow, 16, "wl"),
            row(STALE, Raised, Yellow, 16, "wl-2"),
            row(WINDOW, Raised, Blue, 20, "wl"),
            row(WINDOW, Cleared, Blue, 45, "wl"),
            row(STALE, Cleared, Yellow, 45, "wl"),
            row(STALE, Raised, Yellow, 61, "wl"),
        ],
        "open throughout the window, cleared on the return, raised again (a new alert) 15 minutes on"
    );
    assert!(evs[5].message_en.starts_with("Back in service"), "{}", evs[5].message_en);
    assert_eq!(evs[5].alert_id, evs[1].alert_id);
    assert_ne!(evs[6].alert_id, evs[1].alert_id, "a new alert, not the old one again");
    // Its silence is the 31 minutes since the reading at minute 30.
    assert_eq!(evs[6].value, 31.0 * 60.0);
    // Without the window, the reading at minute 30 clears the alert at once.
    let plain: Vec<Input> = inputs.iter().filter(|i| !matches!(i, Input::Command { .. })).cloned().collect();
    let evs: Vec<Row> = timeline(&run(&mut host(), &plain)).into_iter().filter(|r| r.4 == "wl").collect();
    assert_eq!(
        evs,
        vec![
            row(STALE, Raised, Yellow, 16, "wl"),
            row(STALE, Cleared, Yellow, 30, "wl"),
            row(STALE, Raised, Yellow, 46, "wl")
        ]
    );
}

#[test]
fn a_site_window_and_a_dq_stale_rule_window_cover_stale_detection_too() {
    // The dam out of service: its gauge falls silent; the river's gauge is stale as usual.
    let dam = serde_json::json!({"site": "dam"});
    let mut inputs = vec![out_of_service(0, dam.clone()), reading("d1", 0, 20.0), reading("wl", 0, 20.0)];
    inputs.extend(ticks(1, 29));
    inputs.push(back_in_service(30, dam));
    inputs.extend(ticks(31, 50));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 0, "dam"),
            row(STALE, Raised, Yellow, 16, "wl"),
            row(STALE, Raised, Yellow, 16, "wl-2"),
            row(WINDOW, Cleared, Blue, 30, "dam"),
            row(STALE, Raised, Yellow, 46, "d1"),
        ]
    );

    // Stale detection alone out of service at one site: hazard alerts there go on as usual.
    let rule = serde_json::json!({"rule": "dq.stale", "site": "hankou"});
    let mut inputs = vec![out_of_service(0, rule.clone()), reading("wl", 0, 20.0), reading("d1", 0, 20.0)];
    inputs.extend(ticks(1, 9));
    inputs.push(reading("wl", 10, 27.5));
    inputs.extend(ticks(11, 39));
    inputs.push(back_in_service(40, rule));
    inputs.extend(ticks(41, 60));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 0, "dq.stale"),
            row(WL, Raised, Yellow, 10, "wl"),
            row(STALE, Raised, Yellow, 16, "d1"),
            row(WINDOW, Cleared, Blue, 40, "dq.stale"),
            // wl-2 never reported; it too counts from the return.
            row(STALE, Raised, Yellow, 56, "wl"),
            row(STALE, Raised, Yellow, 56, "wl-2"),
        ]
    );
    let mut h = host();
    let refused =
        |h: &mut RulesHost, target: serde_json::Value| match h.apply(&mut out_of_service(0, target), &mut Vec::new()) {
            Outcome::Refused(r) => r.code,
            other => panic!("applied: {other:?}"),
        };
    assert_eq!(refused(&mut h, serde_json::json!({"rule": "dq.stale", "site": "nowhere"})), "unknown_target");
    assert_eq!(refused(&mut h, serde_json::json!({"rule": "dq.spike"})), "unknown_target");
}

#[test]
fn with_two_windows_covering_a_gauge_its_silence_counts_from_the_last_return() {
    let (wl, site) = (serde_json::json!({"sensor": "wl", "site": "hankou"}), serde_json::json!({"site": "hankou"}));
    let mut inputs = vec![
        reading("wl", 0, 20.0),
        reading("wl-2", 0, 20.0),
        out_of_service(1, wl.clone()),
        out_of_service(2, site.clone()),
    ];
    inputs.extend(ticks(3, 29));
    inputs.push(back_in_service(30, wl));
    inputs.extend(ticks(31, 49));
    inputs.push(back_in_service(50, site));
    inputs.extend(ticks(51, 70));
    let evs = survives_every_cut(&inputs);
    assert_eq!(
        timeline(&evs),
        vec![
            row(WINDOW, Raised, Blue, 1, "wl"),
            row(WINDOW, Raised, Blue, 2, "hankou"),
            row(STALE, Raised, Yellow, 16, "d1"),
            row(WINDOW, Cleared, Blue, 30, "wl"),
            row(WINDOW, Cleared, Blue, 50, "hankou"),
            row(STALE, Raised, Yellow, 66, "wl"),
            row(STALE, Raised, Yellow, 66, "wl-2"),
        ],
        "still out of service by its site after its own window closed"
    );
}

/// The rule ids the console offers for a window on a rule are exactly those the engine takes:
/// each opens a window (at a site, and everywhere); a data-quality rule not listed is refused.
#[test]
fn the_rule_ids_offered_for_a_window_are_the_ones_the_engine_accepts() {
    let ids = riskwatch_rules::RuleSet::from_toml(RULES).unwrap().window_rule_ids();
    assert_eq!(ids, [WL, STALE]);
    for id in &ids {
        let mut h = host();
        run(&mut h, &[out_of_service(0, serde_json::json!({"rule": id, "site": "dam"}))]);
        run(&mut h, &[out_of_service(1, serde_json::json!({"rule": id}))]);
    }
    let mut out = Vec::new();
    let outcome = host().apply(&mut out_of_service(0, serde_json::json!({"rule": "dq.spike"})), &mut out);
    assert!(matches!(&outcome, Outcome::Refused(r) if r.code == "unknown_target"), "{outcome:?}");
    let no_stale = RULES.split("[[quality]]").next().unwrap();
    assert_eq!(riskwatch_rules::RuleSet::from_toml(no_stale).unwrap().window_rule_ids(), [WL]);
}
