//! Call-response chains (叫应) end to end over real MQTT and real HTTP: `riskwatch run`
//! (embedded broker and rules) raises a red alert from readings, `riskwatch console --notify`
//! sends each tier's call to that tier's channels on a real local HTTP receiver — tier 1 at
//! once, tier 2 not before tier 1's deadline — and an acknowledgement over MQTT stops the chain:
//! no tier 3. The console's board shows where the alert is in its chain.

mod common;
#[path = "../sinks/tests/support.rs"]
mod support;

use common::duty::{start_console, start_pipeline, write_files, OPERATORS};
use common::TestClient;
use riskwatch_core::Timestamp;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WITHIN: Duration = Duration::from_secs(30);

/// The duty rules plus a red chain of three tiers with short answer times.
const CHAIN: &str = r#"
[[chains]]
id = "red-duty"
level = "red"
tiers = [
  { who = "duty officer", notify = ["sms-duty"], contacts = ["13800000001"], answer_within = "3s" },
  { who = "shift leader", notify = ["sms-leader"], answer_within = "3s" },
  { who = "bureau chief", notify = ["sms-chief"] },
]
"#;

fn reading(ts: i64, v: f64) -> String {
    json!({"kind": "water_level", "ts": ts, "unit": "m", "value": v}).to_string()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Wall-clock ms at which a request arrived (the receiver stamps an `Instant`).
fn arrived_ms(r: &support::Received) -> i64 {
    now_ms() - Instant::now().duration_since(r.at).as_millis() as i64
}

/// The calls received: (channel, alert id, tier, event).
fn calls(got: &[support::Received]) -> Vec<(String, String, u64, Value, i64)> {
    got.iter()
        .filter_map(|r| {
            let body = r.json();
            let e = body["event"].clone();
            (e["change"] == "called").then(|| {
                (
                    r.query.get("ch").cloned().unwrap_or_default(),
                    e["alert_id"].as_str().unwrap_or_default().to_string(),
                    e["details"]["call"]["tier"].as_u64().unwrap_or(0),
                    e.clone(),
                    arrived_ms(r),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_alert_walks_its_chain_until_it_is_acknowledged_over_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let rules = format!("{}{CHAIN}", common::duty::RULES);
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let hook = support::Receiver::start(vec![], (200, "ok")).await;
    // An SMS gateway over HTTP per tier (generic JSON webhooks), and a duty-room channel with
    // the default routing, which hears the alert but not the calls.
    let mut notify = String::from("dead_letter = \"dead.jsonl\"\n");
    for ch in ["sms-duty", "sms-leader", "sms-chief", "duty-room"] {
        notify.push_str(&format!(
            "[[channel]]\nid = \"{ch}\"\nurl = \"{}?ch={ch}\"\nformat = \"json\"\nmax_per_minute = 0\n",
            hook.url
        ));
    }
    std::fs::write(dir.path().join("notify.toml"), notify).unwrap();
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &["--notify", "notify.toml"]);
    let mut gw = TestClient::connect(port, "gw-hankou", &[]).await;

    // Red from the readings: tier 1 at once, on its own channel only.
    let t0 = now_ms();
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(t0, 29.4)).await;
    let got = hook.wait(WITHIN, |g| !calls(g).is_empty()).await;
    let first = calls(&got);
    let (ch, alert, tier, e1, _) = &first[0];
    assert_eq!((ch.as_str(), *tier), ("sms-duty", 1), "{first:?}");
    assert_eq!(e1["details"]["call"]["who"], "duty officer");
    assert_eq!(e1["details"]["call"]["contacts"], json!(["13800000001"]));
    assert_eq!(e1["level"], "red");
    let deadline1 = Timestamp::parse_rfc3339(e1["details"]["call"]["deadline"].as_str().unwrap()).unwrap().millis();
    let called1 = Timestamp::parse_rfc3339(e1["ts"].as_str().unwrap()).unwrap().millis();
    assert_eq!(deadline1 - called1, 3_000, "tier 1 has 3 s to answer");

    // Nobody answers: tier 2 on its channel, not before tier 1's deadline.
    let got = hook.wait(WITHIN, |g| calls(g).iter().any(|c| c.2 == 2)).await;
    let (ch, alert2, _, e2, arrived2) = calls(&got).into_iter().find(|c| c.2 == 2).unwrap();
    assert_eq!((ch.as_str(), alert2.as_str()), ("sms-leader", alert.as_str()), "same alert, tier 2's channel");
    assert_eq!(e2["details"]["call"]["who"], "shift leader");
    let called2 = Timestamp::parse_rfc3339(e2["ts"].as_str().unwrap()).unwrap().millis();
    assert!(called2 >= deadline1, "tier 2 called {} ms before tier 1's deadline", deadline1 - called2);
    assert!(arrived2 >= deadline1, "tier 2 arrived {} ms before tier 1's deadline", deadline1 - arrived2);
    assert!(called2 - deadline1 < 5_000, "tier 2 called {} ms after its deadline", called2 - deadline1);
    let deadline2 = Timestamp::parse_rfc3339(e2["details"]["call"]["deadline"].as_str().unwrap()).unwrap().millis();

    // The console's board says where the alert is in its chain.
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let (name, _, password) = OPERATORS[1];
    let r = http.post(format!("{base}/api/login")).json(&json!({"name": name, "password": password})).send().await;
    assert!(r.unwrap().status().is_success());
    let deadline = Instant::now() + WITHIN;
    loop {
        let board: Value = http.get(format!("{base}/api/alerts")).send().await.unwrap().json().await.unwrap();
        let calls = board["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["alert_id"] == alert.as_str()))
            .map(|a| a["calls"].clone());
        if calls.as_ref().and_then(|c| c.as_array()).is_some_and(|c| c.len() == 2) {
            assert_eq!(calls.unwrap()[1]["who"], "shift leader");
            break;
        }
        assert!(Instant::now() < deadline, "board never showed two calls: {board}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The shift leader acknowledges over MQTT (wire-format.md §9), before tier 2's deadline.
    let mut officer = TestClient::connect(port, "duty-console", &["riskwatch/v1/alerts/#"]).await;
    let ack = json!({"command_id": "ack-1", "alert_id": alert, "action": "acknowledge", "by": "leader wang", "site": "hankou"});
    officer.publish_acked("riskwatch/v1/commands", ack.to_string()).await;
    let seen = officer
        .collect_until(WITHIN, |ps| {
            ps.iter().any(|p| serde_json::from_slice::<Value>(&p.payload).is_ok_and(|e| e["change"] == "acknowledged"))
        })
        .await;
    let acked = seen
        .iter()
        .filter_map(|p| serde_json::from_slice::<Value>(&p.payload).ok())
        .find(|e| e["change"] == "acknowledged")
        .expect("the acknowledgement comes back as an event");
    assert_eq!(acked["details"]["call"]["tier"], 2, "the acknowledgement answers tier 2: {acked}");
    let acked_at = Timestamp::parse_rfc3339(acked["ts"].as_str().unwrap()).unwrap().millis();
    assert!(
        acked_at < deadline2,
        "acknowledged {} ms after tier 2's deadline; too slow a machine",
        acked_at - deadline2
    );

    // A second red alert (another sensor would do; a new rise of the same one after it clears is
    // simplest) walks the same chain; once its tier 3 reaches the chief's channel — whose queue
    // would have carried the first alert's tier 3 earlier, as that was due sooner — the first
    // alert's chain has certainly had its chance to call tier 3, and did not.
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(now_ms(), 27.0)).await;
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(now_ms() + 1, 29.4)).await;
    let got = hook
        .wait(Duration::from_secs(60), |g| calls(g).iter().any(|c| c.1 != *alert && c.2 == 3 && c.0 == "sms-chief"))
        .await;
    let all = calls(&got);
    let first_alert: Vec<u64> = all.iter().filter(|c| c.1 == *alert).map(|c| c.2).collect();
    assert_eq!(first_alert, [1, 2], "the acknowledged alert's chain stopped at tier 2");
    assert!(
        !got.iter()
            .any(|r| r.query.get("ch").is_some_and(|c| c == "duty-room") && r.json()["event"]["change"] == "called"),
        "calls go to the tiers' channels only"
    );
    assert!(
        got.iter()
            .any(|r| r.query.get("ch").is_some_and(|c| c == "duty-room") && r.json()["event"]["change"] == "raised"),
        "the duty room hears the alert itself"
    );
}
