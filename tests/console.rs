//! The duty console end to end over real MQTT and HTTP: `riskwatch run` (embedded broker and
//! rules) and `riskwatch console --notify` in front of it. The retained alert-state topic,
//! login and roles, acknowledge / resolve through the pipeline with refusals reported, history,
//! the audit log, CAP download and webhook notifications; an admin managing the operators.

mod common;
mod servers;
#[path = "../sinks/tests/support.rs"]
mod support;

use common::duty::{start_console, start_pipeline, write_files, OPERATORS};
use common::TestClient;
use reqwest::StatusCode;
use riskwatch_core::AlertState;
use rumqttc::QoS;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const T0: i64 = 1_594_051_200_000;
const WITHIN: Duration = Duration::from_secs(30);

fn reading(minute: i64, v: f64) -> String {
    json!({"kind": "water_level", "ts": T0 + minute * 60_000, "unit": "m", "value": v}).to_string()
}

/// Retained messages on `riskwatch/v1/state/#` a new subscriber gets: subscribe, then publish a
/// sentinel after the SubAck; every retained message arrives before it.
async fn retained_states(port: u16, id: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = TestClient::connect(port, id, &["test/sentinel", "riskwatch/v1/state/#"]).await;
    c.client.publish("test/sentinel", QoS::AtLeastOnce, false, "x").await.unwrap();
    let got = c.collect_until(WITHIN, |ps| ps.iter().any(|p| p.topic == "test/sentinel")).await;
    assert!(got.iter().any(|p| p.topic == "test/sentinel"), "sentinel not received");
    // One entry per topic, the latest: a probe reconnecting under the same id may get a state
    // both as queued for its earlier session and as the retained message; an empty payload is
    // a removal (the alert cleared).
    let mut by_topic: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
    for p in got.into_iter().filter(|p| p.topic.starts_with("riskwatch/v1/state/")) {
        by_topic.insert(p.topic, p.payload.to_vec());
    }
    by_topic.into_iter().filter(|(_, payload)| !payload.is_empty()).collect()
}

async fn login(base: &str, name: &str, password: &str) -> (reqwest::Client, StatusCode) {
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r =
        http.post(format!("{base}/api/login")).json(&json!({"name": name, "password": password})).send().await.unwrap();
    (http, r.status())
}

