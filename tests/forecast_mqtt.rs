//! Forecasts over real MQTT into a running `riskwatch run`: a forecast published on
//! `riskwatch/v1/forecasts/{site}/{sensor}` raises a `forecast` alert on the alert topics, a
//! malformed forecast is refused with its reason on the rejections topic, and after a restart
//! (saved state + input journal) a falling forecast clears the same alert.

mod common;

use common::{free_port, Riskwatch, TestClient};
use riskwatch_core::{AlertCategory, AlertEvent};
use std::time::Duration;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sensors]]
id = "hankou-wl"
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

const H: i64 = 3_600_000;
const TOPIC: &str = "riskwatch/v1/forecasts/hankou/hankou-wl";

/// A forecast issued `issued_h` hours after `t0`, hourly for 48 h, from `start` by `per_h`.
/// Live, forecasts are recent: one whose valid times have all passed on riskwatch's clock has
/// run out (rules.md §3b), so the times here are around now.
fn forecast(t0: i64, issued_h: i64, start: f64, per_h: f64) -> String {
    let issued = t0 + issued_h * H;
    let valid: Vec<i64> = (1..=48).map(|k| issued + k * H).collect();
    let values: Vec<f64> = (1..=48).map(|k| start + per_h * k as f64).collect();
    serde_json::json!({"v": 1, "kind": "water_level", "unit": "m", "issued": issued, "valid": valid, "values": values})
        .to_string()
}

fn forecast_events(ps: &[rumqttc::Publish]) -> Vec<AlertEvent> {
    ps.iter()
        .filter(|p| p.topic.contains("/alerts/"))
        .filter_map(|p| serde_json::from_slice::<AlertEvent>(&p.payload).ok())
        .filter(|e| e.category == AlertCategory::Forecast && e.change.as_str() != "reminder")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_over_mqtt_raise_refuse_and_clear_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen];
    let mut rw = Riskwatch::spawn(&args, dir.path());
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut officer =
        TestClient::connect(port, "duty-officer", &["riskwatch/v1/alerts/#", "riskwatch/v1/rejections/#"]).await;
    let mut forecaster = TestClient::connect(port, "forecaster", &[]).await;
    let t0 = riskwatch_core::Timestamp::now().millis() / H * H - H;

    // Reaches 28.5 at +13 h: orange within 24 h.
    forecaster.publish_acked(TOPIC, forecast(t0, 0, 27.25, 0.1)).await;
    // Valid times before the issue time: refused.
    let bad = serde_json::json!({"kind": "water_level", "unit": "m", "issued": t0 + 2 * H,
        "valid": [t0 + H], "values": [28.0]});
    forecaster.publish_acked(TOPIC, bad.to_string()).await;
    let got = officer
        .collect_until(Duration::from_secs(30), |ps| {
            !forecast_events(ps).is_empty() && ps.iter().any(|p| p.topic.contains("/rejections/"))
        })
        .await;
    let raised = forecast_events(&got);
    assert_eq!(raised.len(), 1, "{raised:#?}");
    let topic = got.iter().find(|p| p.topic.contains("/alerts/")).map(|p| p.topic.clone()).unwrap();
    assert_eq!(topic, "riskwatch/v1/alerts/orange/hankou/hankou-wl");
    assert_eq!((raised[0].change.as_str(), raised[0].level.as_str()), ("raised", "orange"));
    assert_eq!(raised[0].details.as_ref().unwrap()["lead_time_s"], 13 * 3600);
    let rejection: serde_json::Value =
        serde_json::from_slice(&got.iter().find(|p| p.topic.contains("/rejections/")).unwrap().payload).unwrap();
    assert_eq!(rejection["reason"], "bad_timestamp");
    assert!(rejection["error"].as_str().unwrap().starts_with("valid[0]"), "{rejection}");
    assert_eq!(got.iter().find(|p| p.topic.contains("/rejections/")).unwrap().topic, "riskwatch/v1/rejections/hankou");

    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
    let mut rw = Riskwatch::spawn(&args, dir.path());
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut officer = TestClient::connect(port, "duty-officer-2", &["riskwatch/v1/alerts/#"]).await;
    let mut forecaster = TestClient::connect(port, "forecaster", &[]).await;
    // The river falls: the same alert clears.
    forecaster.publish_acked(TOPIC, forecast(t0, 1, 28.0, -0.05)).await;
    let got = officer.collect_until(Duration::from_secs(30), |ps| !forecast_events(ps).is_empty()).await;
    let cleared = forecast_events(&got);
    assert_eq!((cleared[0].change.as_str(), cleared[0].alert_id.as_str()), ("cleared", raised[0].alert_id.as_str()));
    assert_eq!(cleared[0].details.as_ref().unwrap()["reason"], "forecast_below");
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
}
