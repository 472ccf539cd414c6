//! `riskwatch simulate --forecasts` through the embedded pipeline over real MQTT: a flood
//! scenario's gauge and the forecasts a forecasting office issues for it; the `forecast` alert
//! is raised (at a forecast's issue time) before the observed level crosses the same threshold.

mod common;

use common::sim::{write_scenario, Pipeline};
use riskwatch_simulators::scenario::ObservedAlert;
use std::time::Duration;

/// Default flood wave (25.0 m to a 28.8 m crest at hour 60), 10-min readings, 96 h at 70 000×.
const SCENARIO: &str = r#"
name = "forecast-flood"
start = "2020-07-01T00:00:00Z"
duration = "96h"
speed = 70000

registry_toml = '''
[[sites]]
id = "hankou"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 600
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.50 }
'''

rules_toml = '''
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[forecasts]]
id = "wl-forecast"
applies_to = { kind = "water_level" }
levels = { orange = { threshold = "guaranteed_level", within = "24h" } }
'''

[[group]]
id = "hankou"
model = "flood"
site = "hankou"
batch = false
params = { interval_s = 600.0 }
sensors = [{ id = "hankou-wl" }]
"#;

#[test]
fn simulated_forecasts_raise_the_forecast_alert_before_the_observed_crossing() {
    let scratch = tempfile::tempdir().unwrap();
    let (path, scenario) = write_scenario(scratch.path(), "forecast-flood", SCENARIO);
    let start = scenario.fixed_start().unwrap().millis();
    let pipeline = Pipeline::start(&scenario);
    let (out, readings) = pipeline.simulate(
        &path,
        &[
            "--seed",
            "7",
            "--forecasts",
            "--forecast-every",
            "6h",
            "--forecast-horizon",
            "48h",
            "--forecast-members",
            "5",
        ],
    );
    // 96 h of issues every 6 h: 17 forecasts.
    assert!(out.iter().any(|l| l.contains("17 forecasts")), "{}", out.join("\n"));
    pipeline.wait_stored(readings, Duration::from_secs(30));
    let observed_orange = |a: &ObservedAlert| {
        a.rule == "water-level" && ["raised", "escalated"].contains(&a.change.as_str()) && a.level.as_str() == "orange"
    };
    let forecast_raised = |a: &ObservedAlert| a.rule == "wl-forecast" && a.change == "raised";
    let alerts = pipeline
        .wait_alerts(Duration::from_secs(30), |a| a.iter().any(observed_orange) && a.iter().any(forecast_raised));
    let show = || {
        alerts
            .iter()
            .map(|a| format!("{} {} {} at {} h", a.rule, a.change, a.level.as_str(), (a.ts - start) as f64 / 3.6e6))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let forecast = alerts.iter().position(forecast_raised).unwrap_or_else(|| panic!("no forecast alert:\n{}", show()));
    let observed = alerts.iter().position(observed_orange).unwrap_or_else(|| panic!("no observed orange:\n{}", show()));
    assert_eq!(alerts[forecast].subject, "hankou-wl");
    assert_eq!(alerts[forecast].level.as_str(), "orange", "{}", show());
    assert!(forecast < observed, "the forecast alert comes first:\n{}", show());
    // In event time too: issued hours before the level reaches 28.5 m.
    assert!(alerts[forecast].ts + 6 * 3_600_000 <= alerts[observed].ts, "{}", show());
    let (_, _dir) = pipeline.stop();
}
