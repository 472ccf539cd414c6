//! The docker-compose stack, checked without Docker: docker-compose.yml, the Dockerfile, the
//! topology file the riskwatch services load, the Mosquitto config and the QuestDB schema must
//! agree with each other and with the code (topology structs, workspace members, the columns
//! the QuestDB sink writes). Nothing here starts a container.

mod servers;

use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The topology structs themselves, so the shipped file is parsed exactly as `riskwatch` parses
/// it (`deny_unknown_fields` included).
#[allow(dead_code)]
#[path = "../src/topology.rs"]
mod topology;

const RISKWATCH_COMPONENTS: [&str; 3] = ["ingest", "rules", "sink"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// docker-compose.yml with YAML merge keys (`<<: *riskwatch`) applied, as Compose does.
fn compose() -> Value {
    let mut v: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    v.apply_merge().expect("merge keys apply");
    v
}

fn services(c: &Value) -> &Mapping {
    c.get("services").and_then(Value::as_mapping).expect("a services mapping")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    services(c).get(name).unwrap_or_else(|| panic!("service {name} is missing"))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A service's environment, from either the mapping or the `KEY=VALUE` list form.
fn env(s: &Value) -> BTreeMap<String, String> {
    match s.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let i = scalar(i);
                let (k, v) = i.split_once('=').unwrap_or((&i, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("environment must be a mapping or a list, got {other:?}"),
    }
}

fn command(s: &Value) -> Vec<String> {
    match s.get("command") {
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(Value::String(line)) => line.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `(host source, container target)` of every bind mount (named volumes are left out).
fn bind_mounts(s: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in s.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
        let (src, dst) = match v {
            Value::String(spec) => {
                let mut parts = spec.splitn(3, ':');
                (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
            }
            Value::Mapping(_) => (scalar(&v["source"]), scalar(&v["target"])),
            other => panic!("volume entry {other:?}"),
        };
        if src.starts_with("./") || src.starts_with('/') || src.starts_with("../") {
            out.push((src, dst));
        }
    }
    out
}

/// One entry of a service's `volumes`.
#[derive(Debug)]
struct Mount {
    /// Host path (`./…`, `/…`) or named volume.
    source: String,
    target: String,
    read_only: bool,
}

/// Every mount of a service, bind mounts and named volumes.
fn mounts(s: &Value) -> Vec<Mount> {
    let mut out = Vec::new();
    for v in s.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
        out.push(match v {
            Value::String(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                let options = parts.get(2).copied().unwrap_or_default();
                Mount {
                    source: parts[0].to_string(),
                    target: parts.get(1).copied().unwrap_or_default().to_string(),
                    read_only: options.split(',').any(|o| o == "ro"),
                }
            }
            Value::Mapping(_) => Mount {
                source: scalar(&v["source"]),
                target: scalar(&v["target"]),
                read_only: v.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            },
            other => panic!("volume entry {other:?}"),
        });
    }
    out
}

/// The mount a path inside the container is on (the deepest one covering it), and the path
/// relative to the mount's target.
fn covering<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, String)> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = if path == m.target { Some("") } else { path.strip_prefix(&format!("{}/", m.target)) }?;
            Some((m, rest.to_string()))
        })
        .max_by_key(|(m, _)| m.target.len())
}

/// A healthcheck's command as a list (`CMD` / `CMD-SHELL` first), empty if disabled or absent.
fn healthcheck_test(s: &Value) -> Vec<String> {
    let Some(h) = s.get("healthcheck") else { return Vec::new() };
    if h.get("disable").and_then(Value::as_bool) == Some(true) {
        return Vec::new();
    }
    match h.get("test") {
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(Value::String(line)) => vec!["CMD-SHELL".into(), line.clone()],
        _ => Vec::new(),
    }
}

/// Container ports a service publishes on the host.
fn published_ports(s: &Value) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for p in s.get("ports").and_then(Value::as_sequence).into_iter().flatten() {
        let target = match p {
            Value::Mapping(_) => scalar(&p["target"]),
            other => scalar(other).rsplit(':').next().unwrap_or_default().to_string(),
        };
        let target = target.split('/').next().unwrap_or_default();
        out.insert(target.parse().unwrap_or_else(|_| panic!("port {p:?}")));
    }
    out
}

