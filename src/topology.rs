//! The topology file of `riskwatch run --config FILE` (and `ingest`, `rules`, `sink`): which
//! components this process runs and how they reach MQTT, Kafka and QuestDB. Every key is listed
//! in docs/operations.md. Secrets and addresses can be overridden from the environment.

use anyhow::{bail, Context, Result};
use riskwatch_bus::KafkaConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One process's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Sensor registry (relative paths are relative to the topology file).
    pub registry: PathBuf,
    /// Rules file.
    pub rules: PathBuf,
    /// Names this process in client ids (`{instance}-ingest`, …); unique per process.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Components to run: any of `ingest`, `rules`, `sink`. Default: all three.
    #[serde(default = "default_components")]
    pub components: Vec<Component>,
    /// The MQTT broker gateways publish to and officers subscribe on.
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// Kafka; without it the process runs the embedded wiring.
    pub kafka: Option<KafkaConfig>,
    /// QuestDB (used by the `sink` component).
    pub questdb: Option<QuestDbSettings>,
    /// Rules worker settings.
    #[serde(default)]
    pub rules_worker: RulesWorkerSettings,
    /// Embedded wiring (no `[kafka]`): SQLite store and in-process broker.
    #[serde(default)]
    pub embedded: EmbeddedSettings,
    /// Prometheus metrics, health and readiness endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// SL 651-2014 remote terminal units over TCP (`run` embedded, and `ingest`).
    #[serde(default)]
    pub sl651: Sl651Settings,
}

/// `[sl651]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Sl651Settings {
    /// `HOST:PORT` the SL 651 source accepts stations on; none by default (no SL 651 source).
    pub listen: Option<String>,
    /// A connection that completes no frame for this long is closed.
    #[serde(deserialize_with = "sl651_idle_timeout")]
    pub idle_timeout: Duration,
    /// Stations connected at once; beyond this a new connection is closed at once.
    pub max_connections: usize,
}

impl Default for Sl651Settings {
    fn default() -> Self {
        let limits = riskwatch_ingest::Sl651Limits::default();
        Sl651Settings { listen: None, idle_timeout: limits.idle_timeout, max_connections: limits.max_connections }
    }
}

/// `sl651.idle_timeout`, named in its error (a duration error alone would not say which key).
fn sl651_idle_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    humantime_serde::deserialize(d).map_err(|e: D::Error| serde::de::Error::custom(format!("sl651.idle_timeout: {e}")))
}

impl Sl651Settings {
    /// The SL 651 source's limits on its peers.
    pub fn limits(&self) -> riskwatch_ingest::Sl651Limits {
        riskwatch_ingest::Sl651Limits { idle_timeout: self.idle_timeout, max_connections: self.max_connections }
    }

    /// What is wrong with the section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.address() {
            p.push(e.to_string());
        }
        if self.idle_timeout.is_zero() {
            p.push("sl651.idle_timeout: must be longer than zero (e.g. \"70m\")".into());
        }
        if self.max_connections == 0 {
            p.push("sl651.max_connections: must be at least 1".into());
        }
        p
    }

    /// The address to listen on, if one is set; an error naming the key if it is not one.
    pub fn address(&self) -> Result<Option<SocketAddr>> {
        self.listen
            .as_deref()
            .map(|l| {
                l.parse::<SocketAddr>().map_err(|_| {
                    anyhow::anyhow!("sl651.listen: {l:?} is not an IP:PORT address (e.g. \"0.0.0.0:5651\")")
                })
            })
            .transpose()
    }
}

/// `[metrics]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `HOST:PORT` serving `/metrics`, `/healthz` and `/readyz` (overridden by
    /// `RISKWATCH_METRICS_LISTEN`); none by default.
    pub listen: Option<String>,
}

/// A component of the production path.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// MQTT → Kafka readings.
    Ingest,
    /// Kafka readings → engine → Kafka and MQTT alerts.
    Rules,
    /// Kafka → QuestDB.
    Sink,
}

