//! Forecast skill by lead time on the replay flood fixture (tests/data/replay): forecasts made
//! from the observed hydrograph with errors growing with lead time (a forecaster who knows the
//! truth, blurred as real models are), run with the readings through the engine; the forecast
//! alert warns before the observed crossing, and the skill per lead-time bucket is scored.

use riskwatch_core::wire::forecast::encode_forecast;
use riskwatch_core::{AlertCategory, AlertChange, Level, Registry, Timestamp};
use riskwatch_replay::forecast_skill::{blurred_forecasts, hindcast, lead_skill, read_forecasts, DEFAULT_BUCKETS_H};
use riskwatch_replay::hindcast::{run_with, RunOptions};
use riskwatch_replay::input::{load, Format, InputOptions};
use riskwatch_rules::RuleSet;
use std::collections::BTreeMap;

const H: i64 = 3_600_000;

fn fixture(name: &str) -> String {
    format!("{}/../tests/data/replay/{name}", env!("CARGO_MANIFEST_DIR"))
}

const FORECAST_RULE: &str = r#"
[[forecasts]]
id = "wl-forecast"
applies_to = { kind = "water_level" }
probability = 0.5
levels = { orange = { threshold = "guaranteed_level", within = "24h" }, yellow = { threshold = "guaranteed_level", within = "72h" } }
"#;

#[test]
fn forecast_alerts_warn_before_the_observed_crossing_and_skill_is_scored_by_lead_time() {
    let registry = Registry::from_toml(&std::fs::read_to_string(fixture("registry.toml")).unwrap()).unwrap();
    let rules_text = std::fs::read_to_string(fixture("rules.toml")).unwrap() + FORECAST_RULE;
    let rules = RuleSet::from_toml(&rules_text).unwrap();
    let input = fixture("levels.csv");
    let readings = load(&input, &InputOptions::new(Format::guess(&input).unwrap()), &registry).unwrap().readings;
    // Through the JSON-lines file format, as `riskwatch replay --forecasts` reads it.
    let lines: Vec<String> = blurred_forecasts(&readings, 20, 0.01, 0x2020_0707)
        .iter()
        .map(|f| String::from_utf8(encode_forecast(f)).unwrap())
        .collect();
    let forecasts = read_forecasts(&lines.join("\n"), "forecasts.jsonl", &registry).unwrap();
    assert!(forecasts.len() > 100, "{}", forecasts.len());

    let events = hindcast(&readings, &forecasts, &rules, &registry).unwrap();
    // The report's run: the same events, with hourly traces for the plots.
    let opts = RunOptions { trace_bucket: Some(std::time::Duration::from_secs(3600)), ..RunOptions::default() };
    let outcome = run_with(&readings, forecasts.clone(), &rules, &registry, &opts).unwrap();
    assert_eq!(outcome.events, events);
    // Hankou: observed orange at 2020-07-11T17:00+08:00 (expected-timeline.csv).
    let observed_orange = Timestamp::parse_rfc3339("2020-07-11T17:00:00+08:00").unwrap();
    let observed = events
        .iter()
        .find(|e| e.category == AlertCategory::Hazard && e.subject.as_str() == "hankou-wl" && e.level == Level::Orange)
        .expect("observed orange at Hankou");
    assert_eq!(observed.ts, observed_orange);
    let fc_orange = events
        .iter()
        .find(|e| {
            e.category == AlertCategory::Forecast && e.subject.as_str() == "hankou-wl" && e.level == Level::Orange
        })
        .expect("forecast orange at Hankou");
    assert!(matches!(fc_orange.change, AlertChange::Raised | AlertChange::Escalated));
    let ahead_h = (observed_orange.millis() - fc_orange.ts.millis()) / H;
    assert!((1..=24).contains(&ahead_h), "orange forecast alert {ahead_h} h ahead of the crossing");
    let gained = observed.details.as_ref().unwrap()["forecast_alert"]["lead_time_gained_s"].as_i64().unwrap();
    assert!(gained >= 24 * 3600, "the forecast alert (yellow first) was raised {gained} s ahead");
    // No forecast alert at a gauge that never reached its guaranteed level.
    assert!(!events.iter().any(|e| e.category == AlertCategory::Forecast && e.subject.as_str() == "datang-wl"));

    let skill = lead_skill(&forecasts, &events, &rules, &registry, Level::Orange, &DEFAULT_BUCKETS_H);
    println!("{}", serde_json::to_string_pretty(&skill).unwrap());
    assert!(skill.forecasts > 50);
    let by: BTreeMap<(i64, i64), _> = skill.buckets.iter().map(|b| ((b.from_h, b.to_h), b)).collect();
    // One observed crossing (Hankou), so each bucket holds the forecasts issued that far ahead
    // of it: near the crossing the forecasts are sharp, far out they spread.
    for b in &skill.buckets {
        assert_eq!(b.hits + b.misses, if b.to_h <= 72 { (b.to_h - b.from_h) as usize / 6 } else { 0 }, "{b:?}");
    }
    assert_eq!(by[&(0, 6)].pod, Some(1.0));
    assert_eq!(by[&(6, 12)].pod, Some(1.0));
    assert!(by[&(48, 72)].csi.unwrap_or(0.0) < by[&(0, 6)].csi.unwrap(), "{skill:?}");
    assert!(skill.mean_lead_gained_h.unwrap() >= 24.0);

    // The report: its section in report.md, the numbers, a forecast fan per station.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.md"), "# Replay report\n").unwrap();
    let files = riskwatch_replay::forecast_report::write(
        dir.path(),
        &skill,
        &forecasts,
        &outcome.traces,
        &rules,
        &registry,
        (1200, 480),
    )
    .unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.starts_with("# Replay report\n"), "appended, not replaced");
    assert!(md.contains("## Forecast skill by lead time"), "{md}");
    assert!(md.contains("| 0–6 | 1 | 0 | 0 | 1.00 | 0.00 | 1.00 |"), "{md}");
    assert!(md.contains("![forecasts of hankou-wl](plots/forecast-hankou-wl.svg)"), "{md}");
    let svg = std::fs::read_to_string(dir.path().join("plots/forecast-hankou-wl.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polygon") && svg.contains("<polyline"), "a fan: bands and lines");
    assert!(svg.contains("hankou-wl: forecasts vs observed"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("forecast-skill.json")).unwrap()).unwrap();
    assert_eq!(json["level"], "orange");
    assert_eq!(files.len(), 5, "four stations' fans and the JSON: {files:?}");
}
