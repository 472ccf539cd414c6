//! Webhook notifications against a real local HTTP server: each payload format (with the
//! robots' signatures checked), retry after a 500, a 429's Retry-After honoured,
//! dead-letter after the retry budget or a robot's refusal, digests under an alert storm, and
//! routing.

mod support;

use base64::Engine as _;
use hmac::Mac as _;
use riskwatch_core::{AlertChange, AlertEvent, Level};
use riskwatch_sinks::webhook::{Notifier, NotifyConfig};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{flood_events, registry, Receiver};

const WITHIN: Duration = Duration::from_secs(20);

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn config(dead: &Path, channels: &str) -> NotifyConfig {
    let text =
        format!("dead_letter = {:?}\ncap_sender = \"riskwatch@test.example\"\n{channels}", dead.display().to_string());
    NotifyConfig::from_toml(&text).unwrap()
}

fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn raised(events: &[AlertEvent]) -> AlertEvent {
    events.iter().find(|e| e.change == AlertChange::Raised).unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_reaches_a_real_receiver_with_valid_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![], (200, r#"{"errcode":0,"code":0,"errmsg":"ok"}"#)).await;
    std::env::set_var("RW_TEST_DING_SECRET", "SECabc123");
    std::env::set_var("RW_TEST_FEISHU_SECRET", "feishu-secret");
    let url = &rx.url;
    let cfg = config(
        &dir.path().join("dead.jsonl"),
        &format!(
            r#"
[[channel]]
id = "json"
url = "{url}?ch=json"
format = "json"
[[channel]]
id = "ding"
url = "{url}?ch=ding&access_token=t"
format = "dingtalk"
secret = "env:RW_TEST_DING_SECRET"
[[channel]]
id = "wecom"
url = "{url}?ch=wecom&key=k"
format = "wecom"
[[channel]]
id = "feishu"
url = "{url}?ch=feishu"
format = "feishu"
secret = "env:RW_TEST_FEISHU_SECRET"
[[channel]]
id = "cap"
url = "{url}?ch=cap"
format = "cap"
"#
        ),
    );
    let mut n = Notifier::start(cfg, Some(std::sync::Arc::new(registry()))).unwrap();
    let e = raised(&flood_events(false));
    n.notify(&e);
    let got = rx.wait(WITHIN, |g| g.len() >= 5).await;
    let by = |ch: &str| got.iter().find(|r| r.query.get("ch").map(String::as_str) == Some(ch)).unwrap().clone();

    let json = by("json").json();
    assert_eq!(json["type"], "alert");
    assert_eq!(json["event"]["alert_id"], e.alert_id.as_str());
    assert_eq!(json["event"]["level"], "blue");

    let ding = by("ding");
    let body = ding.json();
    assert_eq!(body["msgtype"], "markdown");
    let title = body["markdown"]["title"].as_str().unwrap();
    assert!(title.contains("蓝色预警") && title.contains("汉口"), "level and the station's name: {body}");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("数值 Value: {}", e.value_text())), "the rounded value: {text}");
    assert!(body["markdown"]["text"].as_str().unwrap().contains(&e.message_zh));
    assert_eq!(body["at"]["isAtAll"], false, "only red mentions everyone by default");
    let ts = &ding.query["timestamp"];
    assert_eq!(ding.query["sign"], hmac_b64(b"SECabc123", format!("{ts}\nSECabc123").as_bytes()), "DingTalk signature");
    assert_eq!(ding.query["access_token"], "t", "the robot's own query survives");

    let wecom = by("wecom").json();
    assert_eq!(wecom["msgtype"], "markdown");
    assert!(wecom["markdown"]["content"].as_str().unwrap().contains(&e.message_en));

    let feishu = by("feishu").json();
    assert_eq!(feishu["msg_type"], "text");
    assert!(feishu["content"]["text"].as_str().unwrap().contains(&e.message_zh));
    let fts = feishu["timestamp"].as_str().unwrap();
    assert_eq!(feishu["sign"], hmac_b64(format!("{fts}\nfeishu-secret").as_bytes(), b""), "Feishu signature");

    let cap = by("cap");
    assert!(cap.headers["content-type"].to_str().unwrap().starts_with("application/cap+xml"));
    let xml = cap.text();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let text = |name: &str| {
        doc.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).unwrap_or_default().to_string()
    };
    assert_eq!(text("identifier"), e.event_id);
    assert_eq!(text("status"), "Actual");
    assert_eq!(text("severity"), "Minor");
    assert_eq!(text("areaDesc"), "汉口");
    n.close(WITHIN).await;
    assert!(dead_letters(&dir.path().join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_then_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![(500, "busy"), (500, "still busy")], (200, "ok")).await;
    let cfg = config(
        &dir.path().join("dead.jsonl"),
        &format!("[[channel]]\nid = \"ops\"\nurl = \"{}\"\nformat = \"json\"\nretries = 3\nbackoff_ms = 20\n", rx.url),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    let stats = n.stats()[0].1.clone();
    let e = raised(&flood_events(false));
    n.notify(&e);
    let got = rx.wait(WITHIN, |g| g.len() >= 3).await;
    n.close(WITHIN).await;
    assert_eq!(got.len(), 3, "two failures, then success; nothing more");
    assert!(
        got.iter().all(|r| r.json()["event"]["event_id"] == e.event_id.as_str()),
        "the same notification each time"
    );
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    assert!(dead_letters(&dir.path().join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    // backoff_ms = 20: without Retry-After the retry would come after 20–40 ms.
    let rx = Receiver::start_with_headers(
        vec![(429, "slow down", vec![("retry-after", "1")]), (503, "maintenance", vec![("Retry-After", "soon")])],
        (200, "ok"),
    )
    .await;
    let cfg = config(
        &dir.path().join("dead.jsonl"),
        &format!("[[channel]]\nid = \"ops\"\nurl = \"{}\"\nformat = \"json\"\nretries = 3\nbackoff_ms = 20\n", rx.url),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    let stats = n.stats()[0].1.clone();
    let e = raised(&flood_events(false));
    n.notify(&e);
    let got = rx.wait(WITHIN, |g| g.len() >= 3).await;
    n.close(WITHIN).await;
    assert_eq!(got.len(), 3, "429, then 503, then delivered; nothing more");
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 honoured, waited {waited:?}");
    let unreadable = got[2].at - got[1].at;
    assert!(
        unreadable < Duration::from_millis(900),
        "an unreadable Retry-After falls back to the backoff: {unreadable:?}"
    );
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1, "delivered once");
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert!(dead_letters(&dir.path().join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retry_budget_a_notification_is_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let rx = Receiver::start(vec![], (500, "database down")).await;
    let cfg = config(
        &dead,
        &format!("[[channel]]\nid = \"ops\"\nurl = \"{}\"\nformat = \"wecom\"\nretries = 2\nbackoff_ms = 20\n", rx.url),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    let stats = n.stats()[0].1.clone();
    let e = raised(&flood_events(false));
    n.notify(&e);
    n.close(WITHIN).await;
    assert_eq!(rx.got().len(), 3, "first attempt + 2 retries");
    let dl = dead_letters(&dead);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["channel"], "ops");
    assert_eq!(dl[0]["attempts"], 3);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("500") && reason.contains("database down"),
        "{reason}"
    );
    assert_eq!(dl[0]["event_ids"][0], e.event_id.as_str());
    assert_eq!(dl[0]["events"][0]["alert_id"], e.alert_id.as_str(), "the whole event is kept for a re-send");
    assert!(dl[0]["payload"].as_str().unwrap().contains("markdown"), "and the payload as it was sent");
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_refusal_is_dead_lettered_at_once_and_a_rate_limit_answer_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    // HTTP 200 with an error code is how robots refuse: 130101 = "send too fast" (retry),
    // 310000 = bad keyword / signature (permanent).
    let rx = Receiver::start(
        vec![(200, r#"{"errcode":130101,"errmsg":"send too fast"}"#)],
        (200, r#"{"errcode":310000,"errmsg":"keywords not in content"}"#),
    )
    .await;
    let cfg = config(
        &dead,
        &format!("[[channel]]\nid = \"ding\"\nurl = \"{}\"\nformat = \"dingtalk\"\nbackoff_ms = 20\n", rx.url),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    n.notify(&raised(&flood_events(false)));
    n.close(WITHIN).await;
    assert_eq!(rx.got().len(), 2, "one retry after the rate limit, none after the refusal");
    let dl = dead_letters(&dead);
    assert_eq!(dl.len(), 1);
    assert!(dl[0]["reason"].as_str().unwrap().contains("robot error 310000"), "{}", dl[0]["reason"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_storm_becomes_digests_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![], (200, r#"{"errcode":0}"#)).await;
    // Two messages back to back, then one per 100 ms.
    let cfg = config(
        &dir.path().join("dead.jsonl"),
        &format!(
            "[[channel]]\nid = \"ops\"\nurl = \"{}\"\nformat = \"json\"\nmax_per_minute = 600\nburst = 2\nchanges = [\"raised\", \"escalated\", \"de_escalated\", \"cleared\"]\n",
            rx.url
        ),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    // Twelve distinct alert events: the flood's events under six made-up alert ids.
    let flood: Vec<AlertEvent> =
        flood_events(false).into_iter().filter(|e| e.change != AlertChange::Reminder).collect();
    let mut storm = Vec::new();
    for k in 0..12 {
        let mut e = flood[k % flood.len()].clone();
        e.event_id = format!("storm-{k}");
        storm.push(e);
    }
    for e in &storm {
        n.notify(e);
    }
    let count = |g: &[support::Received]| -> usize {
        g.iter()
            .map(|r| if r.json()["type"] == "digest" { r.json()["count"].as_u64().unwrap() as usize } else { 1 })
            .sum()
    };
    let got = rx.wait(WITHIN, |g| count(g) >= 12).await;
    n.close(WITHIN).await;
    assert_eq!(count(&got), 12, "every event delivered once");
    assert!(got.len() <= 5, "the storm was gathered into digests: {} messages", got.len());
    let digest = got.iter().map(|r| r.json()).find(|j| j["type"] == "digest").expect("a digest");
    let ids: Vec<&str> = digest["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert!(ids.len() >= 2 && ids.iter().all(|id| id.starts_with("storm-")));
    assert!(digest["by_level"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_level_and_drill_and_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![], (200, "ok")).await;
    let cfg = config(
        &dir.path().join("dead.jsonl"),
        &format!(
            "[[channel]]\nid = \"red\"\nurl = \"{u}?ch=red\"\nformat = \"json\"\nlevels = [\"red\"]\nexercise = false\n\
             [[channel]]\nid = \"all\"\nurl = \"{u}?ch=all\"\nformat = \"json\"\nmax_per_minute = 0\n",
            u = rx.url
        ),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    let live = flood_events(false);
    let drill = flood_events(true);
    for e in live.iter().chain(&drill).chain(&live) {
        n.notify(e);
    }
    n.close(WITHIN).await;
    let got = rx.got();
    let on = |ch: &str| -> Vec<serde_json::Value> {
        got.iter().filter(|r| r.query["ch"] == ch).map(|r| r.json()["event"].clone()).collect()
    };
    let red = on("red");
    // Entering red (escalated orange→red) and leaving it (de-escalated red→orange).
    assert!(!red.is_empty());
    for e in &red {
        assert!(e["level"] == "red" || e["previous_level"] == "red", "{e}");
        assert_ne!(e["exercise"], true, "no drill events on a channel with exercise = false");
    }
    let wanted = |e: &&AlertEvent| e.level == Level::Red || e.previous_level == Some(Level::Red);
    assert_eq!(red.len(), live.iter().filter(wanted).count());
    let all = on("all");
    assert_eq!(all.len(), live.len() + drill.len(), "every live and drill event once, the repeated ones not again");
    assert!(all.iter().any(|e| e["exercise"] == true && e["message_zh"].as_str().unwrap().starts_with("【演习】")));
}

/// A call of a call-response chain goes to the channels its tier names and nowhere else (a
/// channel named but missing is dead-lettered); DingTalk rings the tier's contacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_call_reaches_exactly_its_tiers_channels() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![], (200, r#"{"errcode":0}"#)).await;
    let dead = dir.path().join("dead.jsonl");
    let cfg = config(
        &dead,
        &format!(
            "[[channel]]\nid = \"sms-leader\"\nurl = \"{u}?ch=sms-leader\"\nformat = \"json\"\nlevels = [\"blue\"]\nmax_per_minute = 0\n\
             [[channel]]\nid = \"ding-leader\"\nurl = \"{u}?ch=ding-leader\"\nformat = \"dingtalk\"\nmax_per_minute = 0\n\
             [[channel]]\nid = \"all\"\nurl = \"{u}?ch=all\"\nformat = \"json\"\nmax_per_minute = 0\n",
            u = rx.url
        ),
    );
    let mut n = Notifier::start(cfg, None).unwrap();
    let mut call = raised(&flood_events(false));
    call.change = AlertChange::Called;
    call.seq = 1;
    call.event_id = format!("{}-1", call.alert_id);
    call.details = Some(serde_json::json!({"call": {
        "chain": "c", "tier": 2, "tiers": 3, "who": "shift leader", "notify": ["sms-leader", "ding-leader", "nowhere"],
        "contacts": ["13800000002"], "at": "2026-12-07T10:00:00Z", "deadline": "2026-12-07T10:10:00Z"}}));
    n.notify(&call);
    n.close(WITHIN).await;
    let got = rx.got();
    let chans: Vec<&str> = got.iter().map(|r| r.query["ch"].as_str()).collect();
    assert_eq!(chans.len(), 2, "{chans:?}");
    assert!(chans.contains(&"sms-leader"), "named: its level filter does not apply");
    assert!(chans.contains(&"ding-leader"));
    let sms = got.iter().find(|r| r.query["ch"] == "sms-leader").unwrap().json();
    assert_eq!(sms["event"]["details"]["call"]["who"], "shift leader");
    let ding = got.iter().find(|r| r.query["ch"] == "ding-leader").unwrap().json();
    assert_eq!(ding["at"]["atMobiles"], serde_json::json!(["13800000002"]));
    assert!(ding["markdown"]["text"].as_str().unwrap().contains("@13800000002"));
    let dl = dead_letters(&dead);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["channel"], "nowhere");
}

#[test]
fn config_errors_name_the_field() {
    let err = NotifyConfig::from_toml("[[channel]]\nid = \"x\"\nurl = \"ftp://a\"\nformat = \"json\"\n").unwrap_err();
    assert!(err.to_string().contains("channel[0] (x).url"), "{err}");
    let err = NotifyConfig::from_toml(
        "[[channel]]\nid = \"x\"\nurl = \"http://a\"\nformat = \"json\"\nsecret = \"hunter2\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("channel[0] (x).secret"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "the secret is not echoed");
    let err =
        NotifyConfig::from_toml("[[channel]]\nid = \"x\"\nurl = \"http://a\"\nformat = \"telegram\"\n").unwrap_err();
    assert!(err.to_string().contains("format"), "{err}");
}
