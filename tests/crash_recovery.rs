//! Exact recovery of the embedded wiring after `kill -9`, over the real binary: an orange alert
//! with short reminders, the process killed at several moments (just after a reminder was
//! delivered, and at delays before the first 5-s save of the rule state), restarted on the same
//! store, then a red reading. The red reading must escalate the **same** alert with the next
//! `seq` (not raise a second alert); no `event_id` may ever be delivered with two different
//! contents; the retained alert state and the duty console's board must show one red alert.

mod common;

use common::duty::{hash, start_console};
use common::{assert_each_once, free_port, Riskwatch, TestClient};
use riskwatch_core::{AlertEvent, AlertState};
use rumqttc::QoS;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(30);

const REGISTRY: &str = r#"
[[sites]]
id = "river"
[[sensors]]
id = "wl-1"
site = "river"
kind = "water_level"
unit = "m"
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
remind = { orange = "1s", red = "1s" }
levels = { blue = "warning_level - 1", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
"#;

fn reading(value: f64) -> String {
    // Event time now: reminders and delays run on the processing clock either way.
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    json!({"kind": "water_level", "ts": ts, "unit": "m", "value": value}).to_string()
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

/// Every alert event the subscribers received, checked as it arrives: an `event_id` seen before
/// must come with the same content. Across a crash an event may come again (at-least-once);
/// to one subscriber, within one run, each comes once.
#[derive(Default)]
struct Received {
    by_id: HashMap<String, AlertEvent>,
    all: Vec<AlertEvent>,
    /// Event ids the current subscriber received, in order.
    session: Vec<String>,
}

impl Received {
    fn take(&mut self, publishes: &[rumqttc::Publish]) {
        for p in publishes.iter().filter(|p| p.topic.starts_with("riskwatch/v1/alerts/")) {
            let e: AlertEvent = serde_json::from_slice(&p.payload).unwrap();
            if let Some(seen) = self.by_id.get(&e.event_id) {
                assert_eq!(seen, &e, "event id {} delivered twice with different content", e.event_id);
            }
            self.by_id.insert(e.event_id.clone(), e.clone());
            self.session.push(e.event_id.clone());
            self.all.push(e);
        }
    }

    /// Checks, counting per event id, that the current subscriber received each event once.
    fn end_session(&mut self, what: &str) {
        let ids = std::mem::take(&mut self.session);
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_each_once(what, ids.iter(), distinct);
    }
}

async fn subscribe(port: u16, id: &str) -> TestClient {
    TestClient::connect(port, id, &["riskwatch/v1/alerts/#"]).await
}

/// Retained alert states a new subscriber gets (subscribe, then a sentinel after the SubAck).
async fn retained_states(port: u16, id: &str) -> Vec<AlertState> {
    let mut c = TestClient::connect(port, id, &["test/sentinel", "riskwatch/v1/state/#"]).await;
    c.client.publish("test/sentinel", QoS::AtLeastOnce, false, "x").await.unwrap();
    let got = c.collect_until(WITHIN, |ps| ps.iter().any(|p| p.topic == "test/sentinel")).await;
    // One state per topic (one topic per alert), the latest: a state published while the probe
    // subscribes reaches it both retained and live; an empty payload is a removal (cleared).
    let mut by_topic: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
    for p in got.into_iter().filter(|p| p.topic.starts_with("riskwatch/v1/state/")) {
        by_topic.insert(p.topic, p.payload.to_vec());
    }
    by_topic.into_values().filter(|p| !p.is_empty()).map(|p| serde_json::from_slice(&p).unwrap()).collect()
}

enum KillAt {
    /// This long after the orange alert was delivered.
    After(Duration),
    /// Right after the first reminder of the orange alert was delivered.
    JustAfterReminder,
}

async fn crash_and_escalate(kill_at: KillAt, with_console: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let mut rw = start(dir.path(), port);
    let console = with_console.then(|| {
        std::fs::write(
            dir.path().join("users.toml"),
            format!(
                "[[user]]\nname = \"duty\"\ndisplay_name = \"duty\"\nrole = \"officer\"\npassword_hash = \"{}\"\n",
                hash("duty-pass-1")
            ),
        )
        .unwrap();
        start_console(dir.path(), port, &[])
    });
    let mut received = Received::default();
    let mut sub = subscribe(port, "crash-sub-1").await;
    let mut gw = TestClient::connect(port, "crash-gw-1", &[]).await;
    gw.publish_acked("riskwatch/v1/readings/river/wl-1", reading(12.5)).await;
    let got =
        sub.collect_until(WITHIN, |ps| ps.iter().any(|p| p.topic.starts_with("riskwatch/v1/alerts/orange/"))).await;
    received.take(&got);
    let orange = received.all.iter().find(|e| e.change.as_str() == "raised").expect("orange raised").clone();
    assert_eq!(orange.level.as_str(), "orange");
    match kill_at {
        KillAt::After(d) => {
            // The moment of the kill is what this case is about.
            tokio::time::sleep(d).await;
            let got = sub.collect_until(Duration::from_millis(1), |_| false).await;
            received.take(&got);
        }
        KillAt::JustAfterReminder => {
            let got = sub
                .collect_until(WITHIN, |ps| ps.iter().any(|p| p.payload.windows(10).any(|w| w == b"\"reminder\"")))
                .await;
            received.take(&got);
            assert!(received.all.iter().any(|e| e.change.as_str() == "reminder"), "no reminder before the kill");
        }
    }
    received.end_session("alert events at the first subscriber, before the kill (by event id)");
    // kill -9, and gone (its listening port free) before the restart binds the same port.
    rw.child.kill().unwrap();
    rw.child.wait().unwrap();
    drop(rw);
    drop(sub);
    drop(gw);

    let rw = start(dir.path(), port);
    let mut sub = subscribe(port, "crash-sub-2").await;
    let states = retained_states(port, "crash-state-1").await;
    assert_eq!(states.len(), 1, "after the restart, the retained state holds the open alert: {states:?}");
    assert_eq!(states[0].alert_id, orange.alert_id);
    let mut gw = TestClient::connect(port, "crash-gw-2", &[]).await;
    gw.publish_acked("riskwatch/v1/readings/river/wl-1", reading(14.5)).await;
    let got = sub
        .collect_until(WITHIN, |ps| {
            ps.iter().any(|p| {
                p.topic.starts_with("riskwatch/v1/alerts/red/") && p.payload.windows(11).any(|w| w == b"\"escalated\"")
            })
        })
        .await;
    received.take(&got);
    let red = received
        .all
        .iter()
        .find(|e| e.change.as_str() == "escalated")
        .unwrap_or_else(|| panic!("no escalation after the restart; received: {:#?}", received.all))
        .clone();
    assert_eq!(red.level.as_str(), "red");
    assert_eq!(red.alert_id, orange.alert_id, "the red reading escalates the open alert, not a new one");
    // Up to the event after the escalation (a red reminder; one connection keeps the order, so a
    // copy of the escalation would have come before it): one escalation, received once.
    let got = sub
        .collect_until(WITHIN, |ps| {
            ps.iter().any(|p| {
                serde_json::from_slice::<AlertEvent>(&p.payload)
                    .is_ok_and(|e| e.alert_id == red.alert_id && e.seq > red.seq)
            })
        })
        .await;
    received.take(&got);
    assert!(received.all.iter().any(|e| e.seq > red.seq), "no event after the escalation: {:#?}", received.all);
    assert_each_once(
        "escalations of the gauge's alert (by event id)",
        received.all.iter().filter(|e| e.change.as_str() == "escalated").map(|e| e.event_id.as_str()),
        [red.event_id.as_str()],
    );
    received.end_session("alert events at the second subscriber, after the restart (by event id)");
    // The next seq after everything the alert had before: the store holds each seq once.
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let seqs: Vec<i64> = db
        .prepare("SELECT seq FROM alert_events WHERE alert_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([&orange.alert_id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let red_seq = i64::from(red.seq);
    let before: Vec<i64> = seqs.iter().copied().filter(|s| *s < red_seq).collect();
    assert_eq!(before, (0..red_seq).collect::<Vec<_>>(), "seqs before the escalation: {seqs:?}");
    let alerts: i64 = db.query_row("SELECT count(DISTINCT alert_id) FROM alert_events", [], |r| r.get(0)).unwrap();
    assert_eq!(alerts, 1, "one alert about the gauge, ever");
    // What the store kept under each id is what subscribers were sent under it.
    for (id, e) in &received.by_id {
        let json: String =
            db.query_row("SELECT event_json FROM alert_events WHERE event_id = ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(&serde_json::from_str::<AlertEvent>(&json).unwrap(), e, "stored {id}");
    }
    let deadline = Instant::now() + WITHIN;
    loop {
        let states = retained_states(port, "crash-state-2").await;
        if states.len() == 1 && states[0].level.as_str() == "red" {
            assert_eq!(states[0].alert_id, orange.alert_id);
            break;
        }
        assert!(Instant::now() < deadline, "retained state is not one red alert: {states:?}");
    }
    if let Some((_console, base)) = console {
        let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let r = http
            .post(format!("{base}/api/login"))
            .json(&json!({"name": "duty", "password": "duty-pass-1"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let deadline = Instant::now() + WITHIN;
        loop {
            let board: Value = http.get(format!("{base}/api/alerts")).send().await.unwrap().json().await.unwrap();
            let alerts = board["alerts"].as_array().cloned().unwrap_or_default();
            if alerts.len() == 1 && alerts[0]["level"] == "red" {
                assert_eq!(alerts[0]["alert_id"], orange.alert_id.as_str());
                break;
            }
            assert!(Instant::now() < deadline, "console board is not one red alert: {alerts:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(rw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_just_after_a_reminder_the_restarted_pipeline_escalates_the_same_alert() {
    crash_and_escalate(KillAt::JustAfterReminder, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_before_or_after_the_state_is_saved_the_restart_escalates_the_same_alert() {
    for ms in [300, 1_000, 2_200, 4_100, 6_500] {
        crash_and_escalate(KillAt::After(Duration::from_millis(ms)), false).await;
    }
}
