//! The production path on real servers: a scripted gateway → Mosquitto → `riskwatch ingest` →
//! Kafka (tansu) → two `riskwatch rules` workers in one group → alert events on Kafka and MQTT
//! → `riskwatch sink` → rows read back from the line-protocol server (victoria-metrics standing
//! in for QuestDB). Crash and outage tests kill or restart each piece while readings flow, and
//! check that no reading is missing or stored twice and every expected alert is raised once.
//!
//! The expected alerts are what the rule engine produces on the same readings in one
//! uninterrupted in-process run: the distributed, interrupted pipeline must match it.

mod common;
mod servers;

use common::{assert_each_at_least_once, assert_each_once};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use riskwatch_core::wire::{encode_batch, topic};
use riskwatch_core::{
    AlertChange, AlertEvent, Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp, Value,
};
use riskwatch_rules::{Engine, RuleSet};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use servers::{free_port, rss_kib, Server};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time: each starts three servers and four riskwatch processes on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const SITES: usize = 8;
const STEPS: i64 = 160;
/// 2020-07-07T00:00:00+08:00; readings every 5 minutes.
const T0: i64 = 1_594_051_200_000;
const STEP_MS: i64 = 300_000;

/// Reminders run on the processing clock, so they are off here: the reference run and the
/// live pipeline would otherwise differ by when the wall clock happened to tick.
const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.1
remind = { red = "off", orange = "off" }
levels = { blue = "warning_level - 1.0", yellow = "warning_level", orange = "warning_level + 1.0", red = "warning_level + 2.0" }
"#;

fn registry_toml() -> String {
    let mut s = String::new();
    for i in 0..SITES {
        s += &format!("[[sites]]\nid = \"river-{i}\"\n");
    }
    for i in 0..SITES {
        for j in ["a", "b"] {
            s += &format!(
                "[[sensors]]\nid = \"river-{i}-wl-{j}\"\nsite = \"river-{i}\"\nkind = \"water_level\"\nunit = \"m\"\n\
                 attributes = {{ warning_level = 11.0 }}\n"
            );
        }
    }
    s
}

/// Two flood waves per sensor, each sensor with its own phase and height (some stop at yellow).
fn readings() -> Vec<Vec<Reading>> {
    let mut steps = Vec::new();
    for step in 0..STEPS {
        let mut batch = Vec::new();
        for i in 0..SITES {
            for (n, j) in ["a", "b"].into_iter().enumerate() {
                let k = (i * 2 + n) as f64;
                let phase = (step as f64 + 7.0 * k) / (STEPS as f64 / 2.0) * std::f64::consts::PI;
                let height = 2.2 + (k % 4.0) * 0.8; // peaks at 11.2 (yellow) … 13.6 (red)
                let value = 9.0 + height * phase.sin().powi(2);
                batch.push(Reading {
                    sensor: SensorId::new(format!("river-{i}-wl-{j}")),
                    site: SiteId::new(format!("river-{i}")),
                    kind: SensorKind::WaterLevel,
                    ts: Timestamp::from_millis(T0 + step * STEP_MS),
                    unit: Arc::from("m"),
                    value: Value::Scalar((value * 1000.0).round() / 1000.0),
                    quality: Quality::Good,
                    exercise: false,
                });
            }
        }
        steps.push(batch);
    }
    steps
}

/// MQTT messages a gateway per site would send: one batch per site per step.
fn messages(steps: &[Vec<Reading>]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for batch in steps {
        for i in 0..SITES {
            let site = format!("river-{i}");
            let mine: Vec<&Reading> = batch.iter().filter(|r| r.site.as_str() == site).collect();
            out.push((topic::batch_topic(&site), encode_batch(mine)));
        }
    }
    out
}

/// The events of one uninterrupted in-process run, by event id.
fn expected_events(steps: &[Vec<Reading>]) -> BTreeMap<String, AlertEvent> {
    let registry = Registry::from_toml(&registry_toml()).unwrap();
    let mut engine = Engine::new(&RuleSet::from_toml(RULES).unwrap(), &registry).unwrap();
    let mut out = Vec::new();
    for batch in steps {
        for r in batch {
            engine.process(r, r.ts, &mut out);
        }
    }
    out.into_iter().map(|e| (e.event_id.clone(), e)).collect()
}

/// Mosquitto, tansu, victoria-metrics and the riskwatch processes of one test.
struct Stack {
    dir: tempfile::TempDir,
    mqtt: Server,
    kafka: Server,
    vm: Server,
    config: PathBuf,
    procs: BTreeMap<String, Child>,
}

impl Stack {
    fn start() -> Stack {
        Self::start_with(RULES, &registry_toml())
    }

    fn start_with(rules: &str, registry: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let mqtt = servers::mosquitto(dir.path());
        let kafka = servers::tansu(dir.path());
        let vm = servers::victoria_metrics(dir.path());
        std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
        std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
        let config = dir.path().join("riskwatch.toml");
        std::fs::write(
            &config,
            format!(
                r#"registry = "registry.toml"
rules = "rules.toml"

[mqtt]
host = "127.0.0.1"
port = {}

[kafka]
brokers = "127.0.0.1:{}"
readings_partitions = 4
alerts_partitions = 2

[questdb]
conf = "http::addr=127.0.0.1:{};protocol_version=1;retry_timeout=1000;"
flush_rows = 500
flush_interval = "300ms"
# victoria-metrics speaks QuestDB's line protocol but has no SQL endpoint to check tables on.
tables = "unchecked"

[rules_worker]
commit_interval = "500ms"
"#,
                mqtt.port, kafka.port, vm.port
            ),
        )
        .unwrap();
        Stack { dir, mqtt, kafka, vm, config, procs: BTreeMap::new() }
    }

