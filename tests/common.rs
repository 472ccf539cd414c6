//! Helpers shared by the end-to-end tests: start the real `riskwatch` binary, talk to it over
//! real MQTT, wait on conditions with deadlines.

#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// Test binaries that include both `common` and `servers` get two copies of the port module;
// each reserves its own block of ports (see the module), so they never hand out the same one.
#[allow(clippy::duplicate_mod)]
#[path = "ports/mod.rs"]
mod ports;
pub use ports::free_port;

/// A running `riskwatch` child process whose stdout lines are collected on a channel.
pub struct Riskwatch {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Riskwatch {
    /// Starts `riskwatch ARGS…` with stdout captured.
    pub fn spawn(args: &[&str], cwd: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskwatch"));
        cmd.args(args);
        Self::from_command(cmd, cwd)
    }

    /// Starts a prepared `riskwatch` command (extra environment, say) with stdout captured.
    pub fn from_command(mut cmd: Command, cwd: &Path) -> Self {
        let mut child = cmd
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("riskwatch binary starts");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Riskwatch { child, lines: rx, seen: Vec::new() }
    }

    /// Waits until a stdout line contains `needle`; panics with everything seen at the deadline.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    panic!("no line containing {needle:?} within {within:?}; output so far:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Sends SIGINT (as Ctrl-C does) and waits for exit; returns the exit code and remaining output.
    pub fn interrupt(self, within: Duration) -> (i32, Vec<String>) {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.wait_exit(within)
    }

    /// Waits for the process to exit by itself; returns its exit code and all output.
    pub fn wait_exit(mut self, within: Duration) -> (i32, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(l);
                }
                return (st.code().unwrap_or(-1), std::mem::take(&mut self.seen));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("riskwatch did not exit within {within:?}; output:\n{}", self.seen.join("\n"));
            }
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l);
            }
        }
    }
}

impl Drop for Riskwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// An MQTT client for tests, connected and (optionally) subscribed before it is returned.
pub struct TestClient {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
}

impl TestClient {
    /// Connects to 127.0.0.1:`port` and subscribes to `filters` (waiting for each SubAck).
    pub async fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(1 << 20, 1 << 20).set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        }
        let mut acks = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while acks < filters.len() || filters.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => acks += 1,
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if filters.is_empty() => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("test MQTT client {id}: {e}"),
                Err(_) => panic!("test MQTT client {id} not subscribed within 10 s"),
            }
        }
        TestClient { client, eventloop }
    }

    /// Publishes at QoS 1 and drives the connection until the broker acknowledged it.
    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("publish to {topic}: {e}"),
                Err(_) => panic!("no PUBACK for {topic} within 10 s"),
            }
        }
    }

    /// Collects incoming publishes until `done(&collected)` holds or the deadline passes;
    /// returns what was collected either way.
    pub async fn collect_until(&mut self, within: Duration, done: impl Fn(&[Publish]) -> bool) -> Vec<Publish> {
        let mut got = Vec::new();
        let deadline = Instant::now() + within;
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push(p),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("subscriber connection: {e}"),
                Err(_) => break,
            }
        }
        got
    }
}

