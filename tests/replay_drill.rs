//! Drill mode end to end: `riskwatch replay --drill` publishes a recorded flood into a running
//! pipeline (`riskwatch run`, embedded broker and store); every alert it causes reaches the
//! alert topics and the store marked as an exercise, and the stations' real history and live
//! alerts are untouched.

mod common;

use common::{free_port, Riskwatch, TestClient};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay").join(name)
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db).and_then(|c| c.query_row(sql, [], |r| r.get(0))).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_alerts_carry_the_exercise_mark_to_the_alert_topics_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (registry, rules) = (fixture("registry.toml"), fixture("rules.toml"));
    let mut rw = Riskwatch::spawn(
        &[
            "run",
            "--registry",
            registry.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--db",
            "store.db",
            "--listen",
            &listen,
        ],
        dir.path(),
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let mut duty = TestClient::connect(port, "duty-console", &["riskwatch/v1/alerts/#"]).await;

    // The same flood the replay test uses, published as a drill as fast as the broker takes it.
    let expected: Vec<String> = std::fs::read_to_string(fixture("expected-timeline.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let drill = Riskwatch::spawn(
        &[
            "replay",
            "--registry",
            registry.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            fixture("levels.csv").to_str().unwrap(),
            "--format",
            "yearbook",
            "--drill",
            "--mqtt",
            &listen,
            "--speed",
            "1e9",
        ],
        dir.path(),
    );
    let (code, out) = drill.wait_exit(Duration::from_secs(120));
    assert_eq!(code, 0, "replay --drill failed:\n{}", out.join("\n"));
    let line = out.iter().find(|l| l.contains("published")).unwrap_or_else(|| panic!("no summary in {out:?}"));
    assert!(line.contains("2308 readings"), "{line}");

    // Every alert of the flood reaches the duty console, marked.
    let got = duty.collect_until(Duration::from_secs(60), |ps| ps.len() >= expected.len()).await;
    assert_eq!(got.len(), expected.len(), "alert messages on MQTT: {got:?}");
    for p in &got {
        let e: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(e["exercise"], true, "{e}");
        assert!(e["alert_id"].as_str().unwrap().starts_with("exercise-"), "{e}");
        assert!(e["message_zh"].as_str().unwrap().starts_with("【演习】"), "{e}");
        assert!(e["message_en"].as_str().unwrap().starts_with("[EXERCISE] "), "{e}");
        // Published on the usual alert topics.
        let level = e["level"].as_str().unwrap();
        assert!(p.topic.starts_with(&format!("riskwatch/v1/alerts/{level}/")), "{}", p.topic);
    }

    // The store: every exercise event with the mark, the readings apart from real history.
    let db = dir.path().join("store.db");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&db, "SELECT count(*) FROM exercise_readings") < 2308 {
        assert!(Instant::now() < deadline, "exercise readings not all stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&db, "SELECT count(*) FROM alert_events WHERE change != 'reminder'") < expected.len() as i64 {
        assert!(Instant::now() < deadline, "alert events not all stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&db, "SELECT count(*) FROM readings"), 0, "real history untouched");
    assert_eq!(count(&db, "SELECT count(*) FROM alert_events WHERE exercise = 0"), 0);
    let marked = "SELECT count(*) FROM alert_events WHERE alert_id LIKE 'exercise-%' AND message_zh LIKE '【演习】%'";
    assert_eq!(count(&db, marked), count(&db, "SELECT count(*) FROM alert_events"));

    // An officer acknowledges an exercise alert by its (exercise-) id: the drill's engine
    // answers, marked; the live side knows nothing of it.
    let first: serde_json::Value = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(first["change"], "raised");
    let ack = serde_json::json!({
        "command_id": "drill-ack-1", "alert_id": first["alert_id"], "action": "acknowledge",
        "by": "duty-officer-wang", "note": "exercise", "site": first["site"],
    });
    duty.publish_acked("riskwatch/v1/commands", ack.to_string()).await;
    let acked = duty
        .collect_until(Duration::from_secs(20), |ps| {
            ps.iter().any(|p| String::from_utf8_lossy(&p.payload).contains("\"acknowledged\""))
        })
        .await;
    let ev = acked
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap())
        .find(|e| e["change"] == "acknowledged")
        .expect("an acknowledged event");
    assert_eq!(ev["alert_id"], first["alert_id"]);
    assert_eq!(ev["exercise"], true);
    assert_eq!(ev["by"], "duty-officer-wang");

    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "riskwatch run:\n{}", out.join("\n"));
}