    /// Adds a line to a section of the topology file (processes started later read it).
    fn setting(&self, section: &str, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let header = format!("[{section}]\n");
        assert!(text.contains(&header), "no [{section}] in the topology file");
        let text = text.replace(&header, &format!("{header}{line}\n"));
        std::fs::write(&self.config, text).unwrap();
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts `riskwatch COMMAND --config …` as instance `name`, and waits for its ready line.
    fn spawn(&mut self, name: &str, command: &str) {
        self.spawn_env(name, command, &[]);
    }

    /// Like `spawn`, with extra environment variables.
    fn spawn_env(&mut self, name: &str, command: &str, env: &[(&str, &str)]) {
        let config = self.config.clone();
        self.spawn_config(name, command, env, &config);
    }

    /// Like `spawn_env`, with a topology file of its own.
    fn spawn_config(&mut self, name: &str, command: &str, env: &[(&str, &str)], config: &std::path::Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log(name)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
            .args([command, "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .env("RISKWATCH_INSTANCE", name)
            .env("RISKWATCH_LOG", "warn,riskwatch=info")
            .current_dir(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(name.to_string(), child);
        let log = self.log(name);
        wait_until(Duration::from_secs(90), &format!("{name} ready"), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!text.contains("error:"), "{name} failed:\n{text}");
            // A restarted process appends: look for one ready line per start. A process running
            // every component is ready for gateways once its ingest is.
            let needle = if command == "run" { "ingest ready:" } else { " ready:" };
            let starts = text.matches(needle).count();
            (starts >= self.starts(name)).then_some(())
        });
    }

    fn starts(&self, name: &str) -> usize {
        // How many times `name` has been started (killed ones leave "KILLED" marks in its log).
        1 + std::fs::read_to_string(self.log(name)).unwrap_or_default().matches("=== KILLED").count()
    }

    fn kill9(&mut self, name: &str) {
        let mut c = self.procs.remove(name).expect("process running");
        c.kill().unwrap();
        c.wait().unwrap();
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new().append(true).open(self.log(name)).unwrap();
        writeln!(log, "=== KILLED by the test (kill -9)").unwrap();
    }

    /// Sends SIGTERM (a service manager's stop) to `name` and returns how long it took to exit,
    /// or `None` if it was still running after `within` (then it is killed).
    fn terminate(&mut self, name: &str, within: Duration) -> Option<Duration> {
        let mut c = self.procs.remove(name).expect("process running");
        let began = Instant::now();
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        while began.elapsed() < within {
            if c.try_wait().unwrap().is_some() {
                return Some(began.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    fn start_all(&mut self) {
        self.spawn("ingest-1", "ingest");
        self.spawn("rules-1", "rules");
        self.spawn("rules-2", "rules");
        self.spawn("sink-1", "sink");
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["ingest-1", "rules-1", "rules-2", "sink-1"] {
            let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s += &format!("--- {name}\n{}\n", lines[lines.len().saturating_sub(25)..].join("\n"));
        }
        s += &format!("--- tansu\n{}\n--- mosquitto\n{}\n", self.kafka.log_tail(), self.mqtt.log_tail());
        s
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs of the failed run:\n{}", self.logs());
            if std::env::var_os("RISKWATCH_TEST_KEEP").is_some() {
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
                eprintln!("test directory kept: {}", dir.keep().display());
            }
        }
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A gateway publishing QoS 1 at a steady pace from its own threads; `acked` counts messages
/// the broker acknowledged. Its session is persistent, so a broker restart re-sends what was
/// in flight.
struct Gateway {
    acked: Arc<AtomicUsize>,
    total: usize,
}

impl Gateway {
    fn start(port: u16, messages: Vec<(String, Vec<u8>)>, per_second: u32) -> Gateway {
        Self::start_as("test-gateway", port, messages, per_second)
    }

    fn start_as(client_id: &str, port: u16, messages: Vec<(String, Vec<u8>)>, per_second: u32) -> Gateway {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_clean_session(false).set_keep_alive(Duration::from_secs(5)).set_inflight(20);
        let (client, mut connection) = Client::new(opts, 64);
        let acked = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&acked);
        std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        let total = messages.len();
        std::thread::spawn(move || {
            let gap = Duration::from_secs_f64(1.0 / f64::from(per_second));
            for (t, p) in messages {
                if client.publish(t, QoS::AtLeastOnce, false, p).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
            // Keep the client alive until everything is acknowledged.
            std::thread::sleep(Duration::from_secs(600));
            drop(client);
        });
        Gateway { acked, total }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn wait_acked(&self, n: usize, within: Duration) {
        wait_until(within, &format!("{n} messages acknowledged by the broker"), || (self.acked() >= n).then_some(()));
    }
}

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Collects every message on `filter` (persistent session, so a broker restart loses nothing).
fn listen(port: u16, client_id: &str, filter: &'static str) -> Seen {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(false).set_keep_alive(Duration::from_secs(5)).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 64);
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let (s, sub) = (Arc::clone(&seen), Arc::clone(&subscribed));
    std::thread::spawn(move || {
        for ev in connection.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    sub.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    s.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()))
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    wait_until(Duration::from_secs(10), "subscription", || (subscribed.load(Ordering::SeqCst) > 0).then_some(()));
    seen
}

/// Alert events received so far by a listener on the alert topics.
fn alerts_seen(seen: &Seen) -> Vec<AlertEvent> {
    seen.lock().unwrap().iter().filter_map(|(_, p)| serde_json::from_slice::<AlertEvent>(p).ok()).collect()
}

/// Every record of `topic` (all partitions, from the beginning) as (key, headers, value).
fn read_topic(brokers: &str, topic_name: &str) -> Vec<(String, HashMap<String, String>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic_name), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in md.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic_name, p.id(), Duration::from_secs(10)).unwrap();
        if high > low {
            tpl.add_partition_offset(topic_name, p.id(), Offset::Offset(low)).unwrap();
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done: HashMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    while done.values().any(|d| !d) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            out.push((key, headers, m.payload().unwrap_or_default().to_vec()));
            if m.offset() + 1 >= ends[&m.partition()] {
                done.insert(m.partition(), true);
            }
        }
    }
    out
}

fn kafka_events(stack: &Stack) -> Vec<AlertEvent> {
    read_topic(&format!("127.0.0.1:{}", stack.kafka.port), "riskwatch.alerts")
        .into_iter()
        .map(|(_, _, v)| serde_json::from_slice::<AlertEvent>(&v).expect("alert record is an alert event"))
        .collect()
}

/// victoria-metrics series of `metric`: label map and timestamps (ms).
fn vm_series(port: u16, selector: &str) -> Vec<(HashMap<String, String>, Vec<i64>)> {
    let body = servers::http_get(
        port,
        &format!("/api/v1/export?match[]={}&start=0&reduce_mem_usage=0", servers::urlencode(selector)),
    );
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("export line {l:?}: {e}"));
            let labels = v["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let ts = v["timestamps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
            (labels, ts)
        })
        .collect()
}

/// (sensor, ts) of every reading stored, with how often each is stored.
fn stored_readings(stack: &Stack) -> BTreeMap<(String, i64), usize> {
    let mut out = BTreeMap::new();
    for (labels, ts) in vm_series(stack.vm.port, "readings_value") {
        for t in ts {
            *out.entry((labels["sensor"].clone(), t)).or_insert(0) += 1;
        }
    }
    out
}

/// Alert ids with events in the store.
fn stored_alerts(stack: &Stack) -> BTreeSet<String> {
    vm_series(stack.vm.port, "alert_events_seq").into_iter().map(|(labels, _)| labels["alert_id"].clone()).collect()
}

/// How often each alert event may reach Kafka and the officers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Delivery {
    /// One rules member, nothing killed or restarted: each event exactly once.
    ExactlyOnce,
    /// Crashes, restarts, or a group rebalance (two workers): the work since the last commit
    /// point is redone, so an event may come again — with the same id and content.
    AtLeastOnce,
}

/// Checks alert events received (by event id) against the expected ones, counted per id.
fn check_events(what: &str, delivery: Delivery, got: &[AlertEvent], expected: &BTreeMap<String, AlertEvent>) {
    let ids = got.iter().map(|e| e.event_id.as_str());
    let want = expected.keys().map(String::as_str);
    match delivery {
        Delivery::ExactlyOnce => assert_each_once(what, ids, want),
        Delivery::AtLeastOnce => {
            let counts = assert_each_at_least_once(what, ids, want);
            let again = counts.values().filter(|n| **n > 1).count();
            eprintln!("{what}: {} events, {again} of them more than once (allowed here)", counts.len());
        }
    }
}

/// Waits until Kafka, MQTT and the store hold everything, then checks it against the
/// uninterrupted run: each reading stored once; each alert event on Kafka and on MQTT once or,
/// where `delivery` allows, at least once.
fn check_everything_arrived_once(stack: &Stack, steps: &[Vec<Reading>], mqtt_seen: &Seen, delivery: Delivery) {
    let expected = expected_events(steps);
    assert!(expected.len() > 100, "the scenario must raise plenty of alerts, got {}", expected.len());
    let raised: Vec<&str> =
        expected.values().filter(|e| e.change == AlertChange::Raised).map(|e| e.alert_id.as_str()).collect();
    for level in ["blue", "yellow", "orange", "red"] {
        assert!(expected.values().any(|e| e.level.as_str() == level), "scenario reaches {level}");
    }

    // Alert events on Kafka: exactly the expected ids; copies (after a crash) are identical.
    let mut last_count = 0;
    let on_kafka = wait_until(Duration::from_secs(180), "all alert events on Kafka", || {
        let got = kafka_events(stack);
        let ids: BTreeSet<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
        if ids.len() != last_count {
            last_count = ids.len();
            eprintln!("{} of {} expected alert events on Kafka", ids.len(), expected.len());
        }
        expected.keys().all(|id| ids.contains(id.as_str())).then_some(got)
    });
    let mut by_id: BTreeMap<&str, &AlertEvent> = BTreeMap::new();
    for e in &on_kafka {
        let want =
            expected.get(&e.event_id).unwrap_or_else(|| panic!("unexpected alert event {e:?}\n{}", stack.logs()));
        assert_eq!(
            (e.change, e.level, e.ts, e.value),
            (want.change, want.level, want.ts, want.value),
            "event {}",
            e.event_id
        );
        if let Some(had) = by_id.get(e.event_id.as_str()) {
            assert_eq!(*had, e, "event id {} on Kafka with two different contents", e.event_id);
        }
        by_id.insert(&e.event_id, e);
    }
    check_events("alert events on Kafka (by event id)", delivery, &on_kafka, &expected);
    // Each alert raised once: distinct raised events counted per alert.
    assert_each_once(
        "raised events on Kafka (by alert id)",
        by_id.values().filter(|e| e.change == AlertChange::Raised).map(|e| e.alert_id.as_str()),
        raised.iter().copied(),
    );

    // Alert events on MQTT: every expected one reached the officers' subscription.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = alerts_seen(mqtt_seen);
        let ids: BTreeSet<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
        let missing: Vec<&AlertEvent> = expected.values().filter(|e| !ids.contains(e.event_id.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let when: Vec<String> =
                missing.iter().map(|e| format!("{} ({} {})", e.event_id, e.change, e.level)).collect();
            panic!("{} alert events never reached MQTT: {when:?}\n{}", missing.len(), stack.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check_events("alert events on MQTT (by event id)", delivery, &alerts_seen(mqtt_seen), &expected);

    // The store: every reading exactly once by (sensor, ts); every alert present.
    let published = steps.iter().flatten().count();
    let stored = wait_until(Duration::from_secs(120), "all readings in the store", || {
        let s = stored_readings(stack);
        (s.len() >= published).then_some(s)
    });
    assert_each_once(
        "readings in the store (by sensor and ts)",
        stored.iter().flat_map(|(key, n)| std::iter::repeat_n(key.clone(), *n)),
        steps.iter().flatten().map(|r| (r.sensor.as_str().to_string(), r.ts.millis())),
    );
    let alert_ids: BTreeSet<String> = expected.values().map(|e| e.alert_id.clone()).collect();
    let stored_alerts = wait_until(Duration::from_secs(60), "all alerts in the store", || {
        let s = stored_alerts(stack);
        (s.len() >= alert_ids.len()).then_some(s)
    });
    assert_eq!(stored_alerts, alert_ids);
}

/// The whole stack running (ingest, two rules workers, sink), an officer listening on the alert
/// topics and a gateway publishing the scenario at `per_second` messages/s.
fn streaming(per_second: u32) -> (std::sync::MutexGuard<'static, ()>, Stack, Seen, Vec<Vec<Reading>>, Gateway) {
    streaming_with(per_second, &[])
}

/// Like `streaming`, with extra topology settings (section, line).
fn streaming_with(
    per_second: u32,
    settings: &[(&str, &str)],
) -> (std::sync::MutexGuard<'static, ()>, Stack, Seen, Vec<Vec<Reading>>, Gateway) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    for (section, line) in settings {
        stack.setting(section, line);
    }
    stack.start_all();
    let seen = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let steps = readings();
    let gw = Gateway::start(stack.mqtt.port, messages(&steps), per_second);
    (serial, stack, seen, steps, gw)
}

#[test]
fn readings_flow_through_kafka_to_alerts_and_the_store_exactly_once() {
    let (_serial, stack, seen, steps, gw) = streaming(400);
    gw.wait_acked(gw.total, Duration::from_secs(120));
    // Two workers: the group's rebalance as the second joins may hand over a partition with
    // work since its last commit point, which the new owner redoes (same ids and content).
    check_everything_arrived_once(&stack, &steps, &seen, Delivery::AtLeastOnce);
    // Both workers took part (the group shared the partitions).
    for w in ["rules-1", "rules-2"] {
        let log = std::fs::read_to_string(stack.log(w)).unwrap();
        assert!(
            log.contains("partition state restored") || log.contains("starting fresh"),
            "{w} owned no partition:\n{log}"
        );
    }
}

#[test]
fn kill_9_of_ingest_then_a_rules_worker_then_the_sink_loses_and_doubles_nothing() {
    // Static members, as recommended on Apache Kafka: a process restarted under its instance
    // name takes its partitions back at once. (With dynamic members, tansu 0.6 sometimes left
    // the rules group in a rebalance that never completed after the kill — every worker owning
    // nothing for minutes; seen in CI and under load here.)
    let (_serial, mut stack, seen, steps, gw) = streaming_with(60, &[("kafka", "static_membership = true")]);
    let total = gw.total;
    gw.wait_acked(total / 5, Duration::from_secs(120));
    stack.kill9("ingest-1");
    gw.wait_acked(total / 4, Duration::from_secs(120)); // readings pile up at the broker meanwhile
    stack.spawn("ingest-1", "ingest");
    gw.wait_acked(total * 2 / 5, Duration::from_secs(120));
    stack.kill9("rules-1");
    stack.spawn("rules-1", "rules");
    gw.wait_acked(total * 3 / 5, Duration::from_secs(120));
    stack.kill9("sink-1");
    stack.spawn("sink-1", "sink");
    gw.wait_acked(total, Duration::from_secs(180));
    check_everything_arrived_once(&stack, &steps, &seen, Delivery::AtLeastOnce);
}

#[test]
fn mosquitto_kafka_and_store_restarts_mid_stream_lose_nothing() {
    let (_serial, mut stack, seen, steps, gw) = streaming(60);
    let total = gw.total;
    gw.wait_acked(total / 4, Duration::from_secs(120));
    stack.mqtt.stop();
    // Nothing can make progress while the broker is away: the outage is a span of time.
    std::thread::sleep(Duration::from_secs(1));
    stack.mqtt.start();
    gw.wait_acked(total / 2, Duration::from_secs(120));
    // The broker process dies (kill -9: tansu 0.6.0 answers requests with errors while it shuts
    // down gracefully, which no Kafka broker does) and comes back on the same storage.
    stack.kafka.kill9();
    gw.wait_acked(total * 11 / 20, Duration::from_secs(120)); // gateways go on publishing meanwhile
    stack.kafka.start();
    gw.wait_acked(total * 3 / 4, Duration::from_secs(120));
    // The store goes away for a few seconds: the sink retries its flush and commits nothing
    // until the rows are written.
    stack.vm.stop();
    gw.wait_acked(total * 17 / 20, Duration::from_secs(120));
    stack.vm.start();
    gw.wait_acked(total, Duration::from_secs(180));
    check_everything_arrived_once(&stack, &steps, &seen, Delivery::AtLeastOnce);
    let sink_log = std::fs::read_to_string(stack.log("sink-1")).unwrap();
    assert!(sink_log.contains("QuestDB flush failed; retrying"), "the sink met the store outage:\n{sink_log}");
    // Nobody restarted a riskwatch process: they reconnected on their own.
    for (name, c) in stack.procs.iter_mut() {
        assert!(c.try_wait().unwrap().is_none(), "{name} exited");
    }
}

#[test]
fn malformed_input_goes_to_the_dead_letter_topic_with_reason_and_original_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    stack.spawn("ingest-1", "ingest");
    let nan = br#"{"v":1,"kind":"water_level","ts":1594051200000,"unit":"m","value":NaN}"#.to_vec();
    let wrong_unit = br#"{"v":1,"readings":[{"sensor":"river-0-wl-a","kind":"water_level","ts":1594051200000,"unit":"m","value":9.5},{"sensor":"river-0-wl-b","kind":"water_level","ts":1594051200000,"unit":"ft","value":31.2}]}"#.to_vec();
    let gw = Gateway::start(
        stack.mqtt.port,
        vec![
            (topic::reading_topic("river-0", "river-0-wl-a"), nan.clone()),
            (topic::batch_topic("river-0"), wrong_unit),
        ],
        50,
    );
    gw.wait_acked(2, Duration::from_secs(30));
    let brokers = format!("127.0.0.1:{}", stack.kafka.port);
    let dead = wait_until(Duration::from_secs(60), "two dead letters", || {
        let d = read_topic(&brokers, "riskwatch.dead-letters");
        (d.len() >= 2).then_some(d)
    });
    assert_eq!(dead.len(), 2, "{dead:?}");
    let (key, h, raw) = dead.iter().find(|(_, h, _)| h["riskwatch-reason"] == "non_finite").expect("NaN dead letter");
    assert_eq!(key, "river-0");
    assert_eq!(raw, &nan, "original bytes kept");
    assert_eq!(h["riskwatch-mqtt-topic"], "riskwatch/v1/readings/river-0/river-0-wl-a");
    assert!(h["riskwatch-error"].contains("value"), "error names the field: {}", h["riskwatch-error"]);
    let (_, h, raw) = dead.iter().find(|(_, h, _)| h["riskwatch-reason"] != "non_finite").unwrap();
    assert_eq!(h["riskwatch-index"], "1");
    assert_eq!(h["riskwatch-sensor"], "river-0-wl-b");
    assert!(String::from_utf8_lossy(raw).contains("\"ft\""), "the rejected item's bytes are kept");
    // Its valid neighbour went on to the readings topic.
    let readings = read_topic(&brokers, "riskwatch.readings");
    assert_eq!(readings.len(), 1);
    assert!(String::from_utf8_lossy(&readings[0].2).contains("river-0-wl-a"));
}

/// `riskwatch ingest` runs the SL 651 source with `[sl651]`'s limits: a report is acknowledged
/// once Kafka has it; with `max_connections = 1` a second connection is closed at once while
/// the first station still reports; silent for `idle_timeout`, the first is closed too.
#[test]
fn ingest_honours_the_sl651_idle_timeout_and_connection_limit() {
    use riskwatch_ingest::sl651::report::Element;
    use riskwatch_simulators::sl651_rtu::{PlannedReport, Rtu, RtuIdentity};
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let registry = registry_toml().replace(
        "id = \"river-0-wl-a\"\n",
        "id = \"river-0-wl-a\"\nsl651 = { station = \"0012345678\", element = \"39\" }\n",
    );
    let mut stack = Stack::start_with(RULES, &registry);
    let sl651 = format!("127.0.0.1:{}", free_port());
    let mut config = std::fs::read_to_string(&stack.config).unwrap();
    config += &format!("\n[sl651]\nlisten = \"{sl651}\"\nidle_timeout = \"2s\"\nmax_connections = 1\n");
    std::fs::write(&stack.config, config).unwrap();
    stack.spawn("ingest-1", "ingest");
    let id = RtuIdentity::river("0012345678").unwrap();
    let report = |step: i64| PlannedReport {
        function: 0x32,
        observed_at: Timestamp(T0 + step * STEP_MS),
        elements: vec![Element::number(0x39, Some(9.5), 4, 3).unwrap()],
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ack = Duration::from_secs(30);
        let mut first = Rtu::connect(&sl651, id.clone()).await.unwrap();
        first.report(&report(0), ack).await.expect("acknowledged once Kafka has it");
        let mut second = Rtu::connect(&sl651, id.clone()).await.unwrap();
        let refused = second.report(&report(1), ack).await.expect_err("beyond max_connections");
        assert!(matches!(refused.kind(), UnexpectedEof | ConnectionReset | BrokenPipe), "{refused}");
        first.report(&report(2), ack).await.expect("the first station still reports");
        let since = Instant::now();
        let closed = first.acknowledgement(u16::MAX, ack).await.expect_err("closed for idleness");
        assert_eq!(closed.kind(), UnexpectedEof, "{closed}");
        assert!(since.elapsed() >= Duration::from_millis(1500), "closed after {:?}", since.elapsed());
    });
    let readings = read_topic(&format!("127.0.0.1:{}", stack.kafka.port), "riskwatch.readings");
    assert_eq!(readings.len(), 2, "the two acknowledged reports, and not the refused one");
    let log = std::fs::read_to_string(stack.log("ingest-1")).unwrap();
    assert!(log.contains("SL 651 connection refused"), "{log}");
}

/// The sink never drops what it cannot store: with JSON records (third-party format) and a sink
/// whose registry is older than ingest's (it lacks a sensor), that sensor's readings land in the
/// dead-letter topic — each once, with its bytes, the reason and where it was read — and the
/// sink's metric counts them; the other sensor's readings are stored.
#[test]
fn readings_the_sinks_registry_refuses_go_to_the_dead_letter_topic_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    stack.setting("kafka", "record_format = \"json\"");
    stack.spawn("ingest-1", "ingest");
    // The sink's registry: the same, without river-0-wl-b.
    let full = registry_toml();
    let gone = "[[sensors]]\nid = \"river-0-wl-b\"\nsite = \"river-0\"\nkind = \"water_level\"\nunit = \"m\"\n\
                attributes = { warning_level = 11.0 }\n";
    assert!(full.contains(gone), "the registry changed: remove river-0-wl-b again");
    std::fs::write(stack.dir.path().join("sink-registry.toml"), full.replace(gone, "")).unwrap();
    let sink_config = stack.dir.path().join("sink.toml");
    let text = std::fs::read_to_string(&stack.config).unwrap();
    std::fs::write(&sink_config, text.replace("registry = \"registry.toml\"", "registry = \"sink-registry.toml\""))
        .unwrap();
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    stack.spawn_config("sink-1", "sink", &[("RISKWATCH_METRICS_LISTEN", &listen)], &sink_config);

    const N: i64 = 12;
    let t0 = 1_594_051_200_000i64;
    let mut msgs = Vec::new();
    for i in 0..N {
        for sensor in ["river-0-wl-a", "river-0-wl-b"] {
            let body = format!(r#"{{"v":1,"kind":"water_level","ts":{},"unit":"m","value":9.5}}"#, t0 + i * 60_000);
            msgs.push((topic::reading_topic("river-0", sensor), body.into_bytes()));
        }
    }
    let gw = Gateway::start(stack.mqtt.port, msgs, 50);
    gw.wait_acked((2 * N) as usize, Duration::from_secs(30));

    let brokers = format!("127.0.0.1:{}", stack.kafka.port);
    let refused = wait_until(Duration::from_secs(60), "the sink's dead letters", || {
        let d: Vec<_> = read_topic(&brokers, "riskwatch.dead-letters")
            .into_iter()
            .filter(|(_, h, _)| h.get("riskwatch-refused-by").map(String::as_str) == Some("sink"))
            .collect();
        (d.len() >= N as usize).then_some(d)
    });
    // Counted per reading: each refused reading exactly once.
    let mut per_ts: BTreeMap<i64, usize> = BTreeMap::new();
    for (key, h, raw) in &refused {
        assert_eq!(key, "river-0");
        assert_eq!(h["riskwatch-reason"], "unknown_sensor", "{h:?}");
        assert_eq!(h["riskwatch-sensor"], "river-0-wl-b");
        assert!(h["riskwatch-source"].starts_with("riskwatch.readings/"), "where it was read: {h:?}");
        let item: serde_json::Value = serde_json::from_slice(raw).expect("the reading's own bytes");
        assert_eq!(item["sensor"], "river-0-wl-b");
        *per_ts.entry(item["ts"].as_i64().expect("ts")).or_default() += 1;
    }
    let expected: BTreeMap<i64, usize> = (0..N).map(|i| (t0 + i * 60_000, 1)).collect();
    assert_eq!(per_ts, expected, "every refused reading dead-lettered once");
    // The other sensor's readings are stored, each once.
    let stored = wait_until(Duration::from_secs(60), "wl-a stored", || {
        let s = stored_readings(&stack);
        (s.keys().filter(|(sensor, _)| sensor == "river-0-wl-a").count() >= N as usize).then_some(s)
    });
    assert!(stored.iter().all(|((sensor, _), n)| sensor == "river-0-wl-a" && *n == 1), "{stored:?}");
    // And the metric says so.
    let body = reqwest::blocking::get(format!("http://{listen}/metrics")).unwrap().text().unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("riskwatch_sink_dead_letters_total") && l.contains("unknown_sensor"))
        .unwrap_or_else(|| panic!("no dead-letter metric:\n{body}"));
    assert!(line.ends_with(&format!(" {N}")), "{line}");
}

#[test]
fn officers_commands_reach_the_worker_that_owns_the_alert() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    stack.start_all();
    let alerts = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let errors = listen(stack.mqtt.port, "test-console", topic::COMMAND_ERRORS_TOPIC);
    let steps = readings();
    let gw = Gateway::start(stack.mqtt.port, messages(&steps[..40]), 400);
    gw.wait_acked(gw.total, Duration::from_secs(60));
    let raised = wait_until(Duration::from_secs(60), "a raised alert", || {
        alerts_seen(&alerts).into_iter().find(|e| e.change == AlertChange::Raised)
    });
    let command = |fields: &str| -> (String, Vec<u8>) {
        (topic::COMMANDS_TOPIC.to_string(), format!("{{{fields}, \"by\": \"Li Wei\"}}").into_bytes())
    };
    let ack = format!(
        r#""command_id": "c-1", "alert_id": "{}", "site": "{}", "action": "acknowledge", "note": "patrol sent""#,
        raised.alert_id, raised.site
    );
    let no_site = format!(r#""command_id": "c-2", "alert_id": "{}", "action": "acknowledge""#, raised.alert_id);
    let unknown = format!(
        r#""command_id": "c-3", "alert_id": "0000000000000000", "site": "{}", "action": "acknowledge""#,
        raised.site
    );
    let officer = Gateway::start_as(
        "test-officer-app",
        stack.mqtt.port,
        vec![command(&ack), command(&no_site), command(&unknown)],
        50,
    );
    officer.wait_acked(3, Duration::from_secs(30));
    let acked = wait_until(Duration::from_secs(60), "the acknowledged event", || {
        alerts_seen(&alerts).into_iter().find(|e| e.change == AlertChange::Acknowledged)
    });
    assert_eq!(acked.alert_id, raised.alert_id);
    assert_eq!(acked.by.as_deref(), Some("Li Wei"));
    assert_eq!(acked.command_id.as_deref(), Some("c-1"));
    let codes = wait_until(Duration::from_secs(60), "two command errors", || {
        let e = errors.lock().unwrap();
        let codes: Vec<String> = e
            .iter()
            .map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).unwrap()["code"].as_str().unwrap().to_string())
            .collect();
        (codes.len() >= 2).then_some(codes)
    });
    let mut codes = codes;
    codes.sort();
    assert_eq!(codes, ["site_required", "unknown_alert"]);
    // The acknowledgement is on the Kafka alerts topic too.
    wait_until(Duration::from_secs(30), "acknowledged event on Kafka", || {
        kafka_events(&stack).iter().any(|e| e.event_id == acked.event_id).then_some(())
    });
}