/// Scenario runs: an embedded pipeline (`riskwatch run`) with a scenario's registry and rules,
/// fed by `riskwatch simulate --scenario`, judged from its SQLite store.
pub mod sim {
    use super::{free_port, Riskwatch};
    use riskwatch_simulators::scenario::{ObservedAlert, Scenario};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    /// The repository's `scenarios/` directory.
    pub fn scenarios_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
    }

    /// A running `riskwatch run` in a temporary directory.
    pub struct Pipeline {
        pub dir: tempfile::TempDir,
        pub port: u16,
        pub rw: Riskwatch,
    }

    impl Pipeline {
        /// Starts `riskwatch run --registry --rules --db store.db` with the embedded broker on a
        /// free port, and waits until it is ready.
        pub fn start(scenario: &Scenario) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("registry.toml"), scenario.registry_text().unwrap()).unwrap();
            std::fs::write(dir.path().join("rules.toml"), scenario.rules_text().unwrap()).unwrap();
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut rw = Riskwatch::spawn(
                &[
                    "run",
                    "--registry",
                    "registry.toml",
                    "--rules",
                    "rules.toml",
                    "--db",
                    "store.db",
                    "--listen",
                    &listen,
                ],
                dir.path(),
            );
            rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
            Pipeline { dir, port, rw }
        }

        /// Runs `riskwatch simulate --scenario FILE --mqtt … ARGS` to completion; returns its
        /// output and the number of readings it published.
        pub fn simulate(&self, scenario_file: &Path, args: &[&str]) -> (Vec<String>, u64) {
            let mqtt = format!("127.0.0.1:{}", self.port);
            let file = scenario_file.to_string_lossy().to_string();
            let mut all = vec!["simulate", "--scenario", &file, "--mqtt", &mqtt];
            all.extend_from_slice(args);
            let sim = Riskwatch::spawn(&all, self.dir.path());
            let (code, out) = sim.wait_exit(Duration::from_secs(90));
            assert_eq!(code, 0, "simulate failed:\n{}", out.join("\n"));
            let line = out.iter().find(|l| l.starts_with("published")).expect("summary line");
            let readings = line
                .split('(')
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no reading count in {line:?}"));
            let acked = line.split(", ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("?");
            let published = line.split_whitespace().nth(1).unwrap_or("!");
            assert_eq!(acked, published, "every message acknowledged: {line}");
            (out, readings)
        }

        /// The store.
        pub fn db(&self) -> rusqlite::Connection {
            rusqlite::Connection::open(self.dir.path().join("store.db")).unwrap()
        }

        /// Waits until the store holds at least `n` readings (panics at the deadline).
        pub fn wait_stored(&self, n: u64, within: Duration) {
            let deadline = Instant::now() + within;
            loop {
                let stored: i64 = self.db().query_row("SELECT count(*) FROM readings", [], |r| r.get(0)).unwrap_or(0);
                if stored as u64 >= n {
                    return;
                }
                assert!(Instant::now() < deadline, "only {stored} of {n} readings stored within {within:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Waits until `done` holds for the alert events in the store.
        pub fn wait_alerts(&self, within: Duration, done: impl Fn(&[ObservedAlert]) -> bool) -> Vec<ObservedAlert> {
            let deadline = Instant::now() + within;
            loop {
                let a = alerts(&self.db());
                if done(&a) || Instant::now() > deadline {
                    return a;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Stops riskwatch (Ctrl-C) and returns every alert event it stored, in store order.
        pub fn stop(self) -> (Vec<ObservedAlert>, tempfile::TempDir) {
            let (code, out) = self.rw.interrupt(Duration::from_secs(30));
            assert_eq!(code, 0, "riskwatch exit:\n{}", out.join("\n"));
            let a = alerts(&rusqlite::Connection::open(self.dir.path().join("store.db")).unwrap());
            (a, self.dir)
        }
    }

    /// Alert events of a store, in the order they were stored.
    pub fn alerts(db: &rusqlite::Connection) -> Vec<ObservedAlert> {
        let Ok(mut st) = db.prepare("SELECT rule_id, subject, change, level, ts FROM alert_events ORDER BY rowid")
        else {
            return Vec::new();
        };
        st.query_map([], |r| {
            let level: String = r.get(3)?;
            Ok(ObservedAlert {
                rule: r.get(0)?,
                subject: r.get(1)?,
                change: r.get(2)?,
                level: level.parse().expect("a level"),
                ts: r.get(4)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// A scenario written to `dir` (for tests that build their own).
    pub fn write_scenario(dir: &Path, name: &str, text: &str) -> (PathBuf, Scenario) {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        (path, s)
    }
}

/// The duty-room set-up: an embedded pipeline (`riskwatch run`) and a `riskwatch console` in
/// front of it, with operators of every role and, optionally, a notifications file.
/// One plant with one combustible-gas detector (alarm 1 at 20 %LEL, alarm 2 at 40 %LEL) and
/// the rule that grades it: orange at alarm 1, red at alarm 2.
pub mod gas_plant {
    pub const REGISTRY: &str = r#"
[[sites]]
id = "plant-a"
[[sensors]]
id = "a-gas-1"
site = "plant-a"
kind = "gas_combustible"
unit = "%LEL"
attributes = { alarm_1 = 20.0, alarm_2 = 40.0 }
"#;

    pub const RULES: &str = r#"
[[rules]]
id = "gas"
applies_to = { kind = "gas_combustible" }
levels = { orange = "alarm_1", red = "alarm_2" }
"#;
}

pub mod duty {
    use super::{free_port, Riskwatch};
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    pub const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
name = "Hankou"
name_zh = "汉口"
[[sites]]
id = "plant-a"
name = "Plant A"
name_zh = "甲化工厂"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
location = { lat = 30.58, lon = 114.29 }
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
[[sensors]]
id = "a-gas-1"
site = "plant-a"
kind = "gas_combustible"
unit = "%LEL"
attributes = { alarm_1 = 20.0, alarm_2 = 40.0 }
"#;

    pub const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[rules]]
id = "gas"
applies_to = { kind = "gas_combustible" }
deadband = 1.0
levels = { orange = "alarm_1", red = "alarm_2" }
"#;

    /// Operators and their passwords: (name, role, password).
    pub const OPERATORS: [(&str, &str, &str); 3] = [
        ("li.wei", "officer", "duty-officer-1"),
        ("guest", "viewer", "just-looking"),
        ("root", "admin", "admin-pass-9"),
    ];

    /// An argon2 hash made by `riskwatch hash-password`.
    pub fn hash(password: &str) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Writes registry, rules and users into `dir`.
    pub fn write_files(dir: &Path) {
        std::fs::write(dir.join("registry.toml"), REGISTRY).unwrap();
        std::fs::write(dir.join("rules.toml"), RULES).unwrap();
        let mut users = String::new();
        for (name, role, pw) in OPERATORS {
            users.push_str(&format!(
                "[[user]]\nname = \"{name}\"\ndisplay_name = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{}\"\n\n",
                hash(pw)
            ));
        }
        std::fs::write(dir.join("users.toml"), users).unwrap();
    }

    /// Starts `riskwatch run` with its embedded broker; returns it and the MQTT port.
    pub fn start_pipeline(dir: &Path) -> (Riskwatch, u16) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut rw = Riskwatch::spawn(
            &["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen],
            dir,
        );
        rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
        (rw, port)
    }

    /// Starts `riskwatch console` against the broker on `mqtt_port`; returns it and its URL.
    pub fn start_console(dir: &Path, mqtt_port: u16, extra: &[&str]) -> (Riskwatch, String) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mqtt = format!("127.0.0.1:{mqtt_port}");
        let mut args = vec![
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
        ];
        args.extend_from_slice(extra);
        let mut c = Riskwatch::spawn(&args, dir);
        c.wait_for_line("riskwatch console ready", Duration::from_secs(30));
        (c, format!("http://{listen}"))
    }
}

/// Bytes received on this machine's side of TCP connections whose local port is `port` and not
/// yet read by the program owning them (from /proc/net/tcp).
pub fn unread_bytes(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            (local_port == port).then_some(rx)
        })
        .sum()
}

/// A process's private (anonymous) resident memory in KiB, from /proc (0 once it is gone). The
/// store's memory-mapped file pages are the kernel's page cache, not the process's memory, and
/// are not counted.
pub fn private_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How often each key occurs in `keys`.
pub fn count_per_key<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

/// Asserts that `got` holds each key of `expected` exactly once and nothing else — counted per
/// key, so a duplicate fails it as surely as a loss. The message names the missing, unexpected
/// and repeated keys (the first 10 of each).
pub fn assert_each_once<K: Ord + Debug>(
    what: &str,
    got: impl IntoIterator<Item = K>,
    expected: impl IntoIterator<Item = K>,
) {
    let got = count_per_key(got);
    let expected = count_per_key(expected);
    if let Some((k, n)) = expected.iter().find(|(_, n)| **n != 1) {
        panic!("{what}: the expected keys repeat {k:?} ({n} times)");
    }
    let missing: Vec<&K> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let unexpected: Vec<&K> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    let repeated: Vec<(&K, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty() && repeated.is_empty(),
        "{what}: each key exactly once, but {} missing {:?}, {} unexpected {:?}, {} repeated (key, times) {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
}

/// Like [`assert_each_once`] for an at-least-once path: every expected key arrives, nothing
/// else does; repeats are allowed. Returns the counts.
pub fn assert_each_at_least_once<K: Ord + Debug>(
    what: &str,
    got: impl IntoIterator<Item = K>,
    expected: impl IntoIterator<Item = K>,
) -> BTreeMap<K, usize> {
    let got = count_per_key(got);
    let expected = count_per_key(expected);
    let missing: Vec<&K> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let unexpected: Vec<&K> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{what}: each key at least once, but {} missing {:?}, {} unexpected {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
    );
    got
}
