//! MQTT over TLS with certificates the test generates (openssl): a real Mosquitto with a
//! TLS-only listener requiring client certificates; `riskwatch run` connects with the CA and its
//! own client certificate from the environment and turns a gateway's TLS publish into a stored
//! reading and an alert; a plaintext client, and a TLS client without a certificate, are
//! refused.

mod common;
mod servers;

use common::Riskwatch;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn tls(dir: &Path, client: Option<&str>) -> Transport {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let client_auth = client.map(|c| {
        (std::fs::read(dir.join(format!("{c}.pem"))).unwrap(), std::fs::read(dir.join(format!("{c}.key"))).unwrap())
    });
    Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth })
}

/// Connects; returns the client and event loop once connected, or the error text.
async fn connect(
    port: u16,
    id: &str,
    transport: Option<Transport>,
) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(t) = transport {
        o.set_transport(t);
    }
    let (c, mut el) = AsyncClient::new(o, 100);
    match tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    {
        Ok(Ok(())) => Ok((c, el)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no CONNACK within 10 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riskwatch_works_over_tls_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    servers::make_certs(d, &["riskwatch", "gw-a"]);
    std::fs::write(d.join("registry.toml"), "[[sites]]\nid = \"plant-a\"\n[[sensors]]\nid = \"a-gas-1\"\nsite = \"plant-a\"\nkind = \"gas_combustible\"\nunit = \"%LEL\"\nattributes = { alarm_1 = 20.0, alarm_2 = 40.0 }\n").unwrap();
    std::fs::write(d.join("rules.toml"), "[[rules]]\nid = \"gas\"\napplies_to = { kind = \"gas_combustible\" }\nlevels = { orange = \"alarm_1\", red = \"alarm_2\" }\n").unwrap();
    let broker = servers::mosquitto_tls(d, &d.join("ca.pem"), &d.join("server.pem"), &d.join("server.key"));
    let port = broker.port;

    // Plaintext to the TLS listener, and TLS without a client certificate: refused.
    assert!(connect(port, "plain", None).await.is_err(), "plaintext must be refused");
    assert!(
        connect(port, "no-cert", Some(tls(d, None))).await.is_err(),
        "a client without a certificate must be refused"
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskwatch"));
    cmd.args(["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--broker"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RISKWATCH_MQTT_CA", d.join("ca.pem"))
        .env("RISKWATCH_MQTT_CLIENT_CERT", d.join("riskwatch.pem"))
        .env("RISKWATCH_MQTT_CLIENT_KEY", d.join("riskwatch.key"));
    let mut rw = Riskwatch::from_command(cmd, d);
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));

    // An officer's app over TLS hears the alert a gateway's TLS publish raises.
    let (sub, mut sub_el) = connect(port, "duty-app", Some(tls(d, Some("gw-a")))).await.expect("TLS client connects");
    sub.subscribe("riskwatch/v1/alerts/#", QoS::AtLeastOnce).await.unwrap();
    let (gw, mut gw_el) = connect(port, "gw-a", Some(tls(d, Some("gw-a")))).await.unwrap();
    let payload =
        serde_json::json!({"kind": "gas_combustible", "ts": 1_700_000_000_000_i64, "unit": "%LEL", "value": 45.0});
    // Wait for the SubAck before publishing.
    loop {
        if let Ok(Ok(Event::Incoming(Packet::SubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(10), sub_el.poll()).await
        {
            break;
        }
    }
    gw.publish("riskwatch/v1/readings/plant-a/a-gas-1", QoS::AtLeastOnce, false, payload.to_string()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        tokio::select! {
            e = sub_el.poll() => if let Ok(Event::Incoming(Packet::Publish(p))) = e {
                break serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap();
            },
            _ = gw_el.poll() => {}
        }
        assert!(Instant::now() < deadline, "no alert over TLS");
    };
    assert_eq!(event["level"], "red");
    assert_eq!(event["subject"], "a-gas-1");

    // The simulators publish over TLS too, with the same settings from the environment.
    let sim = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["simulate", "--duration", "2s", "--mqtt"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RISKWATCH_MQTT_CA", d.join("ca.pem"))
        .env("RISKWATCH_MQTT_CLIENT_CERT", d.join("gw-a.pem"))
        .env("RISKWATCH_MQTT_CLIENT_KEY", d.join("gw-a.key"))
        .current_dir(d)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&sim.stdout);
    assert!(sim.status.success(), "{said}{}", String::from_utf8_lossy(&sim.stderr));
    let counts: Vec<u64> = said
        .lines()
        .find(|l| l.starts_with("published "))
        .map(|l| l.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        counts.len() >= 2 && counts[0] > 0 && counts[1] == counts[0],
        "every message acknowledged over TLS: {said}"
    );

    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
    let db = rusqlite::Connection::open(d.join("store.db")).unwrap();
    let n: i64 = db.query_row("SELECT count(*) FROM readings", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "the demo fleet's sensors are not in this registry");
    let refused: i64 = db.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0)).unwrap();
    assert!(refused > 0, "the simulated readings reached riskwatch over TLS (and were refused as unknown sensors)");
}