/// Services running `riskwatch ingest|rules|sink`, by name.
fn riskwatch_components(c: &Value) -> BTreeMap<String, Vec<String>> {
    services(c)
        .iter()
        .map(|(name, s)| (scalar(name), command(s)))
        .filter(|(_, cmd)| cmd.len() >= 2 && cmd[0] == "riskwatch" && RISKWATCH_COMPONENTS.contains(&cmd[1].as_str()))
        .collect()
}

/// The value after `flag` in a command line.
fn flag<'a>(cmd: &'a [String], flag: &str) -> Option<&'a str> {
    cmd.iter().position(|a| a == flag).and_then(|i| cmd.get(i + 1)).map(String::as_str)
}

/// Dockerfile instructions (continuation lines joined, comments dropped), grouped by stage.
fn dockerfile_stages() -> Vec<Vec<String>> {
    let text = read("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(t);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<String>> = Vec::new();
    for ins in joined {
        if ins.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(ins);
    }
    stages
}

/// `(host source, image destination)` of the plain `COPY`s of a stage (not `--from`), in order.
fn copies(stage: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for args in stage.iter().filter_map(|ins| ins.strip_prefix("COPY ")).filter(|a| !a.contains("--from")) {
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        let (dst, srcs) = words.split_last().unwrap_or_else(|| panic!("COPY {args}"));
        assert!(!srcs.is_empty(), "COPY {args}");
        // Several sources, or a destination ending in '/', copy each source into the folder.
        let into_folder = srcs.len() > 1 || dst.ends_with('/');
        for src in srcs {
            let src = src.trim_end_matches('/');
            let dst = dst.trim_end_matches('/');
            let dst = if into_folder { format!("{dst}/{}", src.rsplit('/').next().unwrap()) } else { dst.to_string() };
            out.push((src.to_string(), dst));
        }
    }
    out
}

/// The repository file behind `path` inside a riskwatch container: a bind mount covering it
/// decides alone; otherwise the last image `COPY` that provides it.
fn host_file(path: &str, mounts: &[(String, String)], image_copies: &[(String, String)]) -> Option<PathBuf> {
    let under = |dst: &str| -> Option<String> {
        if path == dst {
            Some(String::new())
        } else {
            path.strip_prefix(&format!("{dst}/")).map(str::to_string)
        }
    };
    for (src, dst) in mounts {
        if let Some(rest) = under(dst) {
            let f = root().join(src).join(rest);
            return f.is_file().then_some(f);
        }
    }
    image_copies.iter().rev().find_map(|(src, dst)| {
        let f = root().join(src).join(under(dst)?);
        f.is_file().then_some(f)
    })
}

#[test]
fn every_service_of_the_stack_is_defined() {
    let c = compose();
    for (name, image) in [
        ("mosquitto", Some("eclipse-mosquitto:2.0.20")),
        ("kafka", Some("apache/kafka:3.9.0")),
        ("questdb", Some("questdb/questdb:8.2.3")),
        ("questdb-init", None),
        ("riskwatch-ingest", None),
        ("riskwatch-rules-1", None),
        ("riskwatch-rules-2", None),
        ("riskwatch-sink", None),
        ("riskwatch-simulator", None),
    ] {
        let s = service(&c, name);
        if let Some(image) = image {
            assert_eq!(s.get("image").map(scalar).as_deref(), Some(image), "{name} image");
        }
    }
    let roles: BTreeMap<String, String> =
        riskwatch_components(&c).into_iter().map(|(name, cmd)| (name, cmd[1].clone())).collect();
    assert_eq!(roles.get("riskwatch-ingest").map(String::as_str), Some("ingest"));
    assert_eq!(roles.get("riskwatch-sink").map(String::as_str), Some("sink"));
    let sim = command(service(&c, "riskwatch-simulator"));
    assert_eq!(sim.get(..2), Some(&["riskwatch".to_string(), "simulate".to_string()][..]), "{sim:?}");
    let mqtt = flag(&sim, "--mqtt").expect("simulate --mqtt");
    assert!(mqtt.starts_with("mqtt://mosquitto:"), "the simulator publishes to the mosquitto service: {mqtt}");
}

#[test]
fn two_rules_workers_share_a_group_under_distinct_instances() {
    let c = compose();
    let components = riskwatch_components(&c);
    let workers: Vec<&String> = components.iter().filter(|(_, cmd)| cmd[1] == "rules").map(|(n, _)| n).collect();
    assert!(workers.len() >= 2, "at least two rules workers, got {workers:?}");
    let configs: BTreeSet<&str> =
        workers.iter().map(|w| flag(&components[*w], "--config").expect("rules --config")).collect();
    assert_eq!(configs.len(), 1, "rules workers must share one topology (one consumer group): {configs:?}");
    // Instances name client ids (MQTT sessions, Kafka clients): unique per process.
    let mut seen = BTreeMap::new();
    for name in components.keys() {
        let instance = env(service(&c, name)).get("RISKWATCH_INSTANCE").cloned().unwrap_or_default();
        assert!(!instance.is_empty(), "{name} sets no RISKWATCH_INSTANCE");
        if let Some(other) = seen.insert(instance.clone(), name.clone()) {
            panic!("{name} and {other} share RISKWATCH_INSTANCE={instance}");
        }
    }
}

#[test]
fn kafka_runs_kraft_without_zookeeper_and_without_topic_auto_creation() {
    let c = compose();
    for (name, s) in services(&c) {
        let (name, image) = (scalar(name), s.get("image").map(scalar).unwrap_or_default());
        assert!(!name.contains("zookeeper") && !image.contains("zookeeper"), "ZooKeeper service {name}");
    }
    let e = env(service(&c, "kafka"));
    let roles: BTreeSet<&str> = e.get("KAFKA_PROCESS_ROLES").expect("KAFKA_PROCESS_ROLES").split(',').collect();
    assert!(roles.contains("controller") && roles.contains("broker"), "single KRaft node: {roles:?}");
    assert!(e.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS") && e.contains_key("KAFKA_NODE_ID"), "{e:?}");
    assert!(!e.contains_key("KAFKA_ZOOKEEPER_CONNECT"));
    assert_eq!(e.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE").map(String::as_str), Some("false"));
    let advertised = e.get("KAFKA_ADVERTISED_LISTENERS").expect("advertised listeners");
    assert!(advertised.contains("//kafka:9092"), "containers reach the broker as kafka:9092: {advertised}");
}

#[test]
fn mqtt_and_questdb_ports_are_published() {
    let c = compose();
    assert!(published_ports(service(&c, "mosquitto")).contains(&1883));
    let q = published_ports(service(&c, "questdb"));
    assert!(q.contains(&9000) && q.contains(&8812), "{q:?}");
}

#[test]
fn every_mounted_host_path_exists() {
    let c = compose();
    let mut mounts = Vec::new();
    for (name, s) in services(&c) {
        for (src, dst) in bind_mounts(s) {
            assert!(root().join(&src).exists(), "{} mounts {src}, which is not in the repository", scalar(name));
            mounts.push((scalar(name), src, dst));
        }
    }
    let has = |svc: &str, src: &str, dst: &str| mounts.iter().any(|m| m.0 == svc && m.1 == src && m.2 == dst);
    assert!(has("mosquitto", "./deploy/mosquitto/mosquitto.conf", "/mosquitto/config/mosquitto.conf"), "{mounts:?}");
    assert!(mounts.iter().any(|m| m.0 == "questdb-init" && m.1 == "./deploy/questdb/schema.sql"), "{mounts:?}");
}

#[test]
fn riskwatch_services_find_their_topology_in_the_image() {
    let c = compose();
    let stages = dockerfile_stages();
    let runtime = copies(stages.last().expect("a runtime stage"));
    let components = riskwatch_components(&c);
    assert_eq!(components.len(), 4, "ingest, two rules workers and sink: {components:?}");
    for (name, cmd) in &components {
        let s = service(&c, name);
        let build = s.get("build").unwrap_or_else(|| panic!("{name} builds the repo's image"));
        let context = build.get("context").map(scalar).unwrap_or_else(|| scalar(build));
        assert!(root().join(&context).join("Dockerfile").is_file(), "{name}: no Dockerfile in {context}");
        assert_eq!(s.get("restart").map(scalar).as_deref(), Some("unless-stopped"), "{name} restart");
        let e = env(s);
        for (var, service_host) in [("RISKWATCH_KAFKA_BROKERS", "kafka:"), ("RISKWATCH_MQTT_HOST", "mosquitto")] {
            let v = e.get(var).unwrap_or_else(|| panic!("{name} sets no {var}"));
            assert!(v.starts_with(service_host), "{name}: {var}={v}");
        }
        assert!(e.get("RISKWATCH_QUESTDB_CONF").is_some_and(|q| q.starts_with("http::addr=questdb:9000;")), "{name}");

        let config = flag(cmd, "--config").unwrap_or_else(|| panic!("{name} passes --config"));
        let mounts = bind_mounts(s);
        let file = host_file(config, &mounts, &runtime)
            .unwrap_or_else(|| panic!("{name}: {config} is neither mounted nor copied into the image"));
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(doc.get("kafka").is_some_and(toml::Value::is_table), "{}: no [kafka]", file.display());
        assert!(doc.get("questdb").is_some_and(toml::Value::is_table), "{}: no [questdb]", file.display());
        let t: topology::Topology = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(t.problems().is_empty(), "{}: {:?}", file.display(), t.problems());
        assert_eq!(t.kafka.as_ref().map(|k| k.readings_partitions), Some(6));
        // Registry and rules resolve against the topology file's folder inside the container.
        let dir = Path::new(config).parent().unwrap();
        for p in [&t.registry, &t.rules] {
            let in_container = dir.join(p);
            let in_container = in_container.to_str().unwrap();
            let f = host_file(in_container, &mounts, &runtime)
                .unwrap_or_else(|| panic!("{name}: {in_container} is neither mounted nor copied into the image"));
            toml::from_str::<toml::Table>(&std::fs::read_to_string(&f).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}

#[test]
fn dockerfile_builds_the_riskwatch_package_from_every_workspace_member() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "multi-stage build");
    let build = &stages[0];
    assert!(build[0].starts_with("FROM rust:1.95-bookworm"), "{}", build[0]);
    assert!(
        build.iter().any(|i| i.starts_with("RUN") && i.contains("cargo build --release --locked -p riskwatch")),
        "builder runs cargo build --release --locked -p riskwatch"
    );
    let copied: BTreeSet<String> = copies(build).into_iter().map(|(src, _)| src).collect();
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let members = manifest["workspace"]["members"].as_array().expect("workspace members");
    for m in members.iter().filter_map(toml::Value::as_str).chain(["src", "Cargo.lock", "config"]) {
        assert!(copied.contains(m), "the builder stage does not COPY {m} (copied: {copied:?})");
    }
    let runtime = stages.last().unwrap();
    assert!(runtime[0].starts_with("FROM debian:bookworm-slim"), "{}", runtime[0]);
    assert!(runtime.iter().any(|i| i.contains("ca-certificates")));
    assert!(runtime.iter().any(|i| i.starts_with("COPY --from=") && i.ends_with("/usr/local/bin/riskwatch")));
}

#[test]
fn questdb_schema_matches_the_sink_and_keeps_data_long_enough() {
    let c = compose();
    let init = service(&c, "questdb-init");
    assert_eq!(scalar(&init["depends_on"]["questdb"]["condition"]), "service_healthy");
    assert_eq!(
        scalar(&service(&c, "riskwatch-sink")["depends_on"]["questdb-init"]["condition"]),
        "service_completed_successfully",
        "the tables must exist before the sink's first ILP write"
    );

    // Split as the init script does: drop `--` comments, split on `;`.
    let text: String =
        read("deploy/questdb/schema.sql").lines().map(|l| l.split("--").next().unwrap()).collect::<Vec<_>>().join(" ");
    let mut tables = BTreeMap::new();
    for stmt in text.split(';').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()) {
        let rest = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ").unwrap_or_else(|| panic!("unexpected: {stmt}"));
        let (name, body) = rest.split_once(" (").unwrap();
        tables.insert(name.to_string(), body.to_string());
    }
    let common = "ts TIMESTAMP, site SYMBOL, sensor SYMBOL, kind SYMBOL, unit SYMBOL";
    let expected: [(&str, String, &str, u32); 7] = [
        ("readings", format!("{common}, value DOUBLE, quality LONG"), "DEDUP UPSERT KEYS(ts, sensor)", 30),
        // A drill's readings, apart from the real history (docs/replay.md).
        ("exercise_readings", format!("{common}, value DOUBLE, quality LONG"), "DEDUP UPSERT KEYS(ts, sensor)", 7),
        (
            "gnss_readings",
            format!("{common}, e DOUBLE, n DOUBLE, u DOUBLE, quality LONG"),
            "DEDUP UPSERT KEYS(ts, sensor)",
            30,
        ),
        (
            "waveform_packets",
            format!("{common}, peak DOUBLE, samples LONG, rate_hz DOUBLE, quality LONG"),
            "DEDUP UPSERT KEYS(ts, sensor)",
            30,
        ),
        // A drill's GNSS solutions and waveform packets: the sink writes them, so they need
        // their dedup keys too (ILP would create them without).
        (
            "exercise_gnss_readings",
            format!("{common}, e DOUBLE, n DOUBLE, u DOUBLE, quality LONG"),
            "DEDUP UPSERT KEYS(ts, sensor)",
            7,
        ),
        (
            "exercise_waveform_packets",
            format!("{common}, peak DOUBLE, samples LONG, rate_hz DOUBLE, quality LONG"),
            "DEDUP UPSERT KEYS(ts, sensor)",
            7,
        ),
        (
            "alert_events",
            "ts TIMESTAMP, alert_id SYMBOL, seq LONG, event_id VARCHAR, rule_id SYMBOL, site SYMBOL, subject SYMBOL, \
             kind SYMBOL, change SYMBOL, level SYMBOL, highest_level SYMBOL, exercise BOOLEAN, value DOUBLE, \
             threshold DOUBLE, unit SYMBOL, message_zh VARCHAR, message_en VARCHAR"
                .to_string(),
            "DEDUP UPSERT KEYS(ts, alert_id, seq)",
            365,
        ),
    ];
    assert_eq!(tables.len(), expected.len(), "tables: {:?}", tables.keys());
    for (name, columns, dedup, min_days) in expected {
        let body = tables.get(name).unwrap_or_else(|| panic!("no table {name}"));
        let (cols, tail) = body.split_once(") TIMESTAMP(ts)").unwrap_or_else(|| panic!("{name}: TIMESTAMP(ts)"));
        // Column name and type in order (SYMBOL options such as CAPACITY may follow the type).
        let got: Vec<String> =
            cols.split(',').map(|c| c.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect();
        let want: Vec<String> = columns.split(", ").map(str::to_string).collect();
        assert_eq!(got, want, "{name} columns");
        assert!(tail.contains(" PARTITION BY ") && tail.contains(" WAL"), "{name}: partitioned WAL table: {tail}");
        assert!(tail.ends_with(dedup), "{name}: {dedup} (got {tail})");
        let ttl: Vec<&str> = tail.split(" TTL ").nth(1).expect("a TTL").split(' ').take(2).collect();
        let n: u32 = ttl[0].parse().unwrap();
        let days = match ttl[1].trim_end_matches('S') {
            "DAY" => n,
            "WEEK" => n * 7,
            "MONTH" => n * 28,
            "YEAR" => n * 365,
            other => panic!("{name}: TTL unit {other}"),
        };
        assert!(days >= min_days, "{name} keeps {days} days, needs at least {min_days}");
    }
}

#[test]
fn mosquitto_keeps_sessions_and_queues_generously() {
    let conf = read("deploy/mosquitto/mosquitto.conf");
    let settings: BTreeMap<&str, &str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(settings.get("listener").map(|l| l.split(' ').next()), Some(Some("1883")));
    assert_eq!(settings.get("persistence"), Some(&"true"));
    let queued: u32 = settings.get("max_queued_messages").expect("max_queued_messages").parse().unwrap();
    assert!(queued >= 10_000, "Mosquitto's default 1000 drops QoS 1 messages of slow subscribers; got {queued}");
    let inflight: u16 = settings.get("max_inflight_messages").expect("max_inflight_messages").parse().unwrap();
    let t: topology::Topology = toml::from_str(&read("deploy/riskwatch/riskwatch.toml")).unwrap();
    assert_eq!(inflight, t.mqtt.inflight, "broker in-flight window and [mqtt] inflight should agree");
    assert_eq!(settings.get("set_tcp_nodelay"), Some(&"true"), "alerts must not wait for delayed TCP acknowledgements");
}

#[test]
fn prometheus_scrapes_every_riskwatch_process_where_it_serves_metrics() {
    let c = compose();
    let prom: Value = serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).expect("prometheus.yml is YAML");
    let mut targets = BTreeSet::new();
    for job in prom["scrape_configs"].as_sequence().expect("scrape_configs") {
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            for t in sc["targets"].as_sequence().into_iter().flatten() {
                targets.insert(scalar(t));
            }
        }
    }
    let mut expected = BTreeSet::new();
    for (name, s) in services(&c) {
        let name = scalar(name);
        let cmd = command(s);
        if cmd.first().map(String::as_str) != Some("riskwatch") {
            continue;
        }
        match cmd.get(1).map(String::as_str) {
            Some("ingest" | "rules" | "sink") => {
                let listen = env(s).get("RISKWATCH_METRICS_LISTEN").cloned().unwrap_or_default();
                let port = listen.rsplit(':').next().unwrap_or_default().to_string();
                assert!(listen.starts_with("0.0.0.0:"), "{name} serves metrics to the network: {listen:?}");
                expected.insert(format!("{name}:{port}"));
            }
            Some("console") => {
                let at = cmd.iter().position(|a| a == "--listen").map(|i| cmd[i + 1].clone()).unwrap_or_default();
                expected.insert(format!("{name}:{}", at.rsplit(':').next().unwrap_or_default()));
            }
            _ => {}
        }
    }
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(targets, expected, "Prometheus scrapes exactly the riskwatch processes, on their metrics ports");
    for svc in ["prometheus", "grafana"] {
        service(&c, svc);
    }
}

#[test]
fn the_grafana_dashboard_uses_the_provisioned_sources_documented_metrics_and_real_tables() {
    let sources: Value =
        serde_yaml::from_str(&read("deploy/grafana/provisioning/datasources/riskwatch.yml")).expect("datasources YAML");
    let uids: BTreeMap<String, String> =
        sources["datasources"].as_sequence().unwrap().iter().map(|d| (scalar(&d["uid"]), scalar(&d["type"]))).collect();
    let provider: Value =
        serde_yaml::from_str(&read("deploy/grafana/provisioning/dashboards/riskwatch.yml")).expect("provider YAML");
    let path = scalar(&provider["providers"][0]["options"]["path"]);
    let c = compose();
    assert!(
        bind_mounts(service(&c, "grafana"))
            .iter()
            .any(|(src, dst)| src == "./deploy/grafana/dashboards" && *dst == path),
        "Grafana finds the dashboards where the provider looks ({path})"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/riskwatch.json")).expect("dashboard is JSON");
    let documented = servers::documented_metrics();
    let schema = read("deploy/questdb/schema.sql");
    let tables: BTreeSet<String> = schema
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE TABLE IF NOT EXISTS "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let (mut prom_queries, mut sql_queries) = (0, 0);
    for panel in dash["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        for t in panel["targets"].as_array().unwrap() {
            let uid = t["datasource"]["uid"].as_str().unwrap();
            let kind = uids.get(uid).unwrap_or_else(|| panic!("{title}: data source {uid} is not provisioned"));
            if kind == "prometheus" {
                prom_queries += 1;
                let expr = t["expr"].as_str().unwrap();
                let names: Vec<&str> = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("riskwatch_") || w.starts_with("process_"))
                    .collect();
                assert!(!names.is_empty(), "{title}: {expr}");
                for n in names {
                    let family = ["_bucket", "_sum", "_count"].iter().fold(n, |n, s| n.strip_suffix(s).unwrap_or(n));
                    assert!(documented.contains(family), "{title}: {n} is not a documented riskwatch metric");
                }
            } else {
                sql_queries += 1;
                let sql = t["rawSql"].as_str().unwrap();
                let table = sql.split_whitespace().skip_while(|w| *w != "FROM").nth(1).unwrap();
                assert!(tables.contains(table), "{title}: table {table} is not in schema.sql");
                assert!(sql.contains("$__timeFilter(ts)"), "{title}: follows the dashboard's time range");
            }
        }
    }
    assert!(prom_queries >= 10 && sql_queries >= 3, "{prom_queries} Prometheus and {sql_queries} QuestDB queries");
}

#[test]
fn every_image_is_pinned_to_a_full_version() {
    let c = compose();
    for (name, s) in services(&c) {
        let name = scalar(name);
        if s.get("build").is_some() {
            continue; // riskwatch:local, built from this repository
        }
        let image = s.get("image").map(scalar).unwrap_or_else(|| panic!("{name}: no image and no build"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/')).unwrap_or("");
        let version = tag.trim_start_matches('v').split('-').next().unwrap_or_default();
        let parts: Vec<&str> = version.split('.').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
            "{name}: {image} is not pinned to a full version tag (MAJOR.MINOR.PATCH)"
        );
    }
}

#[test]
fn every_service_has_a_healthcheck_and_waits_for_what_it_needs() {
    let c = compose();
    let all = services(&c);
    for (name, s) in all {
        let name = scalar(name);
        let h = s.get("healthcheck").unwrap_or_else(|| panic!("{name} has no healthcheck"));
        let one_shot = s.get("restart").map(scalar).as_deref() == Some("no");
        if one_shot {
            assert!(
                h.get("disable").and_then(Value::as_bool) == Some(true) || !healthcheck_test(s).is_empty(),
                "{name}: a one-shot job says `disable: true` or has a test"
            );
        } else {
            let test = healthcheck_test(s);
            assert!(test.len() >= 2 && test[0].starts_with("CMD"), "{name}: healthcheck test {test:?}");
        }
        // Order: a dependency is waited for until healthy or done, never just started.
        if let Some(deps) = s.get("depends_on") {
            let deps = deps.as_mapping().unwrap_or_else(|| panic!("{name}: depends_on with conditions"));
            for (dep, how) in deps {
                let dep = scalar(dep);
                let condition = how.get("condition").map(scalar).unwrap_or_default();
                let target = all.get(dep.as_str()).unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
                match condition.as_str() {
                    "service_healthy" => {
                        assert!(
                            !healthcheck_test(target).is_empty(),
                            "{name} waits for {dep} to be healthy: it has no check"
                        )
                    }
                    "service_completed_successfully" => {
                        assert_eq!(target.get("restart").map(scalar).as_deref(), Some("no"), "{dep} is a one-shot job")
                    }
                    other => panic!("{name} depends on {dep} with condition {other:?}"),
                }
            }
        }
    }
    // The riskwatch processes are probed on their own readiness endpoint.
    for (name, s) in all {
        let name = scalar(name);
        let cmd = command(s);
        let port = match cmd.get(..2).map(|c| (c[0].as_str(), c[1].as_str())) {
            Some(("riskwatch", "ingest" | "rules" | "sink")) => env(s)
                .get("RISKWATCH_METRICS_LISTEN")
                .cloned()
                .unwrap_or_default()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string(),
            Some(("riskwatch", "console")) => flag(&cmd, "--listen").unwrap().rsplit(':').next().unwrap().to_string(),
            _ => continue,
        };
        let test = healthcheck_test(s);
        assert_eq!(
            test.get(..3).map(|t| t.join(" ")).as_deref(),
            Some("CMD riskwatch healthcheck"),
            "{name}: probed with `riskwatch healthcheck` (the image has no curl): {test:?}"
        );
        let url = flag(&test, "--url").unwrap_or("http://127.0.0.1:9464/readyz");
        assert_eq!(url, format!("http://127.0.0.1:{port}/readyz"), "{name}");
        let deps = s.get("depends_on").and_then(Value::as_mapping).map(|m| m.len()).unwrap_or(0);
        assert!(deps > 0, "{name} waits for the services it needs");
    }
}

/// `deploy/mosquitto/mosquitto.conf`'s settings (the last of each).
fn mosquitto_conf() -> BTreeMap<String, String> {
    read("deploy/mosquitto/mosquitto.conf")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn mosquitto_requires_a_login_and_the_acl_made_at_first_start() {
    let c = compose();
    let conf = mosquitto_conf();
    assert_eq!(conf.get("allow_anonymous").map(String::as_str), Some("false"), "anonymous clients are refused");
    let mosquitto = service(&c, "mosquitto");
    let init = service(&c, "riskwatch-init");
    let init_secrets = env(init).get("RISKWATCH_SECRETS").cloned().expect("riskwatch-init sets RISKWATCH_SECRETS");
    let init_mounts = mounts(init);
    let (init_volume, _) = covering(&init_mounts, &init_secrets).expect("RISKWATCH_SECRETS is on a volume");
    assert!(!init_volume.read_only && !init_volume.source.starts_with('.'), "a named volume riskwatch-init writes");
    let script = read("deploy/init/riskwatch-init.sh");
    assert!(bind_mounts(init).iter().any(|(src, _)| src == "./deploy/init/riskwatch-init.sh"));
    assert!(script.contains("riskwatch mqtt-acl") && script.contains("--out \"$secrets/mqtt\""), "{script}");
    // Mosquitto reads the files riskwatch-init wrote (mqtt-acl names them passwd and acl), after it ran.
    let m = mounts(mosquitto);
    for (key, file) in [("password_file", "mqtt/passwd"), ("acl_file", "mqtt/acl")] {
        let path = conf.get(key).unwrap_or_else(|| panic!("mosquitto.conf sets no {key}"));
        let (mount, rest) = covering(&m, path).unwrap_or_else(|| panic!("{key} {path} is on no mount of mosquitto"));
        assert_eq!((mount.source.as_str(), rest.as_str()), (init_volume.source.as_str(), file), "{key} {path}");
    }
    assert_eq!(
        mosquitto["depends_on"]["riskwatch-init"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "Mosquitto starts once the files exist"
    );
    // Every riskwatch MQTT client logs in with an account whose password riskwatch-init wrote.
    for (name, s) in services(&c) {
        let name = scalar(name);
        let cmd = command(s);
        if cmd.first().map(String::as_str) != Some("riskwatch")
            || !matches!(cmd[1].as_str(), "ingest" | "rules" | "console" | "simulate")
        {
            continue;
        }
        let e = env(s);
        let user = e.get("RISKWATCH_MQTT_USERNAME").unwrap_or_else(|| panic!("{name} sets no RISKWATCH_MQTT_USERNAME"));
        assert!(!e.contains_key("RISKWATCH_MQTT_PASSWORD"), "{name}: no password in the compose file");
        let file =
            e.get("RISKWATCH_MQTT_PASSWORD_FILE").unwrap_or_else(|| panic!("{name}: RISKWATCH_MQTT_PASSWORD_FILE"));
        let sm = mounts(s);
        let (mount, rest) = covering(&sm, file).unwrap_or_else(|| panic!("{name}: {file} is on no mount"));
        assert_eq!(mount.source, init_volume.source, "{name}: {file}");
        assert_eq!(rest, format!("mqtt-{user}.password"), "{name}: riskwatch-init writes mqtt-ACCOUNT.password");
        let accounts = script.lines().find_map(|l| l.trim().strip_prefix("for account in")).expect("the accounts loop");
        let accounts: Vec<&str> = accounts.trim_end_matches("; do").split_whitespace().collect();
        assert!(accounts.contains(&user.as_str()), "{name}: riskwatch-init writes no password file for {user}");
    }
}

#[test]
fn no_default_passwords_in_the_stack() {
    // Every text file of the stack: the compose file and deploy/.
    let mut files = vec![root().join("docker-compose.yml")];
    let mut dirs = vec![root().join("deploy")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    // (QuestDB's built-in pgwire login, which Grafana's data source uses, stays: it is reachable
    // from this machine and the compose network only; docs/operations.md, "Passwords".)
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        let lower = text.to_ascii_lowercase();
        for default in ["admin / admin", "admin/admin", "admin:admin", "password: admin", "password = \"admin\""] {
            assert!(!lower.contains(default), "{}: {default:?}", f.display());
        }
    }
    let c = compose();
    for (name, s) in services(&c) {
        for (k, v) in env(s) {
            if k.contains("PASSWORD") && !k.ends_with("_FILE") {
                assert!(v.starts_with("${") && v.contains(":?"), "{}: {k} is a literal password", scalar(name));
            }
        }
    }
    let grafana = env(service(&c, "grafana"));
    let file = grafana.get("GF_SECURITY_ADMIN_PASSWORD__FILE").expect("Grafana's admin password from a file");
    assert!(file.starts_with("/run/secrets/riskwatch/"), "made by riskwatch-init: {file}");
    assert!(read("deploy/init/riskwatch-init.sh").contains(file.rsplit('/').next().unwrap()));
}

#[test]
fn the_console_can_edit_its_users_file() {
    let c = compose();
    let console = service(&c, "riskwatch-console");
    let cmd = command(console);
    let users = flag(&cmd, "--users").expect("console --users");
    let m = mounts(console);
    let (mount, _) = covering(&m, users).unwrap_or_else(|| panic!("{users} is on no mount: not kept"));
    assert!(!mount.read_only, "{users} is on a read-only mount ({mount:?}): the admin page could not edit operators");
    assert!(!mount.source.starts_with('.'), "a named volume the console's user owns, not a host folder: {mount:?}");
    // The documented first step makes exactly this file.
    let init = format!("console init-users --users {users}");
    for doc in ["docker-compose.yml", "docs/operations.md", "docs/console.md"] {
        let text = read(doc).replace(" \\\n", " ").replace("#     ", "").replace("#   ", "");
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(&init), "{doc} tells how to make {users}: `riskwatch {init}`");
    }
}
