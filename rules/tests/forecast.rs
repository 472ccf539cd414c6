//! Forecast timelines: forecasts (and readings, and the passing of time) in through the rules
//! host, forecast alerts out — raised before the observed crossing, superseded by later
//! forecasts, linked to the observed alert, cleared when forecasts fall or run out; ensembles
//! judged by probability of exceedance and persistence; journaled and recovered exactly.

use riskwatch_core::{
    AlertCategory, AlertChange, AlertEvent, Forecast, Level, Quality, Reading, Registry, SensorId, SensorKind, SiteId,
    Timestamp, Value,
};
use riskwatch_rules::host::text_digest;
use riskwatch_rules::{Input, Outcome, RuleSet, RulesHost};
use std::sync::Arc;

const T0: i64 = 1_594_051_200_000; // 2020-07-07T00:00+08:00
const H: i64 = 3_600_000;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sensors]]
id = "wl"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[forecasts]]
id = "wl-forecast"
applies_to = { kind = "water_level" }
levels = { orange = { threshold = "guaranteed_level", within = "24h" }, yellow = { threshold = "guaranteed_level", within = "72h" } }
"#;

const ENSEMBLE_RULES: &str = r#"
[[forecasts]]
id = "wl-efas"
applies_to = { kind = "water_level" }
probability = 0.5
persistence = 2
levels = { orange = { threshold = "guaranteed_level", within = "24h" } }
"#;

fn host(rules: &str) -> RulesHost {
    RulesHost::new(rules, Arc::new(Registry::from_toml(REGISTRY).unwrap()), &text_digest(REGISTRY), None).unwrap()
}

/// A forecast issued `issued_h` hours after T0, hourly for `values.len()` hours, per member.
fn forecast(issued_h: i64, members: Vec<Vec<f64>>) -> Input {
    let issued = T0 + issued_h * H;
    let steps = members[0].len() as i64;
    Input::Forecast {
        at: Timestamp(issued + 60_000),
        forecast: Box::new(Forecast {
            sensor: SensorId::new("wl"),
            site: SiteId::new("hankou"),
            kind: SensorKind::WaterLevel,
            unit: Arc::from("m"),
            issued: Timestamp(issued),
            valid: (1..=steps).map(|k| Timestamp(issued + k * H)).collect(),
            members,
        }),
    }
}

/// A linear hydrograph from `start` rising `per_h` metres an hour, for `hours` hours.
fn ramp(start: f64, per_h: f64, hours: usize) -> Vec<f64> {
    (1..=hours).map(|k| start + per_h * k as f64).collect()
}

fn reading(at_h: i64, v: f64) -> Input {
    let ts = Timestamp(T0 + at_h * H);
    Input::Readings {
        at: ts,
        readings: vec![Reading {
            sensor: SensorId::new("wl"),
            site: SiteId::new("hankou"),
            kind: SensorKind::WaterLevel,
            ts,
            value: Value::Scalar(v),
            unit: Arc::from("m"),
            quality: Quality::Good,
            exercise: false,
        }],
    }
}

fn apply(host: &mut RulesHost, inputs: &[Input]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for input in inputs {
        let mut input = input.clone();
        assert_eq!(host.apply(&mut input, &mut out), Outcome::Applied);
    }
    out
}

fn detail<'a>(e: &'a AlertEvent, key: &str) -> &'a serde_json::Value {
    e.details.as_ref().and_then(|d| d.get(key)).unwrap_or(&serde_json::Value::Null)
}

/// The deterministic timeline: yellow 40 h ahead, orange once the crossing is within 24 h,
/// an older forecast arriving late changes nothing, the observed crossing links the two
/// alerts, a falling forecast clears the forecast alert.
fn timeline() -> Vec<Input> {
    vec![
        reading(0, 27.0),
        // Issued at T0: 27.0 + 0.04/h reaches 28.5 at the step of +38 h → within 72 h, not 24 h.
        forecast(0, vec![ramp(27.0, 0.04, 72)]),
        // Issued at T0+6 h, faster: 27.25 + 0.1/h reaches 28.5 at +13 h → within 24 h.
        forecast(6, vec![ramp(27.25, 0.1, 48)]),
        // Issued before the latest: ignored.
        forecast(3, vec![ramp(25.0, 0.0, 48)]),
        reading(12, 28.0),
        // The observed crossing at T0+19 h.
        reading(19, 28.6),
        // Issued at T0+30 h: the river falls, never at 28.5 again.
        forecast(30, vec![ramp(28.4, -0.1, 48)]),
    ]
}

