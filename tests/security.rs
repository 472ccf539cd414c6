//! Per-site authorisation of gateways, both lines of it:
//!
//! 1. the broker: `riskwatch mqtt-acl` writes Mosquitto password and ACL files from the
//!    registry's `[[gateways]]`; a real Mosquitto with them refuses anonymous and wrong-password
//!    clients and drops a gateway's publishes for another gateway's topic or another site,
//!    while `riskwatch run` (logged in as the service account) stores what is allowed;
//! 2. the ingest: even where the broker does not check (the embedded broker), a message on a
//!    gateway topic for a site that is not the gateway's, or from an unknown gateway, is
//!    refused to dead letter with the reason, counted per gateway — and a registry that
//!    requires gateway topics refuses the plain ones.

mod common;
mod servers;

use common::{free_port, Riskwatch, TestClient};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const REGISTRY: &str = r#"
[[sites]]
id = "plant-a"
[[sites]]
id = "plant-b"
[[sensors]]
id = "a-gas-1"
site = "plant-a"
kind = "gas_combustible"
unit = "%LEL"
attributes = { alarm_1 = 20.0, alarm_2 = 40.0 }
[[sensors]]
id = "b-gas-1"
site = "plant-b"
kind = "gas_combustible"
unit = "%LEL"
attributes = { alarm_1 = 20.0, alarm_2 = 40.0 }
[[gateways]]
id = "gw-a"
name = "Plant A DCS gateway"
sites = ["plant-a"]
[[gateways]]
id = "gw-b"
sites = ["plant-b"]
"#;

const RULES: &str = r#"
[[rules]]
id = "gas"
applies_to = { kind = "gas_combustible" }
levels = { orange = "alarm_1", red = "alarm_2" }
"#;

const WITHIN: Duration = Duration::from_secs(30);

fn reading(minute: i64, v: f64) -> String {
    json!({"kind": "gas_combustible", "ts": 1_700_000_000_000_i64 + minute * 60_000, "unit": "%LEL", "value": v})
        .to_string()
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

fn wait_count(db: &Path, sql: &str, n: i64) {
    let deadline = Instant::now() + WITHIN;
    while count(db, sql) < n {
        assert!(Instant::now() < deadline, "{sql}: fewer than {n} within {WITHIN:?} (have {})", count(db, sql));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects with a login; returns the client, its event loop, and the CONNACK code.
async fn connect(
    port: u16,
    id: &str,
    login: Option<(&str, &str)>,
) -> (AsyncClient, rumqttc::EventLoop, ConnectReturnCode) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (c, mut el) = AsyncClient::new(o, 100);
    let deadline = Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return (c, el, ack.code),
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => return (c, el, code),
            Ok(_) => {}
            Err(_) => panic!("{id}: no CONNACK"),
        }
        assert!(Instant::now() < deadline);
    }
}

