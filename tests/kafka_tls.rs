//! Kafka over TLS with client certificates, settings passed through `[kafka.properties]`:
//! a real Kafka-API broker (tansu) reachable only through a TLS terminator requiring client
//! certificates (Debian's stunnel), certificates made by the test (openssl), the client key
//! encrypted with a passphrase that riskwatch reads from the environment (`env:NAME`).
//! `riskwatch run` (ingest + rules worker) turns a gateway's reading into an alert through it;
//! a plaintext client and a TLS client without a certificate are refused; the passphrase
//! never appears in riskwatch's output, even at debug level.

mod common;
mod servers;

use common::TestClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use riskwatch_core::wire::topic;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gas_plant::{REGISTRY, RULES};

const PASSPHRASE: &str = "kafka-key-passphrase-7f3a91";

/// Can a client with these settings read the cluster's metadata through `brokers`?
fn metadata(brokers: &str, settings: &[(&str, &str)], dir: &std::path::Path) -> Result<usize, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("group.id", "probe").set("socket.timeout.ms", "3000");
    for (k, v) in settings {
        let v = if k.ends_with(".location") { dir.join(v).display().to_string() } else { v.to_string() };
        c.set(*k, v);
    }
    let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
    consumer.fetch_metadata(None, Duration::from_secs(6)).map(|m| m.brokers().len()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_with_a_client_certificate_carries_readings_to_alerts_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    servers::make_certs(d, &["riskwatch"]);
    // riskwatch's key, encrypted: librdkafka needs ssl.key.password, given as env:NAME.
    let out = Command::new("openssl")
        .args(["pkey", "-in", "riskwatch.key", "-out", "riskwatch-enc.key", "-aes256", "-passout"])
        .arg(format!("pass:{PASSPHRASE}"))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mqtt = servers::mosquitto(d);
    let (_tansu, tls) = servers::tansu_behind_tls(d);
    let brokers = format!("127.0.0.1:{}", tls.port);

    // The broker side: plaintext and certificate-less clients are refused; ours gets through.
    let with_cert = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", "ca.pem"),
        ("ssl.certificate.location", "riskwatch.pem"),
        ("ssl.key.location", "riskwatch.key"),
    ];
    assert_eq!(metadata(&brokers, &with_cert, d), Ok(1), "a client with the CA and its certificate is served");
    assert!(metadata(&brokers, &[], d).is_err(), "plaintext is refused");
    assert!(
        metadata(&brokers, &[("security.protocol", "ssl"), ("ssl.ca.location", "ca.pem")], d).is_err(),
        "TLS without a client certificate is refused"
    );

    std::fs::write(d.join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    std::fs::write(
        d.join("riskwatch.toml"),
        format!(
            r#"registry = "registry.toml"
rules = "rules.toml"
components = ["ingest", "rules"]

[mqtt]
host = "127.0.0.1"
port = {}

[kafka]
brokers = "{brokers}"
readings_partitions = 2
alerts_partitions = 1

[kafka.properties]
"security.protocol" = "ssl"
"ssl.ca.location" = "ca.pem"
"ssl.certificate.location" = "riskwatch.pem"
"ssl.key.location" = "riskwatch-enc.key"
"ssl.key.password" = "env:RW_TEST_KAFKA_KEY_PASSWORD"
"#,
            mqtt.port
        ),
    )
    .unwrap();

    // An inline passphrase is refused before anything starts, naming the field, not echoing it.
    let inline = std::fs::read_to_string(d.join("riskwatch.toml"))
        .unwrap()
        .replace("env:RW_TEST_KAFKA_KEY_PASSWORD", PASSPHRASE);
    std::fs::write(d.join("inline.toml"), inline).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["run", "--config", "inline.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(text.contains("kafka.properties.\"ssl.key.password\""), "{text}");
    assert!(!text.contains(PASSPHRASE), "the refusal does not echo the secret: {text}");

    let log_path = d.join("riskwatch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut rw = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["run", "--config", "riskwatch.toml"])
        .env("RW_TEST_KAFKA_KEY_PASSWORD", PASSPHRASE)
        .env("RISKWATCH_INSTANCE", "tls-1")
        .env("RISKWATCH_LOG", "debug")
        .current_dir(d)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(read_log().contains("ingest ready") && read_log().contains("rules worker tls-1 ready")) {
        if let Some(st) = rw.try_wait().unwrap() {
            panic!("riskwatch exited ({st}):\n{}", read_log());
        }
        assert!(Instant::now() < deadline, "not ready within 90 s:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut officer = TestClient::connect(mqtt.port, "officer", &[topic::ALERTS_FILTER]).await;
    let mut gw = TestClient::connect(mqtt.port, "gw-a", &[]).await;
    let ts = riskwatch_core::Timestamp::now().millis();
    gw.publish_acked(
        "riskwatch/v1/readings/plant-a/a-gas-1",
        json!({"kind": "gas_combustible", "ts": ts, "unit": "%LEL", "value": 55.0}).to_string(),
    )
    .await;
    let got = officer
        .collect_until(Duration::from_secs(60), |ps| {
            ps.iter().any(|p| String::from_utf8_lossy(&p.payload).contains("\"level\":\"red\""))
        })
        .await;
    let _ = rw.kill();
    let _ = rw.wait();
    let text = read_log();
    assert!(
        got.iter().any(|p| String::from_utf8_lossy(&p.payload).contains("\"level\":\"red\"")),
        "a red alert came back through Kafka over TLS; got {} messages; log:\n{text}",
        got.len()
    );
    assert!(!text.contains(PASSPHRASE), "the key passphrase is never logged (debug level)");
}