#[test]
fn orange_within_24h_is_raised_before_the_observed_crossing_superseded_linked_and_cleared() {
    let mut h = host(RULES);
    let events = apply(&mut h, &timeline());
    // Same lifecycle as every alert: the unacknowledged orange forecast alert is reminded of.
    let reminders =
        events.iter().filter(|e| e.category == AlertCategory::Forecast && e.change == AlertChange::Reminder);
    assert_eq!(reminders.count(), 2);
    let fc: Vec<&AlertEvent> =
        events.iter().filter(|e| e.category == AlertCategory::Forecast && e.change != AlertChange::Reminder).collect();
    let got: Vec<(AlertChange, Level, i64)> =
        fc.iter().map(|e| (e.change, e.level, (e.ts.millis() - T0) / H)).collect();
    assert_eq!(
        got,
        vec![
            (AlertChange::Raised, Level::Yellow, 0),
            (AlertChange::Escalated, Level::Orange, 6),
            (AlertChange::Cleared, Level::Orange, 30),
        ],
        "{fc:#?}"
    );
    // One alert, its own id, per sensor and forecast rule.
    assert!(fc.iter().all(|e| e.alert_id == fc[0].alert_id && &*e.rule_id == "wl-forecast"));
    // Yellow: crossing expected 38 h after issue (the first hourly step at or above 28.5).
    let raised = fc[0];
    assert_eq!(detail(raised, "lead_time_s"), 38 * 3600);
    assert_eq!(detail(raised, "expected_crossing"), &Timestamp(T0 + 38 * H).to_rfc3339());
    assert_eq!(detail(raised, "probability"), 1.0);
    assert_eq!(detail(raised, "peak_time"), &Timestamp(T0 + 72 * H).to_rfc3339());
    assert_eq!(raised.threshold, 28.5);
    // Superseded by the forecast of T0+6 h: its issue time, crossing at +13 h.
    let orange = fc[1];
    assert_eq!(detail(orange, "issued"), &Timestamp(T0 + 6 * H).to_rfc3339());
    assert_eq!(detail(orange, "lead_time_s"), 13 * 3600);
    assert!(orange.message_en.contains("lead time 13 h"), "{}", orange.message_en);
    // The observed orange alert, raised at T0+19 h, is linked to the forecast alert raised at
    // T0: 19 h gained.
    let observed = events
        .iter()
        .find(|e| e.category == AlertCategory::Hazard && e.level == Level::Orange && e.change == AlertChange::Escalated)
        .expect("observed orange");
    assert_eq!(observed.ts, Timestamp(T0 + 19 * H));
    let link = detail(observed, "forecast_alert");
    assert_eq!(link["alert_id"], fc[0].alert_id.as_str());
    assert_eq!(link["lead_time_gained_s"], 19 * 3600);
    // Cleared by the falling forecast, naming the observed alert.
    let cleared = fc[2];
    assert_eq!(detail(cleared, "reason"), "forecast_below");
    assert_eq!(detail(cleared, "observed_alert"), observed.alert_id.as_str());
}

#[test]
fn every_input_of_the_timeline_recovers_exactly_from_any_snapshot_and_the_journal() {
    let inputs = timeline();
    let mut whole = host(RULES);
    let want = apply(&mut whole, &inputs);
    for cut in 0..=inputs.len() {
        let mut first = host(RULES);
        let mut got = apply(&mut first, &inputs[..cut]);
        // Saved as a store keeps it (JSON), inputs as the journal keeps them (bytes).
        let snap = serde_json::from_str(&serde_json::to_string(&first.snapshot()).unwrap()).unwrap();
        let rec =
            RulesHost::recover(snap, Arc::new(Registry::from_toml(REGISTRY).unwrap()), &text_digest(REGISTRY), None)
                .unwrap();
        assert!(rec.exact);
        let mut second = rec.host;
        let journal: Vec<Input> =
            inputs[cut..].iter().map(|i| Input::from_bytes(&i.to_bytes()).expect("journal entry")).collect();
        assert_eq!(journal, inputs[cut..].to_vec());
        got.extend(apply(&mut second, &journal));
        assert_eq!(got, want, "cut after {cut} inputs");
    }
}