/// `[mqtt]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Share the reading topics among several ingest processes (`$share/GROUP/…`).
    pub share_group: Option<String>,
    /// Username (with `password`, `RISKWATCH_MQTT_PASSWORD` or `RISKWATCH_MQTT_PASSWORD_FILE`).
    pub username: Option<String>,
    /// Password; prefer the environment variable.
    pub password: Option<String>,
    /// QoS 1 messages the broker may have in flight to ingest before it waits for our acks.
    pub inflight: u16,
    /// Receive coalescing: once readings stream in, ingest reads the broker's socket once per
    /// this period instead of on every TCP segment (`"0s"`: every segment at once).
    #[serde(deserialize_with = "mqtt_read_coalesce")]
    pub read_coalesce: Duration,
    /// Rules workers publish alert events on the MQTT alert topics.
    pub publish_alerts: bool,
    /// Broker CA certificate (PEM): connect over TLS (`RISKWATCH_MQTT_CA`).
    pub tls_ca: Option<String>,
    /// Client certificate (PEM) for brokers that require one (`RISKWATCH_MQTT_CLIENT_CERT`).
    pub tls_cert: Option<String>,
    /// Its private key (PEM) (`RISKWATCH_MQTT_CLIENT_KEY`).
    pub tls_key: Option<String>,
}

/// The longest `[mqtt] read_coalesce` accepted.
const MAX_READ_COALESCE: Duration = Duration::from_millis(100);

/// `mqtt.read_coalesce`, named in its error.
fn mqtt_read_coalesce<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    humantime_serde::deserialize(d).map_err(|e: D::Error| serde::de::Error::custom(format!("mqtt.read_coalesce: {e}")))
}

impl MqttSettings {
    /// TLS for connections to this broker (`tls_ca`, `tls_cert`, `tls_key`, with their
    /// environment overrides applied).
    pub fn tls(&self) -> Result<Option<rumqttc::Transport>> {
        riskwatch_service::mqtt_tls::from_paths(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
    }

    /// Username and password, if a username is configured.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.username.as_deref().map(|u| (u, self.password.as_deref().unwrap_or_default()))
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            host: "127.0.0.1".into(),
            port: 1883,
            share_group: None,
            username: None,
            password: None,
            inflight: riskwatch_ingest::MqttSourceConfig::DEFAULT_INFLIGHT,
            read_coalesce: riskwatch_ingest::MqttSourceConfig::DEFAULT_READ_COALESCE,
            publish_alerts: true,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[questdb]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QuestDbSettings {
    /// questdb-rs configuration string, e.g. `http::addr=questdb:9000;`.
    pub conf: String,
    /// Flush when this many rows are buffered…
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
    /// …or when the oldest buffered row is this old.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// At start-up: create missing tables (`"create"`), only check them (`"check"`), or not
    /// look (`"unchecked"`, for a line-protocol endpoint that is not QuestDB).
    #[serde(default)]
    pub tables: riskwatch_sinks::questdb_tables::TablesPolicy,
    /// QuestDB's HTTP address for that check when `conf` is ILP over TCP (e.g.
    /// `"http://questdb:9000"`); with `http::`/`https::` it is taken from `conf`.
    #[serde(default)]
    pub sql_url: Option<String>,
}

/// `[rules_worker]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RulesWorkerSettings {
    /// How often a worker confirms its outputs, saves its state and commits offsets.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
}

impl Default for RulesWorkerSettings {
    fn default() -> Self {
        RulesWorkerSettings { commit_interval: Duration::from_secs(1) }
    }
}

/// `[embedded]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSettings {
    /// SQLite store.
    pub db: PathBuf,
    /// Run the in-process MQTT broker on this address (else use `[mqtt]`).
    pub listen: Option<SocketAddr>,
    /// Messages one gateway connection may have sent and not yet had acknowledged (stored); at
    /// this many its socket is not read until the store catches up.
    pub gateway_inflight: usize,
    /// Messages all gateway connections together may have taken and not yet stored.
    pub unacked_limit: usize,
    /// When the store's commits reach the disk: `"full"` (every commit synced, the default) or
    /// `"normal"` (synced at checkpoints; the last commits before a power failure can be lost).
    pub synchronous: riskwatch_sinks::sqlite::Synchronous,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        let limits = riskwatch_ingest::FrontLimits::default();
        EmbeddedSettings {
            db: PathBuf::from("riskwatch.db"),
            listen: Some("127.0.0.1:18830".parse().unwrap()),
            gateway_inflight: limits.per_gateway,
            unacked_limit: limits.total,
            synchronous: Default::default(),
        }
    }
}

