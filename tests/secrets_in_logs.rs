//! No secret reaches a log line: `riskwatch run` and `riskwatch console` run at the most verbose
//! log level (`RISKWATCH_LOG=trace`, every library included) with every kind of secret in use —
//! the MQTT service password (a real Mosquitto checking it), an operator's password typed at
//! the console's login, a chat robot's access token in its URL and its signing secret (the
//! robot unreachable, so failures, retries and the dead letter are logged too) — and none of
//! them appears in anything they print or in the dead-letter file.

mod common;
mod servers;

use common::{duty, free_port, TestClient};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROBOT_TOKEN: &str = "robot-access-token-5d1c0e77";
const ROBOT_SECRET: &str = "SECrobot-signing-secret-a93b";

/// A child whose stdout and stderr are both collected.
struct Logged {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn start(mut cmd: Command, dir: &Path) -> Logged {
        let mut child = cmd
            .current_dir(dir)
            .env("RISKWATCH_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let o = Arc::clone(&out);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    o.lock().unwrap().push(line);
                }
            });
        }
        Logged { child, out }
    }

    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.out.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(Instant::now() < deadline, "no {needle:?} in:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200)); // let the reader threads take the last lines
        self.text()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    duty::write_files(d);
    let registry = format!("{}\n[[gateways]]\nid = \"gw-a\"\nsites = [\"plant-a\"]\n", duty::REGISTRY);
    std::fs::write(d.join("registry.toml"), registry).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["mqtt-acl", "--registry", "registry.toml", "--out", "mqtt"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creds: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("mqtt/credentials.toml")).unwrap()).unwrap();
    let service_pw = creds["riskwatch"].as_str().unwrap().to_string();
    let console_pw = creds["riskwatch-console"].as_str().unwrap().to_string();
    let broker = servers::mosquitto_secured(d, &d.join("mqtt/passwd"), &d.join("mqtt/acl"));
    let mqtt = format!("127.0.0.1:{}", broker.port);

    // The robot is unreachable: its deliveries fail, are retried and dead-lettered.
    let closed = free_port();
    std::fs::write(
        d.join("notify.toml"),
        format!(
            "dead_letter = \"dead.jsonl\"\n[[channel]]\nid = \"robot\"\nformat = \"dingtalk\"\n\
             url = \"http://127.0.0.1:{closed}/robot/send?access_token=${{RW_TEST_ROBOT_TOKEN}}\"\n\
             secret = \"env:RW_TEST_ROBOT_SECRET\"\nretries = 2\nbackoff_ms = 200\n"
        ),
    )
    .unwrap();

    let with_login = |args: &[&str], (user, pw): (&str, &str)| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_riskwatch"));
        c.args(args)
            .env("RISKWATCH_MQTT_USERNAME", user)
            .env("RISKWATCH_MQTT_PASSWORD", pw)
            .env("RW_TEST_ROBOT_TOKEN", ROBOT_TOKEN)
            .env("RW_TEST_ROBOT_SECRET", ROBOT_SECRET);
        c
    };
    let run = Logged::start(
        with_login(
            &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--broker", &mqtt],
            ("riskwatch", &service_pw),
        ),
        d,
    );
    run.wait_for("riskwatch ready");
    let listen = format!("127.0.0.1:{}", free_port());
    let console = Logged::start(
        with_login(
            &[
                "console",
                "--listen",
                &listen,
                "--mqtt",
                &mqtt,
                "--registry",
                "registry.toml",
                "--users",
                "users.toml",
                "--db",
                "console.db",
                "--notify",
                "notify.toml",
            ],
            ("riskwatch-console", &console_pw),
        ),
        d,
    );
    console.wait_for("riskwatch console ready");

    // An operator logs in (and someone tries a wrong password).
    let (name, _, password) = duty::OPERATORS[0];
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let base = format!("http://{listen}");
    let bad = http.post(format!("{base}/api/login")).json(&json!({"name": name, "password": "Wrong-Pass-4417"}));
    assert_eq!(bad.send().await.unwrap().status(), 401);
    let ok = http.post(format!("{base}/api/login")).json(&json!({"name": name, "password": password}));
    assert!(ok.send().await.unwrap().status().is_success());

    // A gateway's reading raises an alert: the robot is tried, fails, and is dead-lettered.
    let mut officer_feed = {
        let mut o = rumqttc::MqttOptions::new("probe", "127.0.0.1", broker.port);
        o.set_credentials("riskwatch", &service_pw);
        let (c, el) = rumqttc::AsyncClient::new(o, 100);
        c.subscribe("riskwatch/v1/alerts/#", rumqttc::QoS::AtLeastOnce).await.unwrap();
        TestClient { client: c, eventloop: el }
    };
    officer_feed
        .client
        .publish(
            "riskwatch/v1/readings/plant-a/a-gas-1",
            rumqttc::QoS::AtLeastOnce,
            false,
            json!({"kind": "gas_combustible", "ts": riskwatch_core::Timestamp::now().millis(), "unit": "%LEL", "value": 55.0})
                .to_string(),
        )
        .await
        .unwrap();
    let alerts = officer_feed.collect_until(Duration::from_secs(30), |ps| !ps.is_empty()).await;
    assert!(!alerts.is_empty(), "the reading raised an alert");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(d.join("dead.jsonl")).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "the robot's delivery was not dead-lettered:\n{}", console.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    let logs = [("run", run.stop()), ("console", console.stop()), ("dead-letter file", dead)];
    for (what, text) in &logs {
        if *what != "dead-letter file" {
            assert!(text.lines().count() > 5, "{what} logged at trace level:\n{text}");
        }
        for (secret, name) in [
            (service_pw.as_str(), "MQTT service password"),
            (console_pw.as_str(), "console's MQTT password"),
            (password, "operator password"),
            ("Wrong-Pass-4417", "mistyped operator password"),
            (ROBOT_TOKEN, "robot access token"),
            (ROBOT_SECRET, "robot signing secret"),
        ] {
            let leaks: Vec<String> =
                text.lines().filter(|l| l.contains(secret)).map(|l| l.replace(secret, "<THE SECRET>")).collect();
            assert!(leaks.is_empty(), "the {name} appears in the {what} output:\n{}", leaks.join("\n"));
        }
    }
}