/// Out-of-service windows over Kafka (rules.md §4.3): each rules worker owns only some sites,
/// so a window goes to the worker of its site — a sensor's from the registry (its `site` may be
/// left out, or even wrong), a rule's from the site it names. A rule-wide window (a rule without
/// a site, `dq.stale` or a configured rule) cannot be owned by one worker: it is refused, with
/// the reason and the command's id on the command error topic, not dropped nor half applied.
#[test]
fn out_of_service_windows_reach_their_sites_worker_and_a_rule_wide_one_is_refused_with_the_reason() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    stack.start_all();
    let alerts = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let errors = listen(stack.mqtt.port, "test-console", topic::COMMAND_ERRORS_TOPIC);
    let command = |id: &str, action: &str, target: &str| -> (String, Vec<u8>) {
        let minutes = if action == "out_of_service" { r#", "minutes": 60"# } else { "" };
        let body = format!(
            r#"{{"command_id": "{id}", "action": "{action}", {target}{minutes}, "by": "Li Wei", "note": "maintenance"}}"#
        );
        (topic::COMMANDS_TOPIC.to_string(), body.into_bytes())
    };
    let commands = vec![
        command("oos-rule-site", "out_of_service", r#""rule": "water-level", "site": "river-3""#),
        command("oos-rule-wide", "out_of_service", r#""rule": "dq.stale""#),
        command("oos-sensor", "out_of_service", r#""sensor": "river-5-wl-a""#),
        command("rts-rule-wide", "return_to_service", r#""rule": "water-level""#),
        command("rts-sensor", "return_to_service", r#""sensor": "river-5-wl-a", "site": "river-0""#),
    ];
    let officer = Gateway::start_as("test-officer-app", stack.mqtt.port, commands, 50);
    officer.wait_acked(5, Duration::from_secs(30));
    let by_command = |id: &str| {
        let (id, alerts) = (id.to_string(), Arc::clone(&alerts));
        move || alerts_seen(&alerts).into_iter().find(|e| e.command_id.as_deref() == Some(id.as_str()))
    };
    let at_site = wait_until(Duration::from_secs(60), "the rule's window at river-3", by_command("oos-rule-site"));
    assert_eq!((at_site.rule_id.as_ref(), at_site.subject.as_str()), ("oos.window", "water-level"));
    assert_eq!(at_site.site.as_str(), "river-3");
    assert_eq!(at_site.change, AlertChange::Raised);
    let sensor = wait_until(Duration::from_secs(60), "the sensor's window", by_command("oos-sensor"));
    assert_eq!((sensor.subject.as_str(), sensor.site.as_str()), ("river-5-wl-a", "river-5"));
    let back = wait_until(Duration::from_secs(60), "the sensor back in service", by_command("rts-sensor"));
    assert_eq!((back.alert_id.as_str(), back.change), (sensor.alert_id.as_str(), AlertChange::Cleared));
    let refused = wait_until(Duration::from_secs(60), "two refusals", || {
        let e = errors.lock().unwrap();
        let got: BTreeMap<String, serde_json::Value> = e
            .iter()
            .map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).unwrap())
            .map(|v| (v["command_id"].as_str().unwrap_or("").to_string(), v))
            .collect();
        (got.len() >= 2).then_some(got)
    });
    assert_eq!(refused.keys().collect::<Vec<_>>(), ["oos-rule-wide", "rts-rule-wide"], "{refused:?}");
    for (id, rule) in [("oos-rule-wide", "dq.stale"), ("rts-rule-wide", "water-level")] {
        let r = &refused[id];
        assert_eq!(r["code"], "site_required", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains(rule) && error.contains("rule-wide") && error.contains("per site"), "{error}");
    }
    // Nothing else was opened anywhere: the only windows are the two applied ones.
    let windows: BTreeSet<String> = alerts_seen(&alerts)
        .into_iter()
        .filter(|e| e.rule_id.as_ref() == "oos.window" && e.change == AlertChange::Raised)
        .map(|e| e.command_id.unwrap_or_default())
        .collect();
    assert_eq!(windows, BTreeSet::from(["oos-rule-site".to_string(), "oos-sensor".to_string()]));
}

#[test]
fn one_process_runs_ingest_rules_and_sink_from_one_topology_file() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    let metrics_at = format!("127.0.0.1:{}", free_port());
    stack.spawn_env("all-1", "run", &[("RISKWATCH_METRICS_LISTEN", &metrics_at)]);
    let seen = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let steps = readings();
    let gw = Gateway::start(stack.mqtt.port, messages(&steps), 400);
    gw.wait_acked(gw.total, Duration::from_secs(120));
    check_everything_arrived_once(&stack, &steps, &seen, Delivery::ExactlyOnce);
    let log = std::fs::read_to_string(stack.log("all-1")).unwrap();
    for ready in ["ingest ready", "rules worker all-1 ready", "sink all-1 ready"] {
        assert!(log.contains(ready), "{ready:?} missing:\n{log}");
    }

    // The process's metrics endpoint tells the same story as the servers.
    let ready = servers::http_get_status(&metrics_at, "/readyz");
    assert_eq!(ready.0, 200, "{}", ready.1);
    for part in ["ingest: ready", "rules: ready", "sink: ready"] {
        assert!(ready.1.contains(part), "{part:?} missing from /readyz:\n{}", ready.1);
    }
    let readings_total = (STEPS as usize * SITES * 2) as f64;
    let expected = expected_events(&steps);
    let raised = expected.values().filter(|e| e.change.as_str() == "raised").count() as f64;
    let sample = servers::metric_sample;
    let want = [
        ("riskwatch_mqtt_messages_total", gw.total as f64),
        ("riskwatch_readings_in_total{source=\"mqtt\"}", readings_total),
        ("riskwatch_readings_in_total{source=\"kafka\"}", readings_total),
        ("riskwatch_readings_evaluated_total", readings_total),
        ("riskwatch_readings_stored_total{sink=\"questdb\"}", readings_total),
        ("riskwatch_alert_events_stored_total{sink=\"questdb\"}", expected.len() as f64),
    ];
    let text = wait_until(Duration::from_secs(30), "metrics matching the run", || {
        let text = servers::http_get_status(&metrics_at, "/metrics").1;
        let raised_seen: f64 = text
            .lines()
            .filter(|l| l.starts_with("riskwatch_alert_events_total{") && l.contains("change=\"raised\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let lags: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("riskwatch_kafka_consumer_lag{group=\"riskwatch-rules\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        let ok = want.iter().all(|(s, v)| sample(&text, s) == Some(*v))
            && raised_seen == raised
            && lags.len() == 4
            // Caught up: at most the workers' own clock ticks (one record per partition per
            // second) since an idle partition's last save (every 10 s) not yet committed.
            && lags.iter().all(|l| *l <= 12.0);
        ok.then_some(text)
    });
    // Ingest gathers the readings of the messages it reads together into one record per site:
    // at most one record per message, at least one in all.
    let records = sample(&text, "riskwatch_kafka_records_produced_total{topic=\"riskwatch.readings\"}").unwrap();
    assert!((1.0..=gw.total as f64).contains(&records), "{records} readings records for {} messages", gw.total);
    assert!(sample(&text, "riskwatch_rule_evaluation_seconds_count").unwrap() >= records, "{text}");
    assert!(sample(&text, "riskwatch_sink_flush_seconds_count{sink=\"questdb\"}").unwrap() >= 1.0, "{text}");
    assert_eq!(servers::undocumented_metrics(&text), Vec::<String>::new(), "every metric is in docs/operations.md");
}

#[test]
fn a_drill_produced_to_kafka_is_evaluated_apart_and_marked_on_kafka_mqtt_and_in_the_store() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start();
    stack.start_all();
    let seen = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let steps = readings();
    // Live: the first 40 steps from the gateway. Drill: the whole recording — the same
    // sensors and times — as a CSV file, produced straight to Kafka by `riskwatch replay`.
    let live = &steps[..40];
    let gw = Gateway::start(stack.mqtt.port, messages(live), 400);
    let mut csv = String::from("sensor,ts,value\n");
    for r in steps.iter().flatten() {
        let Value::Scalar(v) = r.value else { unreachable!() };
        csv += &format!("{},{},{v}\n", r.sensor.as_str(), r.ts.millis());
    }
    std::fs::write(stack.dir.path().join("drill.csv"), csv).unwrap();
    let brokers = format!("127.0.0.1:{}", stack.kafka.port);
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["replay", "--registry", "registry.toml", "--rules", "rules.toml", "--input", "drill.csv"])
        .args(["--format", "csv", "--drill", "--kafka", &brokers, "--speed", "1e9"])
        .current_dir(stack.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay --drill:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let total: usize = steps.iter().map(Vec::len).sum();
    assert!(stdout.contains(&format!("{total} readings")), "{stdout}");
    gw.wait_acked(gw.total, Duration::from_secs(60));

    // Live alerts exactly as a live-only run gives them; the drill's are the full recording's,
    // each marked.
    let want_live = expected_events(live);
    let want_drill: BTreeMap<String, AlertEvent> =
        expected_events(&steps).into_values().map(|e| (format!("exercise-{}", e.event_id), e)).collect();
    let on_kafka = wait_until(Duration::from_secs(120), "live and drill alert events on Kafka", || {
        let got = kafka_events(&stack);
        let ids: BTreeSet<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
        (want_live.keys().chain(want_drill.keys()).all(|id| ids.contains(id.as_str()))).then_some(got)
    });
    for e in &on_kafka {
        if let Some(want) = want_drill.get(&e.event_id) {
            assert!(e.exercise && e.alert_id == format!("exercise-{}", want.alert_id), "{e:?}");
            assert!(e.message_zh.starts_with("【演习】") && e.message_en.starts_with("[EXERCISE] "), "{e:?}");
            assert_eq!((e.change, e.level, e.ts), (want.change, want.level, want.ts));
        } else {
            let want = want_live.get(&e.event_id).unwrap_or_else(|| panic!("unexpected event {e:?}"));
            assert!(!e.exercise, "{e:?}");
            assert_eq!((e.change, e.level, e.ts), (want.change, want.level, want.ts));
        }
    }
    // The officers' subscription gets both, the drill's marked.
    let mqtt = wait_until(Duration::from_secs(60), "drill alerts on MQTT", || {
        let s = alerts_seen(&seen);
        let ids: BTreeSet<&str> = s.iter().map(|e| e.event_id.as_str()).collect();
        want_drill.keys().all(|id| ids.contains(id.as_str())).then_some(s)
    });
    assert!(mqtt.iter().all(|e| e.exercise == e.event_id.starts_with("exercise-")));
    // The store: drill readings apart from the real history, which holds only the live ones.
    let exercise_rows = wait_until(Duration::from_secs(60), "drill readings in the store", || {
        let n: usize = vm_series(stack.vm.port, "exercise_readings_value").iter().map(|(_, ts)| ts.len()).sum();
        (n >= total).then_some(n)
    });
    assert_eq!(exercise_rows, total);
    let live_rows = wait_until(Duration::from_secs(60), "live readings in the store", || {
        let n: usize = stored_readings(&stack).len();
        (n >= live.iter().map(Vec::len).sum::<usize>()).then_some(n)
    });
    assert_eq!(live_rows, live.iter().map(Vec::len).sum::<usize>());
    let drill_alert_ids: BTreeSet<String> = want_drill.values().map(|e| format!("exercise-{}", e.alert_id)).collect();
    wait_until(Duration::from_secs(60), "drill alerts in the store", || {
        let stored = stored_alerts(&stack);
        drill_alert_ids.iter().all(|id| stored.contains(id)).then_some(())
    });
}

/// Offsets of the readings topic committed by the sink group (what the store has confirmed).
fn sink_committed(stack: &Stack) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{}", stack.kafka.port))
        .set("group.id", "riskwatch-sink")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition("riskwatch.readings", p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    committed.elements().iter().filter_map(|e| if let Offset::Offset(o) = e.offset() { Some(o) } else { None }).sum()
}

/// Samples `pid`'s memory until `until` holds (or `within` passes, which fails); returns the
/// largest sample.
fn peak_rss_while(pid: u32, within: Duration, what: &str, until: impl Fn() -> bool) -> u64 {
    let deadline = Instant::now() + within;
    let mut peak = 0;
    while !until() {
        peak = peak.max(rss_kib(pid));
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
    peak.max(rss_kib(pid))
}

/// A store outage of minutes (default 120 s; `RISKWATCH_OUTAGE_SECS` for longer), then Kafka
/// unreachable from ingest for half a minute, while a gateway keeps publishing: officers keep
/// getting alerts through the store outage, the backlog waits in Kafka (the sink commits
/// nothing and its memory stays flat) and in Mosquitto (ingest acknowledges nothing Kafka has
/// not confirmed, and its memory stays flat); once both are back, every reading and alert is
/// stored exactly once and every process is still the one started.
#[test]
fn outages_of_the_store_for_minutes_and_of_kafka_lose_nothing_with_memory_bounded() {
    let outage =
        Duration::from_secs(std::env::var("RISKWATCH_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120));
    let total = STEPS as usize * SITES;
    // The stream outlasts both outages and the recoveries.
    let per_second = (total as u64 / (outage.as_secs() + 80)).max(1) as u32;
    let (_serial, mut stack, seen, steps, gw) = streaming(per_second);
    gw.wait_acked(total / 20, Duration::from_secs(120));
    let pid = |name: &str| stack.procs[name].id();
    let (sink, ingest) = (pid("sink-1"), pid("ingest-1"));
    wait_until(Duration::from_secs(60), "the sink's first commit", || (sink_committed(&stack) > 0).then_some(()));

    // 1. The store is down for minutes.
    let sink_before = rss_kib(sink);
    stack.vm.stop();
    let committed_at_start = sink_committed(&stack);
    let (alerts_at_start, acked_at_start) = (alerts_seen(&seen).len(), gw.acked());
    let start = Instant::now();
    let sink_peak =
        peak_rss_while(sink, outage + Duration::from_secs(5), "the outage to end", || start.elapsed() >= outage);
    let committed_at_end = sink_committed(&stack);
    let alerts_during = alerts_seen(&seen).len() - alerts_at_start;
    let acked_during = gw.acked() - acked_at_start;
    stack.vm.start();
    eprintln!(
        "store outage {outage:?}: {acked_during} gateway messages, {alerts_during} alerts to officers, sink commits \
         {committed_at_start} → {committed_at_end}, sink RSS {sink_before} KiB before, peak {sink_peak} KiB"
    );
    assert!(acked_during > total / 4, "the gateway kept publishing through the outage ({acked_during} messages)");
    assert!(alerts_during > 10, "officers kept getting alerts while the store was down ({alerts_during})");
    assert!(
        committed_at_end <= committed_at_start + 4,
        "the sink commits nothing it has not stored: {committed_at_start} → {committed_at_end}"
    );
    assert!(
        sink_peak < sink_before + 32 * 1024,
        "the sink's memory stays bounded through the outage: {sink_before} KiB before, peak {sink_peak} KiB"
    );

    // 2. Kafka unreachable from ingest for half a minute (kill -9; see the restart test).
    gw.wait_acked(gw.acked() + total / 40, Duration::from_secs(120));
    let ingest_before = rss_kib(ingest);
    stack.kafka.kill9();
    let acked_at_kill = gw.acked();
    let start = Instant::now();
    let ingest_peak =
        peak_rss_while(ingest, Duration::from_secs(35), "30 s without Kafka", || start.elapsed().as_secs() >= 30);
    assert!(gw.acked() > acked_at_kill, "Mosquitto kept accepting the gateway's readings");
    stack.kafka.start();
    eprintln!("Kafka unreachable 30 s: ingest RSS {ingest_before} KiB before, peak {ingest_peak} KiB");
    assert!(
        ingest_peak < ingest_before + 32 * 1024,
        "ingest's memory stays bounded without Kafka: {ingest_before} KiB before, peak {ingest_peak} KiB"
    );

    gw.wait_acked(total, Duration::from_secs(outage.as_secs() + 300));
    check_everything_arrived_once(&stack, &steps, &seen, Delivery::AtLeastOnce);
    for (name, c) in stack.procs.iter_mut() {
        assert!(c.try_wait().unwrap().is_none(), "{name} exited");
    }
}

/// Strong-motion stations of the store-outage backlog test, two accelerometers each.
const STATIONS: usize = 8;
/// Samples per channel of one waveform packet (10 s at 100 Hz; three channels: 24 KB).
const PACKET_SAMPLES: usize = 1000;
/// Packets per sensor in one record: one station's gateway message of 2 × 4 packets, ~190 KB
/// (as JSON near the 256 KiB ingest accepts).
const PACKETS_PER_RECORD: i64 = 4;
/// What the sink may grow by while the store is down: librdkafka's prefetch (8 MiB,
/// `SINK_PREFETCH_KBYTES` in bus/src/config.rs) overshot by up to one fetch (1 MiB per
/// partition of the readings and alerts topics), the fetch buffers the queued records still
/// point into, the record being decoded and the row buffer (`flush_rows`), and what the
/// allocator keeps. Measured +12–22 MiB (with the former 16 MiB prefetch, +22–30 MiB; with no
/// bound, +320 MiB: all of it).
const SINK_ALLOWANCE_KIB: u64 = 32 * 1024;

/// The water-level registry plus the stations.
fn station_registry() -> String {
    let mut s = registry_toml();
    for i in 0..STATIONS {
        s += &format!("[[sites]]\nid = \"station-{i}\"\n");
        for j in ["a", "b"] {
            s += &format!(
                "[[sensors]]\nid = \"station-{i}-acc-{j}\"\nsite = \"station-{i}\"\nkind = \"seismic_acceleration\"\n\
                 unit = \"gal\"\n"
            );
        }
    }
    s
}

/// Record `n` of station `i` as ingest writes it (binary): packets `n * 4 ..` of both sensors.
fn station_record(i: usize, n: i64) -> (String, Vec<u8>) {
    use riskwatch_core::reading::{Channel, Waveform};
    let mut readings = Vec::new();
    for j in ["a", "b"] {
        for k in n * PACKETS_PER_RECORD..(n + 1) * PACKETS_PER_RECORD {
            let channels = ["e", "n", "z"]
                .iter()
                .enumerate()
                .map(|(c, name)| Channel {
                    name: name.to_string(),
                    samples: (0..PACKET_SAMPLES)
                        .map(|s| ((k as usize * 31 + s * 7 + c) % 977) as f64 * 0.013)
                        .collect(),
                })
                .collect();
            readings.push(Reading {
                sensor: SensorId::new(format!("station-{i}-acc-{j}")),
                site: SiteId::new(format!("station-{i}")),
                kind: SensorKind::SeismicAcceleration,
                ts: Timestamp::from_millis(T0 + k * 10_000),
                unit: Arc::from("gal"),
                value: Value::Waveform(Waveform { rate_hz: 100.0, channels }),
                quality: Quality::Good,
                exercise: false,
            });
        }
    }
    let mut records = riskwatch_bus::records::reading_records(&readings, riskwatch_bus::records::RecordFormat::Binary);
    assert_eq!(records.len(), 1);
    records.pop().unwrap()
}

/// Counts records Kafka refused after retrying.
struct CountFailures(AtomicUsize);

impl rdkafka::ClientContext for CountFailures {}

impl rdkafka::producer::ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces records `from..to` of every station to the readings topic as ingest does (its
/// producer settings, partition by site, its headers); returns the bytes produced.
fn produce_stations(brokers: &str, from: i64, to: i64) -> u64 {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use riskwatch_bus::records::{reading_headers, RecordFormat};
    let producer: BaseProducer<CountFailures> = riskwatch_bus::config::KafkaConfig::new(brokers)
        .producer()
        .create_with_context(CountFailures(AtomicUsize::new(0)))
        .unwrap();
    let mut bytes = 0;
    for n in from..to {
        for i in 0..STATIONS {
            let (site, value) = station_record(i, n);
            bytes += value.len() as u64;
            let headers = reading_headers(&topic::batch_topic(&site), Timestamp::now().millis(), RecordFormat::Binary);
            let partition = riskwatch_bus::partition::site_partition(&site, 4);
            let mut record =
                BaseRecord::to("riskwatch.readings").key(&site).payload(&value).headers(headers).partition(partition);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => panic!("producing record {n} of {site}: {e}"),
                }
            }
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(producer.context().0.load(Ordering::Relaxed), 0, "Kafka refused records");
    bytes
}

/// The store down while ten times the sink's memory allowance of readings arrives: the sink
/// stops consuming while its flush fails and librdkafka stops prefetching at its bound, so the
/// backlog waits in Kafka, not in the sink; it commits nothing unstored, and once the store is
/// back every reading is stored once. Only tansu, victoria-metrics and the sink run; the
/// readings are produced as ingest writes them.
#[test]
fn a_store_outage_leaves_the_backlog_in_kafka_not_in_the_sink() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = Stack::start_with(RULES, &station_registry());
    stack.spawn("sink-1", "sink");
    let sink = stack.procs["sink-1"].id();
    let brokers = format!("127.0.0.1:{}", stack.kafka.port);
    let record_bytes = station_record(0, 0).1.len() as u64;
    // Records per station during the outage: ten times the allowance.
    let rounds = (10 * SINK_ALLOWANCE_KIB * 1024).div_ceil(record_bytes * STATIONS as u64) as i64;

    // A first record per station, stored and committed.
    produce_stations(&brokers, 0, 1);
    wait_until(Duration::from_secs(60), "the sink's first commit", || {
        (sink_committed(&stack) == STATIONS as i64).then_some(())
    });

    let before = rss_kib(sink);
    stack.vm.stop();
    let committed_before = sink_committed(&stack);
    let began = Instant::now();
    let (bytes, peak, produce_time) = std::thread::scope(|s| {
        let producing = s.spawn(|| (produce_stations(&brokers, 1, 1 + rounds), began.elapsed()));
        // Sampled while producing and for 5 s after, while the sink may still be prefetching.
        let mut peak = 0;
        let mut after: Option<Instant> = None;
        while after.is_none_or(|t| t.elapsed() < Duration::from_secs(5)) {
            peak = rss_kib(sink).max(peak);
            if after.is_none() && producing.is_finished() {
                after = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (bytes, produce_time) = producing.join().unwrap();
        (bytes, peak, produce_time)
    });
    let committed_during = sink_committed(&stack);
    eprintln!(
        "store down: {} MiB in {} records produced in {produce_time:?} ({:.1} MiB/s); sink RSS {before} KiB before, \
         peak {peak} KiB (+{} KiB; allowance {SINK_ALLOWANCE_KIB} KiB); commits {committed_before} → {committed_during}",
        bytes / (1024 * 1024),
        rounds * STATIONS as i64,
        bytes as f64 / (1024.0 * 1024.0) / produce_time.as_secs_f64(),
        peak.saturating_sub(before),
    );
    assert!(bytes >= 10 * SINK_ALLOWANCE_KIB * 1024, "ten times the allowance produced ({bytes} bytes)");
    assert_eq!(committed_during, committed_before, "the sink commits nothing it has not stored");
    assert!(
        peak <= before + SINK_ALLOWANCE_KIB,
        "the backlog stays in Kafka: sink RSS {before} KiB before the outage, peak {peak} KiB, allowance \
         +{SINK_ALLOWANCE_KIB} KiB"
    );

    // The store back: every reading stored once.
    stack.vm.start();
    let records = (1 + rounds) * STATIONS as i64;
    let store_began = Instant::now();
    wait_until(Duration::from_secs(120), "the sink to commit the backlog", || {
        (sink_committed(&stack) == records).then_some(())
    });
    eprintln!("backlog of {records} records stored in {:?}", store_began.elapsed());
    let expected: Vec<(String, i64)> = (0..STATIONS)
        .flat_map(|i| {
            ["a", "b"].into_iter().flat_map(move |j| {
                (0..(1 + rounds) * PACKETS_PER_RECORD).map(move |k| (format!("station-{i}-acc-{j}"), T0 + k * 10_000))
            })
        })
        .collect();
    // victoria-metrics makes what it was sent searchable within a second or two; after 30 s
    // the check names what is missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let stored: Vec<(String, i64)> = vm_series(stack.vm.port, "waveform_packets_peak")
            .into_iter()
            .flat_map(|(labels, ts)| ts.into_iter().map(move |t| (labels["sensor"].clone(), t)))
            .collect();
        if stored.len() >= expected.len() || Instant::now() > deadline {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_each_once("waveform packets in the store", stored, expected);
    assert!(stack.procs.get_mut("sink-1").unwrap().try_wait().unwrap().is_none(), "the sink exited");
}

/// The water-level rule with reminders every second at orange and red.
const REMINDING_RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.1
remind = { red = "1s", orange = "1s" }
levels = { blue = "warning_level - 1.0", yellow = "warning_level", orange = "warning_level + 1.0", red = "warning_level + 2.0" }
"#;

/// One reading of `river-0-wl-a`, stamped now.
fn reading_now(value: f64) -> (String, Vec<u8>) {
    let r = Reading {
        sensor: SensorId::new("river-0-wl-a"),
        site: SiteId::new("river-0"),
        kind: SensorKind::WaterLevel,
        ts: Timestamp::now(),
        unit: Arc::from("m"),
        value: Value::Scalar(value),
        quality: Quality::Good,
        exercise: false,
    };
    (topic::batch_topic("river-0"), encode_batch([&r]))
}

/// Every event of `alert_id` seen so far on MQTT and on the Kafka alerts topic; panics if one
/// `event_id` came with two different contents.
fn events_of(stack: &Stack, seen: &Seen, alert_id: &str) -> BTreeMap<u32, AlertEvent> {
    let mut by_id: BTreeMap<String, AlertEvent> = BTreeMap::new();
    for e in alerts_seen(seen).into_iter().chain(kafka_events(stack)) {
        if let Some(had) = by_id.get(&e.event_id) {
            assert_eq!(had, &e, "event id {} delivered with two different contents\n{}", e.event_id, stack.logs());
        }
        by_id.insert(e.event_id.clone(), e);
    }
    let ids: BTreeSet<&str> = by_id.values().map(|e| e.alert_id.as_str()).collect();
    assert!(ids.len() <= 1, "one alert about the gauge, ever: {ids:?}\n{}", stack.logs());
    by_id.into_values().filter(|e| e.alert_id == alert_id).map(|e| (e.seq, e)).collect()
}

/// A rules worker killed with `kill -9` just after a reminder went out (and 0.5 s and 1.5 s
/// after it), restarted, then a red reading: the escalation is on the **same** alert with the
/// next `seq` after every reminder delivered, and no `event_id` is ever reused for different
/// content (the reminder's tick is in the partition's log, so the next owner replays it).
#[test]
fn a_rules_worker_killed_around_a_reminder_escalates_the_same_alert_after_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for kill_after in [Duration::ZERO, Duration::from_millis(500), Duration::from_millis(1500)] {
        let mut stack = Stack::start_with(REMINDING_RULES, &registry_toml());
        // As on Apache Kafka in production: the restarted worker takes its partitions back at
        // once (tansu 0.6 never hands a lone restarted dynamic member its partitions).
        stack.setting("kafka", "static_membership = true");
        stack.spawn("ingest-1", "ingest");
        stack.spawn("rules-1", "rules");
        let seen = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
        let gw = Gateway::start_as("gw-orange", stack.mqtt.port, vec![reading_now(12.3)], 10);
        gw.wait_acked(1, Duration::from_secs(30));
        let orange = wait_until(Duration::from_secs(60), "the orange alert", || {
            alerts_seen(&seen).into_iter().find(|e| e.change == AlertChange::Raised)
        });
        assert_eq!(orange.level.as_str(), "orange");
        wait_until(Duration::from_secs(30), "a reminder", || {
            alerts_seen(&seen).iter().any(|e| e.change == AlertChange::Reminder).then_some(())
        });
        // When the kill strikes is what this case is about.
        std::thread::sleep(kill_after);
        stack.kill9("rules-1");
        let before = events_of(&stack, &seen, &orange.alert_id);
        let last_before = *before.keys().max().unwrap();
        stack.spawn("rules-1", "rules");
        // The restarted worker owns the partition once a reminder beyond the last one arrives.
        wait_until(Duration::from_secs(60), "a reminder from the restarted worker", || {
            alerts_seen(&seen)
                .iter()
                .any(|e| e.alert_id == orange.alert_id && e.seq > last_before && e.change == AlertChange::Reminder)
                .then_some(())
        });
        let gw = Gateway::start_as("gw-red", stack.mqtt.port, vec![reading_now(13.5)], 10);
        gw.wait_acked(1, Duration::from_secs(30));
        let red = wait_until(Duration::from_secs(60), "the escalation", || {
            alerts_seen(&seen).into_iter().find(|e| e.change == AlertChange::Escalated)
        });
        assert_eq!(red.level.as_str(), "red");
        assert_eq!(red.alert_id, orange.alert_id, "the red reading escalates the open alert\n{}", stack.logs());
        let all = wait_until(Duration::from_secs(60), "the escalation on Kafka", || {
            let all = events_of(&stack, &seen, &orange.alert_id);
            kafka_events(&stack).iter().any(|e| e.event_id == red.event_id).then_some(all)
        });
        let seqs: Vec<u32> = all.keys().copied().filter(|s| *s <= red.seq).collect();
        assert_eq!(seqs, (0..=red.seq).collect::<Vec<_>>(), "the escalation takes the next seq\n{}", stack.logs());
        assert!(
            all.values()
                .filter(|e| e.seq < red.seq)
                .all(|e| matches!(e.change, AlertChange::Raised | AlertChange::Reminder)),
            "before the escalation: the raise and its reminders"
        );
        drop(stack);
    }
}

/// Three terminals whose sites fall in different readings partitions, owned by two workers,
/// and a network composite over them (multi-station coincidence): the composite sees every
/// member, not just those of one partition — orange when two agree, red when all three do —
/// and an officer's acknowledgement of the network alert reaches the host that owns it.
#[test]
fn a_network_composite_over_sites_in_different_partitions_sees_every_member() {
    use riskwatch_bus::partition::site_partition;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sites = ["sta-a", "sta-b", "sta-c"];
    let partitions: BTreeSet<i32> = sites.iter().map(|s| site_partition(s, 4)).collect();
    assert!(partitions.len() >= 2, "the stations' sites must fall in different partitions: {partitions:?}");
    let mut registry = String::new();
    for (site, sensor) in sites.iter().zip(["a", "b", "c"]) {
        registry += &format!("[[sites]]\nid = \"{site}\"\n[[sensors]]\nid = \"{sensor}\"\nsite = \"{site}\"\nkind = \"pressure\"\nunit = \"kPa\"\n");
    }
    let rules = r#"
[[rules]]
id = "station"
applies_to = { kind = "pressure" }
levels = { blue = 2.0, yellow = 3.0 }
off_delay = { seconds = 60 }

[[composites]]
id = "quake-network"
scope = "network"
members = { rules = ["station"] }
levels = { orange = "count(station >= yellow) >= 2", red = "count(station >= yellow) >= 3" }
"#;
    let mut stack = Stack::start_with(rules, &registry);
    stack.spawn("ingest-1", "ingest");
    stack.spawn("rules-1", "rules");
    stack.spawn("rules-2", "rules");
    let seen = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    let reading = |sensor: &str, site: &str, value: f64| -> (String, Vec<u8>) {
        let r = Reading {
            sensor: SensorId::new(sensor),
            site: SiteId::new(site),
            kind: SensorKind::Pressure,
            ts: Timestamp::now(),
            unit: Arc::from("kPa"),
            value: Value::Scalar(value),
            quality: Quality::Good,
            exercise: false,
        };
        (topic::batch_topic(site), encode_batch([&r]))
    };
    let gw = Gateway::start_as(
        "gw-stations",
        stack.mqtt.port,
        vec![reading("a", "sta-a", 3.5), reading("b", "sta-b", 3.2), reading("c", "sta-c", 3.1)],
        2,
    );
    gw.wait_acked(3, Duration::from_secs(30));
    let network = |seen: &Seen| -> Vec<AlertEvent> {
        alerts_seen(seen).into_iter().filter(|e| e.rule_id.as_ref() == "quake-network").collect()
    };
    let red = wait_until(Duration::from_secs(90), "the network alert at red", || {
        network(&seen).into_iter().find(|e| e.level.as_str() == "red")
    });
    let events = network(&seen);
    assert_eq!(events[0].change, AlertChange::Raised, "{events:#?}");
    assert_eq!(events[0].level.as_str(), "orange", "two stations agree first: {events:#?}");
    assert_eq!((red.change, red.alert_id.as_str()), (AlertChange::Escalated, events[0].alert_id.as_str()));
    let members = red.details.as_ref().and_then(|d| d["members"].as_array().cloned()).unwrap_or_default();
    let at_yellow = members.iter().filter(|m| m["level"] == "yellow").count();
    assert_eq!(at_yellow, 3, "every member, from every partition: {members:?}");
    // One network alert, raised once.
    let raised: BTreeSet<String> =
        network(&seen).iter().filter(|e| e.change == AlertChange::Raised).map(|e| e.alert_id.clone()).collect();
    assert_eq!(raised.len(), 1);
    // The officer acknowledges it; the command finds the network host.
    let ack = format!(
        r#"{{"command_id": "c-net", "alert_id": "{}", "site": "{}", "action": "acknowledge", "by": "Li Wei"}}"#,
        red.alert_id, red.site
    );
    let officer = Gateway::start_as(
        "test-officer-app",
        stack.mqtt.port,
        vec![(topic::COMMANDS_TOPIC.to_string(), ack.into_bytes())],
        10,
    );
    officer.wait_acked(1, Duration::from_secs(30));
    let acked = wait_until(Duration::from_secs(60), "the acknowledgement", || {
        network(&seen).into_iter().find(|e| e.change == AlertChange::Acknowledged)
    });
    assert_eq!(acked.command_id.as_deref(), Some("c-net"));
}

/// A service manager stopping the sink and a rules worker while Kafka is away: both exit in
/// good time rather than hang. (The rules worker used to wait for Kafka to confirm its last
/// events and state, and then for a synchronous offset commit that has no timeout: it did not
/// exit within 45 s here. A sink left running after `scripts/bench.sh` was found blocked in a
/// synchronous commit for half an hour; its commits are asynchronous now too.) Whatever they
/// could not commit is read again by their next start.
#[test]
fn the_sink_and_a_rules_worker_stop_on_request_while_kafka_is_away() {
    let (_serial, mut stack, _seen, _steps, gw) = streaming(60);
    gw.wait_acked(gw.total / 5, Duration::from_secs(120));
    wait_until(Duration::from_secs(60), "readings in the store", || {
        (!stored_readings(&stack).is_empty()).then_some(())
    });
    stack.kafka.kill9();
    // The outage is a span of time: rows read before the broker went away are flushed to the
    // store meanwhile, and their offsets committed into the void.
    std::thread::sleep(Duration::from_secs(2));
    for name in ["sink-1", "rules-1"] {
        let took = stack.terminate(name, Duration::from_secs(45));
        assert!(took.is_some(), "{name} did not exit within 45 s of SIGTERM with Kafka away:\n{}", stack.logs());
    }
}

#[test]
fn a_forecast_over_mqtt_reaches_the_rules_worker_through_kafka_and_raises_a_forecast_alert() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rules = format!(
        "{RULES}\n[[forecasts]]\nid = \"wl-forecast\"\napplies_to = {{ kind = \"water_level\" }}\n\
         levels = {{ yellow = {{ threshold = \"warning_level\", within = \"24h\" }} }}\n"
    );
    let mut stack = Stack::start_with(&rules, &registry_toml());
    stack.start_all();
    let alerts = listen(stack.mqtt.port, "test-officer", topic::ALERTS_FILTER);
    // Issued an hour ago, hourly for 48 h, rising by 0.1 m an hour from 10.15 m: over the
    // warning level (11.0 m) 10 h after issue. Around now, so it has not run out on the
    // worker's clock.
    let h = 3_600_000;
    let issued = Timestamp::now().millis() / h * h - h;
    let valid: Vec<i64> = (1..=48).map(|k| issued + k * h).collect();
    let values: Vec<f64> = (1..=48).map(|k| 10.05 + 0.1 * k as f64).collect();
    let forecast = serde_json::json!({"v": 1, "kind": "water_level", "unit": "m", "issued": issued,
        "valid": valid, "values": values});
    let office = Gateway::start_as(
        "test-forecast-office",
        stack.mqtt.port,
        vec![("riskwatch/v1/forecasts/river-3/river-3-wl-a".into(), forecast.to_string().into_bytes())],
        50,
    );
    office.wait_acked(1, Duration::from_secs(30));
    let raised = wait_until(Duration::from_secs(60), "a forecast alert", || {
        alerts_seen(&alerts).into_iter().find(|e| e.category == riskwatch_core::AlertCategory::Forecast)
    });
    assert_eq!((&*raised.rule_id, raised.subject.as_str()), ("wl-forecast", "river-3-wl-a"));
    assert_eq!((raised.change, raised.level.as_str()), (AlertChange::Raised, "yellow"));
    assert_eq!(raised.details.as_ref().unwrap()["lead_time_s"], 10 * 3600, "{raised:?}");
    // On Kafka it was one forecast record on river-3's partition of the readings topic, and
    // the alert event is on the alerts topic.
    let brokers = format!("127.0.0.1:{}", stack.kafka.port);
    let records = read_topic(&brokers, "riskwatch.readings");
    let forecasts: Vec<_> =
        records.iter().filter(|(_, h, _)| h.get("riskwatch-record").map(String::as_str) == Some("forecast")).collect();
    assert_eq!(forecasts.len(), 1, "one forecast record");
    let (key, headers, _) = forecasts[0];
    assert_eq!(key, "river-3");
    assert_eq!(headers.get("riskwatch-format").map(String::as_str), Some("forecast-json-1"));
    assert_eq!(
        headers.get("riskwatch-mqtt-topic").map(String::as_str),
        Some("riskwatch/v1/forecasts/river-3/river-3-wl-a")
    );
    wait_until(Duration::from_secs(30), "the forecast alert on Kafka", || {
        kafka_events(&stack).iter().any(|e| e.event_id == raised.event_id).then_some(())
    });
}
