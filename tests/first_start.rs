//! The compose stack's first start, without Docker but with the real pieces:
//!
//! - `deploy/init/riskwatch-init.sh` (what the riskwatch-init service runs) makes the MQTT
//!   accounts, Mosquitto's password file and ACL and Grafana's password, each file private to
//!   its reader, and keeps them when it runs again;
//! - a real Mosquitto with the shipped `deploy/mosquitto/mosquitto.conf` (only its paths and
//!   port moved to a temporary folder) refuses anonymous clients and a wrong password, and lets
//!   `riskwatch run` in with the generated password read from `RISKWATCH_MQTT_PASSWORD_FILE`;
//! - `riskwatch healthcheck` exits 0 only once a process answers 2xx on the probed endpoint;
//! - `riskwatch console init-users` writes a 0600 users file whose printed password logs in on
//!   the real console, and never overwrites an existing one.

mod common;
mod servers;

use common::{free_port, Riskwatch};
use rumqttc::{ConnectReturnCode, Event, MqttOptions, Packet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn riskwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riskwatch")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the init script as the riskwatch-init container does, with the binary on PATH.
fn run_init(secrets: &Path) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_riskwatch")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    Command::new("sh")
        .arg(repo().join("deploy/init/riskwatch-init.sh"))
        .env("PATH", path)
        .env("RISKWATCH_SECRETS", secrets)
        .env("RISKWATCH_REGISTRY", repo().join("config/demo/registry.toml"))
        .env("RISKWATCH_INIT_CHOWN", if root { "1" } else { "0" })
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Polls `riskwatch healthcheck --url URL` until it exits 0; panics at the deadline with its last
/// answer.
fn wait_healthy(url: &str) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let out = riskwatch(&["healthcheck", "--url", url, "--timeout", "2s"]);
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not healthy within {WITHIN:?}: {}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CONNACK code for a login (None: anonymous).
async fn connack(port: u16, login: Option<(&str, &str)>) -> ConnectReturnCode {
    let mut o = MqttOptions::new("first-start-probe", "127.0.0.1", port);
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await.expect("an answer to CONNECT") {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("connecting: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_lets_only_the_generated_accounts_into_the_shipped_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secrets = d.join("secrets");
    let out = run_init(&secrets);
    assert!(out.status.success(), "riskwatch-init.sh: {}{}", text(&out.stdout), text(&out.stderr));

    let rw_file = secrets.join("mqtt-riskwatch.password");
    let console_file = secrets.join("mqtt-riskwatch-console.password");
    let grafana_file = secrets.join("grafana-admin.password");
    for (file, want_mode, owner) in [
        (secrets.join("mqtt/passwd"), 0o600, 1883),
        (secrets.join("mqtt/acl"), 0o600, 1883),
        (secrets.join("mqtt/credentials.toml"), 0o600, 0),
        (rw_file.clone(), 0o400, 10001),
        (console_file.clone(), 0o400, 10001),
        (grafana_file.clone(), 0o400, 472),
    ] {
        assert_eq!(mode(&file), want_mode, "{}", file.display());
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(std::fs::metadata(&file).unwrap().uid(), owner, "{} belongs to its reader", file.display());
        }
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (rw_pw, grafana_pw) = (read(&rw_file), read(&grafana_file));
    assert!(rw_pw.len() >= 16 && grafana_pw.len() >= 16, "long random passwords");
    assert_ne!(rw_pw, read(&console_file), "one password per account");
    let creds: toml::Table = toml::from_str(&read(&secrets.join("mqtt/credentials.toml"))).unwrap();
    assert_eq!(creds["riskwatch"].as_str(), Some(rw_pw.as_str()));

    // The next `docker compose up` runs it again: nothing changes under running clients.
    let again = run_init(&secrets);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!((read(&rw_file), read(&grafana_file)), (rw_pw.clone(), grafana_pw));

    // The shipped broker config, its port and paths moved here.
    let port = free_port();
    let data = d.join("mosquitto-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shipped = std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf")).unwrap();
    assert!(shipped.contains("\nlistener 1883 0.0.0.0\n") && shipped.contains("/run/secrets/riskwatch/"));
    let conf = shipped
        .replace("\nlistener 1883 0.0.0.0\n", &format!("\nuser root\nlistener {port} 127.0.0.1\n"))
        .replace("/mosquitto/data/", &format!("{}/", data.display()))
        .replace("/run/secrets/riskwatch/", &format!("{}/", secrets.display()));
    std::fs::write(d.join("mosquitto.conf"), conf).unwrap();
    let broker = servers::mosquitto_with_config(d, &d.join("mosquitto.conf"), port);

    assert_ne!(connack(port, None).await, ConnectReturnCode::Success, "anonymous refused");
    assert_ne!(connack(port, Some(("riskwatch", "admin"))).await, ConnectReturnCode::Success, "wrong password");
    assert_eq!(connack(port, Some(("riskwatch", &rw_pw))).await, ConnectReturnCode::Success, "{}", broker.log_tail());

    // A riskwatch process logs in as the compose services do, and becomes ready.
    let metrics = format!("127.0.0.1:{}", free_port());
    let demo = repo().join("config/demo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskwatch"));
    cmd.args(["run", "--db", "store.db", "--broker", &format!("127.0.0.1:{port}"), "--metrics", &metrics])
        .arg("--registry")
        .arg(demo.join("registry.toml"))
        .arg("--rules")
        .arg(demo.join("rules.toml"))
        .env("RISKWATCH_MQTT_USERNAME", "riskwatch")
        .env("RISKWATCH_MQTT_PASSWORD_FILE", &rw_file);
    let _rw = Riskwatch::from_command(cmd, d);
    wait_healthy(&format!("http://{metrics}/readyz"));
}

#[test]
fn init_users_makes_an_admin_who_logs_in_on_the_console_and_healthcheck_tells_ready_from_alive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let users = d.join("state/users.toml");
    let users_arg = users.to_str().unwrap();
    let out = riskwatch(&["console", "init-users", "--users", users_arg, "--admin", "chief"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("one-time password: "))
        .unwrap_or_else(|| panic!("no password printed: {stdout}"))
        .to_string();
    assert!(password.len() >= 10, "{password}");
    assert_eq!(mode(&users), 0o600);
    let written = std::fs::read_to_string(&users).unwrap();
    assert!(!written.contains(&password), "only the hash is stored");

    // Never over an existing file.
    let again = riskwatch(&["console", "init-users", "--users", users_arg]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&users).unwrap(), written);

    // Nothing listens yet: not healthy, and the reason says so.
    let listen = format!("127.0.0.1:{}", free_port());
    let down = riskwatch(&["healthcheck", "--url", &format!("http://{listen}/healthz"), "--timeout", "2s"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stderr).contains("cannot reach"), "{}", text(&down.stderr));

    // The console without a broker: alive, not ready.
    let no_broker = format!("127.0.0.1:{}", free_port());
    let registry = repo().join("config/demo/registry.toml");
    let _console = Riskwatch::spawn(
        &[
            "console",
            "--listen",
            &listen,
            "--mqtt",
            &no_broker,
            "--registry",
            registry.to_str().unwrap(),
            "--users",
            users_arg,
            "--db",
            "console.db",
        ],
        d,
    );
    wait_healthy(&format!("http://{listen}/healthz"));
    let ready = riskwatch(&["healthcheck", "--url", &format!("http://{listen}/readyz")]);
    assert_eq!(ready.status.code(), Some(1), "not ready without its broker: {}", text(&ready.stdout));
    assert!(text(&ready.stderr).contains("503"), "{}", text(&ready.stderr));

    // The printed password is the admin's.
    let http = reqwest::blocking::Client::new();
    let login = |pw: &str| {
        http.post(format!("http://{listen}/api/login"))
            .json(&serde_json::json!({"name": "chief", "password": pw}))
            .send()
            .unwrap()
    };
    assert_eq!(login("not-the-password").status().as_u16(), 401);
    let r = login(&password);
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!((body["name"].as_str(), body["role"].as_str()), (Some("chief"), Some("admin")), "{body}");
}