#[test]
fn a_forecast_alert_clears_when_its_forecast_runs_out_with_no_newer_one() {
    let mut h = host(RULES);
    let mut events = apply(&mut h, &[forecast(0, vec![ramp(28.0, 0.1, 12)])]);
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].change, events[0].level), (AlertChange::Raised, Level::Orange));
    let levels = |events: Vec<AlertEvent>| -> Vec<AlertEvent> {
        events.into_iter().filter(|e| e.change != AlertChange::Reminder).collect()
    };
    events = levels(apply(&mut h, &[Input::Tick { at: Timestamp(T0 + 12 * H) }]));
    assert!(events.is_empty(), "still within the forecast: {events:#?}");
    events = levels(apply(&mut h, &[Input::Tick { at: Timestamp(T0 + 12 * H + 1000) }]));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].change, AlertChange::Cleared);
    assert_eq!(detail(&events[0], "reason"), "expired");
}

/// `crossing` of `n` members reach 28.5 within 24 h (at hour 9), the rest stay low.
fn ensemble(issued_h: i64, n: usize, crossing: usize) -> Input {
    forecast(issued_h, (0..n).map(|i| if i < crossing { ramp(27.6, 0.1, 36) } else { ramp(27.0, 0.0, 36) }).collect())
}

#[test]
fn ensembles_raise_on_probability_of_exceedance_persistent_over_consecutive_forecasts() {
    let mut h = host(ENSEMBLE_RULES);
    let step = |h: &mut RulesHost, input: Input| -> Vec<(AlertChange, Level, f64)> {
        apply(h, &[input]).iter().map(|e| (e.change, e.level, detail(e, "probability").as_f64().unwrap())).collect()
    };
    // 6 of 10 members cross: the level holds once, not yet persistent.
    assert_eq!(step(&mut h, ensemble(0, 10, 6)), vec![]);
    // 4 of 10: below 50 %, the streak breaks.
    assert_eq!(step(&mut h, ensemble(6, 10, 4)), vec![]);
    // 5 of 10, then 7 of 10: twice in a row → orange, at the latest probability.
    assert_eq!(step(&mut h, ensemble(12, 10, 5)), vec![]);
    assert_eq!(step(&mut h, ensemble(18, 10, 7)), vec![(AlertChange::Raised, Level::Orange, 0.7)]);
    // Still 6 of 10: stays orange (superseded silently, no new level).
    assert_eq!(step(&mut h, ensemble(24, 10, 6)), vec![]);
    // 3 of 10: cleared.
    assert_eq!(step(&mut h, ensemble(30, 10, 3)), vec![(AlertChange::Cleared, Level::Orange, 0.3)]);
}

#[test]
fn the_expected_crossing_of_an_ensemble_is_when_the_required_share_has_crossed() {
    let mut h = host(&ENSEMBLE_RULES.replace("persistence = 2", "persistence = 1"));
    // Member i crosses 28.5 at hour 2 + 2i: four members, half of them must cross → the
    // second earliest crossing, hour 4.
    let members = (0..4).map(|i| (1..=24).map(|k| if k >= 2 + 2 * i { 28.6 } else { 28.0 }).collect()).collect();
    let ev = apply(&mut h, &[forecast(0, members)]);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(detail(&ev[0], "expected_crossing"), &Timestamp(T0 + 4 * H).to_rfc3339());
    assert_eq!(detail(&ev[0], "members"), 4);
    assert_eq!(detail(&ev[0], "probability"), 1.0);
}

#[test]
fn forecast_rules_are_checked_with_field_and_line() {
    let bad = r#"
[[forecasts]]
id = "f"
applies_to = { kind = "water_level" }
probability = 1.5
persistence = 0
levels = { orange = { threshold = "guaranteed_level", within = "soon" } }
"#;
    let e = RuleSet::from_toml(bad).unwrap_err().to_string();
    assert!(e.contains("line 5: forecasts[0].probability: must be in (0, 1]"), "{e}");
    assert!(e.contains("line 6: forecasts[0].persistence"), "{e}");
    assert!(e.contains("forecasts[0].levels.orange.within"), "{e}");
    let missing = RULES.replace("guaranteed_level\", within = \"24h\"", "flood_level\", within = \"24h\"");
    let set = RuleSet::from_toml(&missing).unwrap();
    let p = set.check_against(&Registry::from_toml(REGISTRY).unwrap());
    assert!(p.iter().any(|p| p.contains("forecasts[0].levels.orange.threshold") && p.contains("flood_level")), "{p:?}");
    let gnss = RULES.replace(
        "applies_to = { kind = \"water_level\" }\nlevels = { orange",
        "applies_to = { kind = \"gnss_displacement\" }\nlevels = { orange",
    );
    let e = RuleSet::from_toml_for(&gnss, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("forecasts[0].applies_to.kind"), "{e}");
}