async fn get(http: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls the board until `done` holds.
async fn wait_board(http: &reqwest::Client, base: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (_, b) = get(http, format!("{base}/api/alerts")).await;
        let alerts = b["alerts"].as_array().cloned().unwrap_or_default();
        if done(&alerts) {
            return alerts;
        }
        assert!(Instant::now() < deadline, "board condition not met; board: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_work_an_alert_from_the_console_and_everything_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let hook = support::Receiver::start(vec![], (200, "ok")).await;
    std::fs::write(
        dir.path().join("notify.toml"),
        format!(
            "dead_letter = \"dead.jsonl\"\n[[channel]]\nid = \"duty-room\"\nurl = \"{}\"\nformat = \"json\"\n",
            hook.url
        ),
    )
    .unwrap();
    let (_rw, port) = start_pipeline(dir.path());
    let mut gw = TestClient::connect(port, "gw-hankou", &[]).await;

    // An alert raised before the console starts: the retained state topic carries it.
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(0, 27.6)).await;
    let deadline = Instant::now() + WITHIN;
    let states = loop {
        let s = retained_states(port, "probe-1").await;
        if !s.is_empty() || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let topics: Vec<&String> = states.iter().map(|(t, _)| t).collect();
    assert_eq!(states.len(), 1, "one retained state for the one active alert: {topics:?}");
    let state: AlertState = serde_json::from_slice(&states[0].1).unwrap();
    assert_eq!(state.level.as_str(), "yellow");
    assert!(state.active && state.acknowledged_by.is_none());
    assert_eq!(states[0].0, format!("riskwatch/v1/state/hankou/hankou-wl/{}", state.alert_id));
    let id = state.alert_id.clone();

    let (_console, base) = start_console(dir.path(), port, &["--notify", "notify.toml"]);

    // Not logged in: nothing.
    let anon = reqwest::Client::new();
    assert_eq!(get(&anon, format!("{base}/api/alerts")).await.0, StatusCode::UNAUTHORIZED);
    // Wrong password.
    let (_, st) = login(&base, "li.wei", "wrong").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A viewer sees the alert (learned from the retained state) but may not act.
    let (viewer, st) = login(&base, OPERATORS[1].0, OPERATORS[1].2).await;
    assert_eq!(st, StatusCode::OK);
    let board = wait_board(&viewer, &base, |a| a.iter().any(|x| x["alert_id"] == id.as_str())).await;
    assert_eq!(board[0]["level"], "yellow");
    let (st, body) = post(&viewer, format!("{base}/api/alerts/{id}/acknowledge"), json!({"note": "seen"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(get(&viewer, format!("{base}/api/audit")).await.0, StatusCode::FORBIDDEN);

    // The officer escalates nothing but the river does: orange, live on the board.
    let (officer, st) = login(&base, OPERATORS[0].0, OPERATORS[0].2).await;
    assert_eq!(st, StatusCode::OK);
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(10, 28.7)).await;
    wait_board(&officer, &base, |a| a.iter().any(|x| x["alert_id"] == id.as_str() && x["level"] == "orange")).await;

    // Acknowledge: goes through the pipeline, comes back as its event.
    let (st, body) =
        post(&officer, format!("{base}/api/alerts/{id}/acknowledge"), json!({"note": "防汛队伍已出发"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["change"], "acknowledged");
    assert_eq!(body["event"]["by"], "li.wei");
    wait_board(&officer, &base, |a| a.iter().any(|x| x["alert_id"] == id.as_str() && x["acknowledged_by"] == "li.wei"))
        .await;
    // Assign needs a unit; resolve while still active is refused by the engine, with its reason.
    let (st, _) = post(&officer, format!("{base}/api/alerts/{id}/assign"), json!({"note": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) =
        post(&officer, format!("{base}/api/alerts/{id}/assign"), json!({"unit": "江岸区防汛办", "note": "巡堤"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = post(&officer, format!("{base}/api/alerts/{id}/resolve"), json!({"note": "too early"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(!body["message"].as_str().unwrap_or_default().is_empty());

    // The river falls: cleared, the retained state is removed, the board keeps it to close.
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(20, 26.5)).await;
    wait_board(&officer, &base, |a| a.iter().any(|x| x["alert_id"] == id.as_str() && x["active"] == false)).await;
    let deadline = Instant::now() + WITHIN;
    loop {
        if retained_states(port, "probe-2").await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "retained state not removed after the alert cleared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, body) =
        post(&officer, format!("{base}/api/alerts/{id}/resolve"), json!({"note": "水位回落，巡堤结束"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    wait_board(&officer, &base, |a| !a.iter().any(|x| x["alert_id"] == id.as_str())).await;

    // History: the alert's life since the console started (it learned of the raise from the
    // retained state), searchable.
    let (st, h) = get(&officer, format!("{base}/api/history?site=hankou&limit=50")).await;
    assert_eq!(st, StatusCode::OK);
    let mut seen: Vec<(u64, &str)> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["change"].as_str().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, [(1, "escalated"), (2, "acknowledged"), (3, "assigned"), (4, "cleared"), (5, "resolved")]);
    let (_, h) = get(&officer, format!("{base}/api/history?q=%E5%B7%A1%E5%A0%A4")).await; // "巡堤"
    assert!(!h["events"].as_array().unwrap().is_empty(), "text search finds the officer's note");
    assert_eq!(get(&officer, format!("{base}/api/history?from=yesterday")).await.0, StatusCode::BAD_REQUEST);

    // Detail and CAP.
    let (_, d) = get(&officer, format!("{base}/api/alerts/{id}")).await;
    assert_eq!(d["events"].as_array().unwrap().len(), 5);
    assert_eq!(d["readings"].as_array().unwrap().len(), 2, "the chart has the readings since the console started");
    let cap = officer.get(format!("{base}/api/alerts/{id}/cap.xml")).send().await.unwrap().text().await.unwrap();
    let doc = roxmltree::Document::parse(&cap).unwrap();
    let msg_type = doc.descendants().find(|n| n.has_tag_name("msgType")).unwrap().text().unwrap();
    assert_eq!(msg_type, "Update");

    // The audit log: who did what, with the pipeline's answer.
    let (st, a) = get(&officer, format!("{base}/api/audit")).await;
    assert_eq!(st, StatusCode::OK);
    let log: Vec<(String, String, String)> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["user"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    let has = |user: &str, action: &str, outcome: &str| {
        log.iter().any(|(u, a, o)| u == user && a == action && o.starts_with(outcome))
    };
    assert!(has("li.wei", "login_failed", "wrong name or password"), "{log:?}");
    assert!(has("guest", "login", "ok"), "{log:?}");
    assert!(has("li.wei", "acknowledge", "ok"), "{log:?}");
    assert!(has("li.wei", "assign", "ok"), "{log:?}");
    assert!(has("li.wei", "resolve", "refused: "), "{log:?}");
    assert!(has("li.wei", "resolve", "ok"), "{log:?}");
    assert!(!log.iter().any(|(u, a, _)| u == "guest" && a == "acknowledge"), "a forbidden action is not sent");

    // Admin's operator list; officers may not see it.
    assert_eq!(get(&officer, format!("{base}/api/users")).await.0, StatusCode::FORBIDDEN);
    let (admin, _) = login(&base, OPERATORS[2].0, OPERATORS[2].2).await;
    let (st, u) = get(&admin, format!("{base}/api/users")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(u["users"].as_array().unwrap().len(), 3);
    assert!(!u.to_string().contains("argon2"), "no password hashes leave the server");

    // The webhook heard the escalation and the clear (default routing), once each.
    let got = hook.wait(WITHIN, |g| g.iter().filter(|r| r.json()["event"]["change"] == "cleared").count() == 1).await;
    let changes: Vec<String> = got.iter().map(|r| r.json()["event"]["change"].as_str().unwrap().to_string()).collect();
    assert!(changes.contains(&"escalated".to_string()), "{changes:?}");
    assert_eq!(changes.iter().filter(|c| *c == "cleared").count(), 1);

    // The console's own metrics and readiness tell the same story.
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), StatusCode::OK);
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let sample = |series: &str| -> f64 {
        servers::metric_sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert_eq!(sample("riskwatch_console_actions_total{action=\"acknowledge\",result=\"ok\"}"), 1.0);
    assert_eq!(sample("riskwatch_console_actions_total{action=\"resolve\",result=\"refused\"}"), 1.0);
    assert_eq!(sample("riskwatch_console_actions_total{action=\"resolve\",result=\"ok\"}"), 1.0);
    assert_eq!(sample("riskwatch_console_actions_total{action=\"login_failed\",result=\"refused\"}"), 1.0);
    assert!(sample("riskwatch_notifications_delivered_total{channel=\"duty-room\"}") >= 2.0, "{text}");
    assert_eq!(sample("riskwatch_notifications_dead_lettered_total{channel=\"duty-room\"}"), 0.0);
    assert_eq!(servers::undocumented_metrics(&text), Vec::<String>::new(), "every metric is in docs/operations.md");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_api_says_where_every_site_is_and_serves_the_deployers_own_basemap() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    // The plant is placed in the registry; Hankou only through its gauge's location.
    let registry = common::duty::REGISTRY.replace(
        "name_zh = \"甲化工厂\"\n",
        "name_zh = \"甲化工厂\"\nlocation = { lat = 32.26, lon = 118.82 }\ndivision = \"320116\"\n",
    );
    assert!(registry.contains("320116"), "the duty registry changed: place plant-a again");
    std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
    let approved = json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name_zh": "审定底图"},
        "geometry": {"type": "Polygon", "coordinates": [[[114.0, 30.0], [115.0, 30.0], [115.0, 31.0], [114.0, 30.0]]]}}]})
    .to_string();
    std::fs::write(dir.path().join("approved.geojson"), &approved).unwrap();
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &["--basemap", "approved.geojson"]);

    // Like every API route, only after login.
    let anon = reqwest::Client::new();
    assert_eq!(get(&anon, format!("{base}/api/sites")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.get(format!("{base}/basemap.geojson")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let (viewer, st) = login(&base, OPERATORS[1].0, OPERATORS[1].2).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = get(&viewer, format!("{base}/api/sites")).await;
    assert_eq!(st, StatusCode::OK);
    let site = |id: &str| body["sites"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap();
    let plant = site("plant-a");
    assert_eq!(
        (&plant["lat"], &plant["lon"], &plant["division"], &plant["located"], &plant["name_zh"]),
        (&json!(32.26), &json!(118.82), &json!("320116"), &json!("site"), &json!("甲化工厂"))
    );
    let hankou = site("hankou");
    assert_eq!(
        (&hankou["lat"], &hankou["lon"], &hankou["division"], &hankou["located"]),
        (&json!(30.58), &json!(114.29), &Value::Null, &json!("sensors")),
        "placed at its sensors' mean"
    );

    // The deployer's outlines, not the shipped ones.
    let r = viewer.get(format!("{base}/basemap.geojson")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    assert_eq!(r.text().await.unwrap(), approved);
}

async fn send(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> (StatusCode, Value) {
    let r = http.request(method, url).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_operators_and_the_users_file_sessions_and_audit_log_follow() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &[]);
    let users_toml = dir.path().join("users.toml");
    let (admin, st) = login(&base, OPERATORS[2].0, OPERATORS[2].2).await;
    assert_eq!(st, StatusCode::OK);
    let (officer, _) = login(&base, OPERATORS[0].0, OPERATORS[0].2).await;
    let users_url = format!("{base}/api/users");
    let user_url = |name: &str| format!("{base}/api/users/{name}");

    // Officers (and anyone else not admin) may not manage operators.
    let new_one =
        json!({"name": "wang.fang", "display_name": "王芳", "role": "officer", "password": "flood-season-2026"});
    for (method, url, body) in [
        (Method::GET, users_url.clone(), Value::Null),
        (Method::POST, users_url.clone(), new_one.clone()),
        (Method::PATCH, user_url("guest"), json!({"role": "admin"})),
        (Method::POST, user_url("guest") + "/password", json!({"password": "0123456789ab"})),
        (Method::DELETE, user_url("guest"), json!({})),
    ] {
        let (st, body) = send(&officer, method.clone(), url.clone(), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {url}: {body}");
        assert_eq!(body["error"], "forbidden");
    }

    // Bad input is refused with the reason, in the API's error shape.
    let (st, list) = get(&admin, users_url.clone()).await;
    assert_eq!(st, StatusCode::OK);
    let v0 = list["version"].as_str().unwrap().to_string();
    let mut short = new_one.clone();
    short["password"] = json!("short-pw1");
    let (st, body) = send(&admin, Method::POST, users_url.clone(), short).await;
    assert_eq!((st, &body["error"]), (StatusCode::BAD_REQUEST, &json!("bad_password")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("at least 10 characters"), "{body}");
    let mut dup = new_one.clone();
    dup["name"] = json!("li.wei");
    let (st, body) = send(&admin, Method::POST, users_url.clone(), dup).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("duplicate_name")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("li.wei"), "{body}");
    let mut spaced = new_one.clone();
    spaced["name"] = json!("wang fang");
    let (st, body) = send(&admin, Method::POST, users_url.clone(), spaced).await;
    assert_eq!((st, &body["error"]), (StatusCode::BAD_REQUEST, &json!("bad_name")), "{body}");

    // Added: on disk (hashed, mode 0600), and the new officer logs in and acknowledges.
    let mut add = new_one.clone();
    add["version"] = json!(v0);
    let (st, body) = send(&admin, Method::POST, users_url.clone(), add).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"], json!({"name": "wang.fang", "display_name": "王芳", "role": "officer"}));
    let on_disk = std::fs::read_to_string(&users_toml).unwrap();
    assert!(on_disk.contains("name = \"wang.fang\"") && on_disk.contains("$argon2id$"), "{on_disk}");
    assert!(!on_disk.contains("flood-season-2026"), "no plain password in the users file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&users_toml).unwrap().permissions().mode() & 0o777, 0o600);
    // A change made on the list as it was before is refused: someone changed the file since.
    let (st, body) = send(&admin, Method::DELETE, user_url("guest"), json!({"version": v0})).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("stale")), "{body}");

    let (wang, st) = login(&base, "wang.fang", "flood-season-2026").await;
    assert_eq!(st, StatusCode::OK);
    let mut gw = TestClient::connect(port, "gw-hankou", &[]).await;
    gw.publish_acked("riskwatch/v1/readings/hankou/hankou-wl", reading(0, 27.6)).await;
    let board = wait_board(&wang, &base, |a| !a.is_empty()).await;
    let id = board[0]["alert_id"].as_str().unwrap().to_string();
    let (st, body) = post(&wang, format!("{base}/api/alerts/{id}/acknowledge"), json!({"note": "王芳已确认"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["by"], "wang.fang");

    // A role change ends their session at once; logged in again they have the new role.
    let (st, body) = send(&admin, Method::PATCH, user_url("wang.fang"), json!({"role": "viewer"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(get(&wang, format!("{base}/api/me")).await.0, StatusCode::UNAUTHORIZED);
    let (wang, _) = login(&base, "wang.fang", "flood-season-2026").await;
    let (_, me) = get(&wang, format!("{base}/api/me")).await;
    assert_eq!(me["role"], "viewer");

    // A password reset: the old one no longer works, the new one does.
    let (st, body) =
        send(&admin, Method::POST, user_url("wang.fang") + "/password", json!({"password": "short"})).await;
    assert_eq!((st, &body["error"]), (StatusCode::BAD_REQUEST, &json!("bad_password")), "{body}");
    let (st, body) =
        send(&admin, Method::POST, user_url("wang.fang") + "/password", json!({"password": "levee-watch-night"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(get(&wang, format!("{base}/api/me")).await.0, StatusCode::UNAUTHORIZED, "a reset ends their sessions");
    assert_eq!(login(&base, "wang.fang", "flood-season-2026").await.1, StatusCode::UNAUTHORIZED);
    let (wang, st) = login(&base, "wang.fang", "levee-watch-night").await;
    assert_eq!(st, StatusCode::OK);

    // The last admin stays: root can neither demote nor remove itself, nor can another admin
    // remove the last one; with two admins, still nobody demotes themselves.
    let (st, body) = send(&admin, Method::PATCH, user_url("root"), json!({"role": "officer"})).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("last_admin")), "{body}");
    let (st, body) = send(&admin, Method::DELETE, user_url("root"), json!({})).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("last_admin")), "{body}");
    let (st, body) =
        send(&admin, Method::PATCH, user_url("li.wei"), json!({"role": "admin", "display_name": "李伟"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = send(&admin, Method::PATCH, user_url("root"), json!({"role": "officer"})).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("own_account")), "{body}");
    let (li, _) = login(&base, OPERATORS[0].0, OPERATORS[0].2).await;
    let (st, body) = send(&li, Method::DELETE, user_url("root"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "another admin may remove root: {body}");
    assert_eq!(get(&admin, format!("{base}/api/me")).await.0, StatusCode::UNAUTHORIZED, "root's session ended");
    let (st, body) = send(&li, Method::DELETE, user_url("li.wei"), json!({})).await;
    assert_eq!((st, &body["error"]), (StatusCode::CONFLICT, &json!("last_admin")), "{body}");

    // Removed: their session ends at once and they are gone from the file.
    let (st, body) = send(&li, Method::DELETE, user_url("wang.fang"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(get(&wang, format!("{base}/api/me")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&base, "wang.fang", "levee-watch-night").await.1, StatusCode::UNAUTHORIZED);
    let on_disk = std::fs::read_to_string(&users_toml).unwrap();
    assert!(!on_disk.contains("wang.fang") && !on_disk.contains("name = \"root\""), "{on_disk}");
    assert!(on_disk.contains("display_name = \"李伟\""), "{on_disk}");
    let (st, body) = send(&li, Method::DELETE, user_url("wang.fang"), json!({})).await;
    assert_eq!((st, &body["error"]), (StatusCode::NOT_FOUND, &json!("unknown_user")), "{body}");

    // The audit log: who changed whom, the outcome, never a password.
    let (st, a) = get(&li, format!("{base}/api/audit?limit=500")).await;
    assert_eq!(st, StatusCode::OK);
    let entries = a["entries"].as_array().unwrap();
    let has = |user: &str, action: &str, detail: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["user"] == user
                && e["action"] == action
                && e["detail"].as_str().unwrap().contains(detail)
                && e["outcome"].as_str().unwrap().starts_with(outcome)
        })
    };
    assert!(has("root", "user_add", "wang.fang", "ok"), "{a}");
    assert!(has("root", "user_add", "wang.fang", "refused: bad_password"), "{a}");
    assert!(has("root", "user_add", "li.wei", "refused: duplicate_name"), "{a}");
    assert!(has("root", "user_update", "wang.fang: set role viewer; 1 session(s) ended", "ok"), "{a}");
    assert!(has("root", "user_password", "wang.fang", "ok"), "{a}");
    assert!(has("root", "user_update", "root", "refused: last_admin"), "{a}");
    assert!(has("li.wei", "user_remove", "root", "ok"), "{a}");
    assert!(has("li.wei", "user_remove", "wang.fang", "ok"), "{a}");
    let text = a.to_string();
    for secret in ["flood-season-2026", "levee-watch-night", "short-pw1", "argon2"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
}

/// The out-of-service form's rule choices come from the rules file the console is given (the
/// ids the engine takes for a window on a rule); a window on another rule is refused by the
/// console, naming the choices, and one on a listed rule at a site is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_service_form_offers_the_engines_rules_and_refuses_others_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let (_rw, port) = start_pipeline(dir.path());
    let (_console, base) = start_console(dir.path(), port, &["--rules", "rules.toml"]);
    let (officer, st) = login(&base, OPERATORS[0].0, OPERATORS[0].2).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = get(&officer, format!("{base}/api/service/rules")).await;
    assert_eq!(st, StatusCode::OK);
    // The duty rules have no stale check: `dq.stale` is not offered (the engine would refuse it).
    assert_eq!(body, json!({"rules": ["water-level", "gas"], "configured": true}));
    let window =
        |rule: &str| json!({"target": "rule", "id": rule, "site": "hankou", "minutes": 30, "note": "datum change"});
    let (st, body) = post(&officer, format!("{base}/api/service/out_of_service"), window("flood")).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_rule")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("water-level, gas"), "{body}");
    let (st, body) = post(&officer, format!("{base}/api/service/out_of_service"), window("water-level")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}
