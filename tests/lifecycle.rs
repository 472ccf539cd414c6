//! The closed loop over real MQTT: officers acknowledge an alert on the command topic, bad
//! commands come back as error reports, the engine's state survives a restart (no re-raised
//! alerts, same alert id afterwards), and an edited rules file is hot-reloaded.

mod common;

use common::{free_port, Riskwatch, TestClient};
use riskwatch_core::AlertEvent;
use rumqttc::Publish;
use std::path::Path;
use std::time::Duration;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sensors]]
id = "wl"
site = "hankou"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
"#;

const T0: i64 = 1_594_051_200_000;

fn reading(minute: i64, v: f64) -> String {
    serde_json::json!({"kind": "water_level", "ts": T0 + minute * 60_000, "unit": "m", "value": v}).to_string()
}

fn start(dir: &Path, port: u16) -> Riskwatch {
    let listen = format!("127.0.0.1:{port}");
    let mut rw = Riskwatch::spawn(
        &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen],
        dir,
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    rw
}

fn events(ps: &[Publish]) -> Vec<AlertEvent> {
    ps.iter().filter(|p| p.topic.contains("/alerts/")).map(|p| serde_json::from_slice(&p.payload).unwrap()).collect()
}

fn errors(ps: &[Publish]) -> Vec<serde_json::Value> {
    ps.iter()
        .filter(|p| p.topic == "riskwatch/v1/commands/errors")
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_over_mqtt_survive_a_restart_and_hot_reload_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let rw = start(dir.path(), port);
    let mut officer =
        TestClient::connect(port, "officer", &["riskwatch/v1/alerts/#", "riskwatch/v1/commands/errors"]).await;
    let mut gateway = TestClient::connect(port, "gateway", &[]).await;

    gateway.publish_acked("riskwatch/v1/readings/hankou/wl", reading(0, 29.2)).await;
    let got = officer.collect_until(Duration::from_secs(20), |ps| !events(ps).is_empty()).await;
    let raised = &events(&got)[0];
    assert_eq!((raised.change.as_str(), raised.level.as_str()), ("raised", "red"));
    let id = raised.alert_id.clone();

    // Three bad commands, then a good one.
    let cmd = |action: &str, alert: &str, note: &str| {
        serde_json::json!({"command_id": action, "alert_id": alert, "action": action, "by": "Li Wei", "note": note})
            .to_string()
    };
    gateway.publish_acked("riskwatch/v1/commands", "{not json").await;
    gateway.publish_acked("riskwatch/v1/commands", cmd("acknowledge", "ffffffffffffffff", "")).await;
    gateway.publish_acked("riskwatch/v1/commands", cmd("resolve", &id, "done")).await;
    gateway.publish_acked("riskwatch/v1/commands", cmd("acknowledge", &id, "dike patrol dispatched")).await;
    let got =
        officer.collect_until(Duration::from_secs(20), |ps| errors(ps).len() >= 3 && !events(ps).is_empty()).await;
    let codes: Vec<String> = errors(&got).iter().map(|e| e["code"].as_str().unwrap().to_string()).collect();
    assert_eq!(codes, ["bad_command", "unknown_alert", "wrong_state"]);
    assert_eq!(errors(&got)[2]["alert_id"], id.as_str());
    let acked = &events(&got)[0];
    assert_eq!(
        (acked.change.as_str(), acked.alert_id.as_str(), acked.by.as_deref()),
        ("acknowledged", id.as_str(), Some("Li Wei"))
    );
    assert_eq!(acked.note.as_deref(), Some("dike patrol dispatched"));
    assert_eq!(acked.command_id.as_deref(), Some("acknowledge"), "the command id is echoed for the sender");

    // Restart: the red alert is still open; the same level raises nothing new.
    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
    drop(officer);
    drop(gateway);
    let mut rw = start(dir.path(), port);
    let mut officer = TestClient::connect(port, "officer-2", &["riskwatch/v1/alerts/#"]).await;
    let mut gateway = TestClient::connect(port, "gateway-2", &[]).await;
    gateway.publish_acked("riskwatch/v1/readings/hankou/wl", reading(5, 29.3)).await;
    gateway.publish_acked("riskwatch/v1/readings/hankou/wl", reading(10, 28.7)).await;
    let got = officer.collect_until(Duration::from_secs(20), |ps| !events(ps).is_empty()).await;
    let evs = events(&got);
    assert_eq!(evs.len(), 1, "no re-raise after restart: {evs:?}");
    assert_eq!(
        (evs[0].change.as_str(), evs[0].level.as_str(), evs[0].alert_id.as_str()),
        ("de_escalated", "orange", id.as_str())
    );

    // Hot reload: orange now starts at 28.80, so 28.70 is yellow.
    std::fs::write(
        dir.path().join("rules.toml"),
        RULES.replace("orange = \"guaranteed_level\"", "orange = \"guaranteed_level + 0.3\""),
    )
    .unwrap();
    rw.wait_for_line("rules reloaded", Duration::from_secs(20));
    gateway.publish_acked("riskwatch/v1/readings/hankou/wl", reading(15, 28.7)).await;
    let got = officer.collect_until(Duration::from_secs(20), |ps| !events(ps).is_empty()).await;
    let evs = events(&got);
    assert_eq!(
        (evs[0].change.as_str(), evs[0].level.as_str(), evs[0].alert_id.as_str()),
        ("de_escalated", "yellow", id.as_str())
    );
    // A broken edit is refused and the running rules stay.
    std::fs::write(dir.path().join("rules.toml"), "[[rules]]\nid = \"x\"\n").unwrap();
    rw.wait_for_line("cannot be used; keeping the running rules", Duration::from_secs(20));

    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let outcomes: Vec<String> = db
        .prepare("SELECT outcome FROM commands ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outcomes, ["bad_command", "unknown_alert", "wrong_state", "ok"], "every command is in the audit log");
}

#[test]
fn rules_check_names_line_and_field_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "# comment\n[[rules]]\nid = \"wl\"\napplies_to = { kind = \"water_level\" }\nlevels = { yellow = \"rate(1 week) >= 1\", red = \"flood_level\" }\ndeadband = -1\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["rules", "check", "bad.toml", "--registry", "registry.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Each problem at the line of its field, not the `[[rules]]` header's.
    assert!(err.contains("bad.toml:6: rules[0].deadband"), "{err}");
    assert!(err.contains("bad.toml:5: rules[0].levels.yellow"), "{err}");
    std::fs::write(dir.path().join("good.toml"), RULES).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["rules", "check", "good.toml", "--registry", "registry.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("1 rule(s), 0 quality table(s), 0 composite(s), 1 sensor binding(s): OK"));
}