impl EmbeddedSettings {
    /// The gateway front's limits.
    pub fn front_limits(&self) -> riskwatch_ingest::FrontLimits {
        riskwatch_ingest::FrontLimits { per_gateway: self.gateway_inflight, total: self.unacked_limit }
    }
}

fn default_instance() -> String {
    "riskwatch".into()
}
fn default_components() -> Vec<Component> {
    vec![Component::Ingest, Component::Rules, Component::Sink]
}
fn default_flush_rows() -> usize {
    5000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

mod humantime_serde {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration: {e}")))
    }
}

impl Topology {
    /// Reads, applies environment overrides, resolves paths and validates.
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading topology {}", path.display()))?;
        let mut t: Topology = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        t.apply_env(|k| std::env::var(k).ok())?;
        let base = path.parent().unwrap_or(Path::new("."));
        t.registry = base.join(&t.registry);
        t.rules = base.join(&t.rules);
        if t.embedded.db.is_relative() {
            t.embedded.db = base.join(&t.embedded.db);
        }
        let problems = t.problems();
        if !problems.is_empty() {
            bail!("{} has {} problem(s):\n  {}", path.display(), problems.len(), problems.join("\n  "));
        }
        Ok(t)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("RISKWATCH_INSTANCE") {
            self.instance = v;
        }
        if let Some(v) = get("RISKWATCH_MQTT_HOST") {
            self.mqtt.host = v;
        }
        if let Some(v) = get("RISKWATCH_MQTT_PORT") {
            self.mqtt.port = v.parse().with_context(|| format!("RISKWATCH_MQTT_PORT: {v:?} is not a port"))?;
        }
        if let Some(v) = get("RISKWATCH_MQTT_USERNAME") {
            self.mqtt.username = Some(v);
        }
        if let Some(v) = riskwatch_service::settings::mqtt_password(&get)? {
            self.mqtt.password = Some(v);
        }
        if let Some(v) = get("RISKWATCH_MQTT_CA") {
            self.mqtt.tls_ca = Some(v);
        }
        if let Some(v) = get("RISKWATCH_MQTT_CLIENT_CERT") {
            self.mqtt.tls_cert = Some(v);
        }
        if let Some(v) = get("RISKWATCH_MQTT_CLIENT_KEY") {
            self.mqtt.tls_key = Some(v);
        }
        if let Some(v) = get("RISKWATCH_KAFKA_BROKERS") {
            match &mut self.kafka {
                Some(k) => k.brokers = v,
                None => self.kafka = Some(KafkaConfig::new(&v)),
            }
        }
        if let Some(v) = get("RISKWATCH_QUESTDB_CONF") {
            match &mut self.questdb {
                Some(q) => q.conf = v,
                None => {
                    self.questdb = Some(QuestDbSettings {
                        conf: v,
                        flush_rows: default_flush_rows(),
                        flush_interval: default_flush_interval(),
                        tables: Default::default(),
                        sql_url: None,
                    })
                }
            }
        }
        Ok(())
    }

    /// Every inconsistency, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.instance.is_empty() || !self.instance.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            p.push(format!("instance: {:?} must be letters, digits, '.', '_' or '-'", self.instance));
        }
        if self.components.is_empty() {
            p.push("components: name at least one of \"ingest\", \"rules\", \"sink\"".into());
        }
        if self.mqtt.host.is_empty() {
            p.push("mqtt.host: must not be empty".into());
        }
        if self.mqtt.inflight == 0 {
            p.push("mqtt.inflight: must be at least 1".into());
        }
        if self.mqtt.read_coalesce > MAX_READ_COALESCE {
            p.push(format!(
                "mqtt.read_coalesce: {:?} is too long; at most {:?} (a reading may wait this long before it is evaluated)",
                self.mqtt.read_coalesce, MAX_READ_COALESCE
            ));
        }
        if let Some(k) = &self.kafka {
            p.extend(k.problems());
            if self.components.contains(&Component::Sink) && self.questdb.is_none() {
                p.push("questdb: the sink component needs a [questdb] section (or RISKWATCH_QUESTDB_CONF)".into());
            }
        }
        if let Some(q) = &self.questdb {
            if q.conf.split_once("::").is_none() {
                p.push(format!(
                    "questdb.conf: {:?} is not a questdb client string like \"http::addr=HOST:PORT;\"",
                    q.conf
                ));
            }
            if q.flush_rows == 0 {
                p.push("questdb.flush_rows: must be at least 1".into());
            }
            if q.tables != riskwatch_sinks::questdb_tables::TablesPolicy::Unchecked {
                if let Err(e) = riskwatch_sinks::questdb_tables::SqlEndpoint::from_conf(&q.conf, q.sql_url.as_deref()) {
                    p.push(format!("questdb.conf: {e} (or questdb.tables = \"unchecked\")"));
                }
            }
        }
        if self.embedded.gateway_inflight == 0 {
            p.push("embedded.gateway_inflight: must be at least 1".into());
        }
        if self.embedded.unacked_limit < self.embedded.gateway_inflight {
            p.push(format!(
                "embedded.unacked_limit: {} is below embedded.gateway_inflight ({}); it must be at least that",
                self.embedded.unacked_limit, self.embedded.gateway_inflight
            ));
        }
        p.extend(self.sl651.problems());
        if self.rules_worker.commit_interval.is_zero() {
            p.push("rules_worker.commit_interval: must be longer than zero".into());
        }
        p
    }

    /// Does this process run `c`?
    pub fn runs(&self, c: Component) -> bool {
        self.components.contains(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology> {
        let mut t: Topology = toml::from_str(text)?;
        t.apply_env(|_| None)?;
        Ok(t)
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let t = parse("registry = \"r.toml\"\nrules = \"x.toml\"\n[kafka]\nbrokers = \"k:9092\"\n[questdb]\nconf = \"http::addr=q:9000;\"\n").unwrap();
        assert!(t.problems().is_empty(), "{:?}", t.problems());
        assert_eq!(t.components.len(), 3);
        assert_eq!(t.kafka.as_ref().unwrap().readings_topic, "riskwatch.readings");
        assert_eq!(t.rules_worker.commit_interval, Duration::from_secs(1));
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse("registry = \"r\"\nrules = \"x\"\n[kafka]\nbrokers = \"k\"\nreadings_partitions = \"six\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("readings_partitions"), "{err}");
        let err = parse("registry = \"r\"\nrules = \"x\"\n[mqtt]\nhots = \"a\"\n").unwrap_err().to_string();
        assert!(err.contains("hots"), "{err}");
        let t = parse("registry = \"r\"\nrules = \"x\"\ncomponents = [\"sink\"]\n[kafka]\nbrokers = \"\"\nreadings_partitions = 0\n").unwrap();
        let p = t.problems().join("\n");
        assert!(
            p.contains("kafka.brokers") && p.contains("kafka.readings_partitions") && p.contains("questdb:"),
            "{p}"
        );
    }

    #[test]
    fn the_sl651_listener_is_optional_and_a_bad_address_is_named() {
        let t = parse("registry = \"r\"\nrules = \"x\"\n").unwrap();
        assert_eq!(t.sl651.address().unwrap(), None);
        let t = parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nlisten = \"0.0.0.0:5651\"\n").unwrap();
        assert_eq!(t.sl651.address().unwrap(), Some("0.0.0.0:5651".parse().unwrap()));
        let t = parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nlisten = \"rtu-port\"\n").unwrap();
        let p = t.problems().join("\n");
        assert!(p.contains("sl651.listen: \"rtu-port\" is not an IP:PORT address"), "{p}");
        let err = parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nport = 5651\n").unwrap_err();
        assert!(format!("{err:#}").contains("port"), "{err:#}");
    }

    #[test]
    fn the_sl651_limits_have_defaults_and_bad_values_are_named() {
        let t = parse("registry = \"r\"\nrules = \"x\"\n").unwrap();
        assert_eq!(t.sl651.limits(), riskwatch_ingest::Sl651Limits::default());
        assert_eq!(t.sl651.limits().idle_timeout, Duration::from_secs(70 * 60));
        assert_eq!(t.sl651.limits().max_connections, 1000);
        let t =
            parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nidle_timeout = \"90s\"\nmax_connections = 7\n").unwrap();
        assert_eq!(
            t.sl651.limits(),
            riskwatch_ingest::Sl651Limits { idle_timeout: Duration::from_secs(90), max_connections: 7 }
        );
        assert!(t.problems().is_empty(), "{:?}", t.problems());
        let err = parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("sl651.idle_timeout: \"soon\" is not a duration"), "{err:#}");
        let t =
            parse("registry = \"r\"\nrules = \"x\"\n[sl651]\nidle_timeout = \"0s\"\nmax_connections = 0\n").unwrap();
        let p = t.problems().join("\n");
        assert!(p.contains("sl651.idle_timeout: must be longer than zero"), "{p}");
        assert!(p.contains("sl651.max_connections: must be at least 1"), "{p}");
    }

    #[test]
    fn receive_coalescing_has_a_default_and_bad_values_are_named() {
        let t = parse("registry = \"r\"\nrules = \"x\"\n").unwrap();
        assert_eq!(t.mqtt.read_coalesce, Duration::from_millis(1));
        let t = parse("registry = \"r\"\nrules = \"x\"\n[mqtt]\nread_coalesce = \"0s\"\n").unwrap();
        assert_eq!(t.mqtt.read_coalesce, Duration::ZERO);
        assert!(t.problems().is_empty(), "{:?}", t.problems());
        let err = parse("registry = \"r\"\nrules = \"x\"\n[mqtt]\nread_coalesce = \"soon\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("mqtt.read_coalesce: \"soon\" is not a duration"), "{err:#}");
        let t = parse("registry = \"r\"\nrules = \"x\"\n[mqtt]\nread_coalesce = \"2s\"\n").unwrap();
        let p = t.problems().join("\n");
        assert!(p.contains("mqtt.read_coalesce: 2s is too long; at most 100ms"), "{p}");
    }

    #[test]
    fn the_store_syncs_every_commit_unless_told_otherwise() {
        use riskwatch_sinks::sqlite::Synchronous;
        let t = parse("registry = \"r\"\nrules = \"x\"\n").unwrap();
        assert_eq!(t.embedded.synchronous, Synchronous::Full);
        let t = parse("registry = \"r\"\nrules = \"x\"\n[embedded]\nsynchronous = \"normal\"\n").unwrap();
        assert_eq!(t.embedded.synchronous, Synchronous::Normal);
        let err = parse("registry = \"r\"\nrules = \"x\"\n[embedded]\nsynchronous = \"off\"\n").unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("synchronous") && err.contains("full"), "{err}");
    }

    #[test]
    fn environment_overrides_secrets_and_addresses() {
        let mut t: Topology = toml::from_str("registry = \"r\"\nrules = \"x\"\n").unwrap();
        t.apply_env(|k| match k {
            "RISKWATCH_KAFKA_BROKERS" => Some("b:1".into()),
            "RISKWATCH_MQTT_PASSWORD" => Some("s3cret".into()),
            "RISKWATCH_MQTT_PORT" => Some("1999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(t.kafka.unwrap().brokers, "b:1");
        assert_eq!(t.mqtt.password.as_deref(), Some("s3cret"));
        assert_eq!(t.mqtt.port, 1999);
    }

    #[test]
    fn the_mqtt_password_may_come_from_a_file() {
        let file = std::env::temp_dir().join(format!("rw-topology-pw-{}", std::process::id()));
        std::fs::write(&file, "generated\n").unwrap();
        let path = file.display().to_string();
        let mut t: Topology = toml::from_str("registry = \"r\"\nrules = \"x\"\n").unwrap();
        t.apply_env(|k| (k == "RISKWATCH_MQTT_PASSWORD_FILE").then(|| path.clone())).unwrap();
        assert_eq!(t.mqtt.password.as_deref(), Some("generated"));
        std::fs::remove_file(&file).unwrap();
        let err =
            format!("{:#}", t.apply_env(|k| (k == "RISKWATCH_MQTT_PASSWORD_FILE").then(|| path.clone())).unwrap_err());
        assert!(err.contains("RISKWATCH_MQTT_PASSWORD_FILE"), "{err}");
    }
}