/// Publishes at QoS 1 and waits for the PUBACK (Mosquitto acknowledges a publish the ACL
/// drops, too: the gateway cannot tell, which is MQTT 3.1.1's way).
async fn publish(c: &AsyncClient, el: &mut rumqttc::EventLoop, topic: &str, payload: String) {
    c.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
            Ok(Ok(_)) => {}
            other => panic!("publish {topic}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_cross_site_publishes_with_the_generated_acl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["mqtt-acl", "--registry", "registry.toml", "--out", "mqtt"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creds: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("mqtt/credentials.toml")).unwrap()).unwrap();
    let pw = |u: &str| creds[u].as_str().unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.join("mqtt/credentials.toml")).unwrap().permissions().mode() & 0o777, 0o600);
    // Running it again keeps the passwords (gateways already configured keep working).
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["mqtt-acl", "--registry", "registry.toml", "--out", "mqtt"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(again.status.success());
    let creds2: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("mqtt/credentials.toml")).unwrap()).unwrap();
    assert_eq!(creds, creds2);

    let broker = servers::mosquitto_secured(d, &d.join("mqtt/passwd"), &d.join("mqtt/acl"));
    let port = broker.port;

    // No login, or a wrong password: refused at CONNECT.
    let (_, _, code) = connect(port, "anon", None).await;
    assert_ne!(code, ConnectReturnCode::Success, "anonymous refused");
    let (_, _, code) = connect(port, "gw-a", Some(("gw-a", "not-the-password"))).await;
    assert_ne!(code, ConnectReturnCode::Success, "wrong password refused");

    // riskwatch logs in as its service account.
    let rw_pw = pw("riskwatch");
    let mut rw = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"));
        cmd.args(["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--broker"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RISKWATCH_MQTT_USERNAME", "riskwatch")
            .env("RISKWATCH_MQTT_PASSWORD", &rw_pw);
        Riskwatch::from_command(cmd, d)
    };
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let db = d.join("store.db");

    let (gw_a, mut el_a, code) = connect(port, "gw-a", Some(("gw-a", &pw("gw-a")))).await;
    assert_eq!(code, ConnectReturnCode::Success, "gw-a logs in with the generated password");
    // Its own site, on its own topic: stored.
    publish(&gw_a, &mut el_a, "riskwatch/v1/gateways/gw-a/readings/plant-a/a-gas-1", reading(0, 5.0)).await;
    wait_count(&db, "SELECT count(*) FROM readings", 1);
    // Another site on its own topic, and another gateway's topic: the broker drops both.
    publish(&gw_a, &mut el_a, "riskwatch/v1/gateways/gw-a/readings/plant-b/b-gas-1", reading(1, 45.0)).await;
    publish(&gw_a, &mut el_a, "riskwatch/v1/gateways/gw-b/readings/plant-b/b-gas-1", reading(2, 45.0)).await;
    publish(&gw_a, &mut el_a, "riskwatch/v1/readings/plant-b/b-gas-1", reading(3, 45.0)).await;
    // Then an allowed one: once it is stored, the dropped ones (sent before it on the same
    // connection) would have been too.
    publish(&gw_a, &mut el_a, "riskwatch/v1/gateways/gw-a/readings/plant-a/a-gas-1", reading(4, 6.0)).await;
    wait_count(&db, "SELECT count(*) FROM readings", 2);
    let (gw_b, mut el_b, _) = connect(port, "gw-b", Some(("gw-b", &pw("gw-b")))).await;
    publish(&gw_b, &mut el_b, "riskwatch/v1/gateways/gw-b/readings/plant-b/b-gas-1", reading(5, 7.0)).await;
    wait_count(&db, "SELECT count(*) FROM readings", 3);
    let (_, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(
        count(&db, "SELECT count(*) FROM readings WHERE sensor = 'b-gas-1'"),
        1,
        "only gw-b's own reading of plant-b"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM alert_events"), 0, "the 45 %LEL readings never reached the rules");
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0, "the broker refused them; riskwatch never saw them");
    assert!(!out.join("\n").contains(&rw_pw), "the password is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_refuses_a_gateway_publishing_for_another_site_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut rw = Riskwatch::spawn(
        &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen],
        d,
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let db = d.join("store.db");
    // The embedded broker checks no ACL: this gateway can publish anywhere.
    let mut gw = TestClient::connect(port, "gw-a", &["riskwatch/v1/rejections/#"]).await;
    gw.publish_acked("riskwatch/v1/gateways/gw-a/readings/plant-a/a-gas-1", reading(0, 5.0)).await;
    gw.publish_acked("riskwatch/v1/gateways/gw-a/readings/plant-b/b-gas-1", reading(1, 45.0)).await;
    gw.publish_acked("riskwatch/v1/gateways/gw-x/readings/plant-a/a-gas-1", reading(2, 45.0)).await;
    wait_count(&db, "SELECT count(*) FROM dead_letters", 2);
    let notices = gw.collect_until(WITHIN, |ps| ps.len() >= 2).await;
    let (_, out) = rw.interrupt(Duration::from_secs(30));
    let text = out.join("\n");

    assert_eq!(count(&db, "SELECT count(*) FROM readings"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM alert_events"), 0, "refused readings raise nothing");
    let c = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, String, String)> = c
        .prepare("SELECT topic, reason, error FROM dead_letters ORDER BY topic")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows[0].1, "not_authorised");
    assert!(
        rows[0].2.contains("gateway \"gw-a\" may not publish for site \"plant-b\" (its sites: plant-a)"),
        "{rows:?}"
    );
    assert_eq!(rows[1].1, "not_authorised");
    assert!(rows[1].2.contains("unknown gateway \"gw-x\""), "{rows:?}");
    // The gateway hears why, on the site's rejections topic.
    let reasons: Vec<String> = notices
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["reason"].to_string())
        .collect();
    assert!(reasons.iter().all(|r| r.contains("not_authorised")), "{reasons:?}");
    // Counted per gateway in the run's summary.
    assert!(text.contains("by gateway          gw-a: 1, gw-x: 1"), "{text}");
}

#[test]
fn a_registry_requiring_gateway_topics_refuses_plain_ones() {
    use riskwatch_core::wire::{decode, Limits};
    let reg = riskwatch_core::Registry::from_toml(&format!("require_gateway_topics = true\n{REGISTRY}")).unwrap();
    let err = decode("riskwatch/v1/readings/plant-a/a-gas-1", reading(0, 1.0).as_bytes(), &reg, &Limits::default())
        .unwrap_err();
    assert_eq!(err.code(), "not_authorised");
    assert!(err.to_string().contains("riskwatch/v1/gateways/{gateway}/readings/plant-a"), "{err}");
    let ok = decode(
        "riskwatch/v1/gateways/gw-a/readings/plant-a/a-gas-1",
        reading(0, 1.0).as_bytes(),
        &reg,
        &Limits::default(),
    );
    assert_eq!(ok.unwrap().readings.len(), 1);
    let bad =
        riskwatch_core::Registry::from_toml("[[sites]]\nid = \"a\"\n[[gateways]]\nid = \"g\"\nsites = [\"nowhere\"]\n")
            .unwrap_err();
    assert!(bad.to_string().contains("gateways[0].sites: unknown site \"nowhere\""), "{bad}");
}
