//! `riskwatch replay --forecasts` on the flood fixture (tests/data/replay): forecasts issued
//! during the flood (made here from the recorded hydrograph, blurred with lead time) run with
//! the readings; the forecast alerts are in the timeline and events.json, the skill by lead
//! time is printed and written into the report with a forecast fan per station.

use riskwatch_core::wire::forecast::encode_forecast;
use riskwatch_core::Registry;
use riskwatch_replay::forecast_skill::blurred_forecasts;
use riskwatch_replay::input::{load, Format, InputOptions};
use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay").join(name).to_string_lossy().into_owned()
}

const FORECAST_RULE: &str = r#"
[[forecasts]]
id = "wl-forecast"
applies_to = { kind = "water_level" }
levels = { orange = { threshold = "guaranteed_level", within = "24h" }, yellow = { threshold = "guaranteed_level", within = "72h" } }
"#;

#[test]
fn replay_with_forecasts_reports_skill_by_lead_time_with_forecast_fans() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::from_toml(&std::fs::read_to_string(fixture("registry.toml")).unwrap()).unwrap();
    let readings = load(&fixture("levels.csv"), &InputOptions::new(Format::Yearbook), &registry).unwrap().readings;
    let lines: Vec<String> = blurred_forecasts(&readings, 20, 0.01, 0x2020_0707)
        .iter()
        .map(|f| String::from_utf8(encode_forecast(f)).unwrap())
        .collect();
    let forecasts = dir.path().join("forecasts.jsonl");
    std::fs::write(&forecasts, lines.join("\n")).unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, std::fs::read_to_string(fixture("rules.toml")).unwrap() + FORECAST_RULE).unwrap();
    let report = dir.path().join("review");
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["replay", "--registry", &fixture("registry.toml"), "--rules", rules.to_str().unwrap()])
        .args(["--input", &fixture("levels.csv"), "--format", "yearbook", "--quiet"])
        .args(["--forecasts", forecasts.to_str().unwrap(), "--report", report.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "replay failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("forecast skill at orange"), "{stdout}");
    assert!(stdout.contains("lead  0–6  h  hits 1 misses 0 false alarms 0  POD 1.00  FAR 0.00  CSI 1.00"), "{stdout}");
    assert!(stdout.contains("mean lead time gained 65.00 h"), "{stdout}");

    let events: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(report.join("events.json")).unwrap()).unwrap();
    let forecast_alerts: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["category"] == "forecast" && e["subject"] == "hankou-wl").collect();
    assert!(forecast_alerts.iter().any(|e| e["level"] == "orange"), "{forecast_alerts:#?}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Forecast skill by lead time"), "{md}");
    assert!(md.contains("| 0–6 | 1 | 0 | 0 | 1.00 | 0.00 | 1.00 |"), "{md}");
    for station in ["hankou-wl", "jiujiang-wl", "nanjing-wl", "datang-wl"] {
        let svg = std::fs::read_to_string(report.join(format!("plots/forecast-{station}.svg"))).unwrap();
        assert!(svg.contains("<polygon"), "{station}: forecast bands");
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(report.join("forecast-skill.json")).unwrap())
            .unwrap()["level"],
        "orange"
    );
}
