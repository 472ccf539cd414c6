//! Kafka settings, as they appear under `[kafka]` in a topology file (docs/operations.md).

use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Brokers, topics and client properties.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Validated readings, keyed by site id, one partition per group of sites.
    #[serde(default = "defaults::readings")]
    pub readings_topic: String,
    /// Alert events, keyed by alert id.
    #[serde(default = "defaults::alerts")]
    pub alerts_topic: String,
    /// Rejected input: original bytes, reason in headers.
    #[serde(default = "defaults::dead_letters")]
    pub dead_letter_topic: String,
    /// Rules workers' state per readings partition (compacted).
    #[serde(default = "defaults::state")]
    pub state_topic: String,
    /// Level changes of the members of network composites, from the readings partitions' rules
    /// hosts to the network host (one partition: one ordered log), and commands on network
    /// composite alerts.
    #[serde(default = "defaults::network")]
    pub network_topic: String,
    /// Partitions of the readings topic (the most rules workers that can share the load).
    #[serde(default = "defaults::partitions")]
    pub readings_partitions: i32,
    /// Partitions of the alerts and dead-letter topics.
    #[serde(default = "defaults::small_partitions")]
    pub alerts_partitions: i32,
    /// Replication factor for topics riskwatch creates (3 in production clusters).
    #[serde(default = "defaults::replication")]
    pub replication_factor: i32,
    /// Consumer group of the rules workers.
    #[serde(default = "defaults::rules_group")]
    pub rules_group: String,
    /// Consumer group of the store sinks.
    #[serde(default = "defaults::sink_group")]
    pub sink_group: String,
    /// Consumer group of the network hosts (every rules worker joins; one holds the network
    /// topic's partition at a time).
    #[serde(default = "defaults::network_group")]
    pub network_group: String,
    /// Join consumer groups as a static member (`group.instance.id` = the client id,
    /// `{instance}-rules`, `{instance}-network`, `{instance}-sink`): a process restarted under
    /// the same instance name takes its partitions back at once instead of after a rebalance.
    /// Recommended on Apache Kafka (every process then needs its own `RISKWATCH_INSTANCE`);
    /// off by default (docs/operations.md, "Delivery guarantees").
    #[serde(default)]
    pub static_membership: bool,
    /// How ingest writes readings records: `binary` (validated once at ingest, read back
    /// without parsing) or `json` (v1 wire batches, for third-party consumers of the topic).
    #[serde(default)]
    pub record_format: crate::records::RecordFormat,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`, `ssl.*`,
    /// `sasl.*`). Any value may be a reference, `env:NAME` or `file:/path`, resolved when a
    /// client is made; secrets (`sasl.password`, `ssl.key.password`, `sasl.jaas.config`…) must be.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Largest rule-state record (one readings partition's engine state), for the state topic's
/// `max.message.bytes` and the rules workers' producer `message.max.bytes`: 64 MiB.
pub const MAX_STATE_RECORD_BYTES: &str = "67108864";

mod defaults {
    pub fn readings() -> String {
        "riskwatch.readings".into()
    }
    pub fn alerts() -> String {
        "riskwatch.alerts".into()
    }
    pub fn dead_letters() -> String {
        "riskwatch.dead-letters".into()
    }
    pub fn state() -> String {
        "riskwatch.rules-state".into()
    }
    pub fn network() -> String {
        "riskwatch.network".into()
    }
    pub fn network_group() -> String {
        "riskwatch-network".into()
    }
    pub fn partitions() -> i32 {
        6
    }
    pub fn small_partitions() -> i32 {
        3
    }
    pub fn replication() -> i32 {
        1
    }
    pub fn rules_group() -> String {
        "riskwatch-rules".into()
    }
    pub fn sink_group() -> String {
        "riskwatch-sink".into()
    }
}

impl KafkaConfig {
    /// Settings for brokers at `brokers` with every other field at its default.
    pub fn new(brokers: &str) -> Self {
        KafkaConfig {
            brokers: brokers.to_string(),
            readings_topic: defaults::readings(),
            alerts_topic: defaults::alerts(),
            dead_letter_topic: defaults::dead_letters(),
            state_topic: defaults::state(),
            network_topic: defaults::network(),
            readings_partitions: defaults::partitions(),
            alerts_partitions: defaults::small_partitions(),
            replication_factor: defaults::replication(),
            rules_group: defaults::rules_group(),
            sink_group: defaults::sink_group(),
            network_group: defaults::network_group(),
            properties: BTreeMap::new(),
            static_membership: false,
            record_format: Default::default(),
        }
    }

    /// Problems with the values, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.brokers.trim().is_empty() {
            p.push("kafka.brokers: must name at least one host:port".into());
        }
        for (field, v) in [
            ("readings_topic", &self.readings_topic),
            ("alerts_topic", &self.alerts_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
            ("state_topic", &self.state_topic),
            ("network_topic", &self.network_topic),
            ("rules_group", &self.rules_group),
            ("sink_group", &self.sink_group),
            ("network_group", &self.network_group),
        ] {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                p.push(format!("kafka.{field}: {v:?} must be letters, digits, '.', '_' or '-'"));
            }
        }
        for (field, v) in [
            ("readings_partitions", self.readings_partitions),
            ("alerts_partitions", self.alerts_partitions),
            ("replication_factor", self.replication_factor),
        ] {
            if v < 1 {
                p.push(format!("kafka.{field}: must be at least 1 (got {v})"));
            }
        }
        for (key, v) in &self.properties {
            let field = format!("kafka.properties.{key:?}");
            if riskwatch_core::secret::is_reference(v) {
                if let Err(e) = riskwatch_core::secret::resolve(v) {
                    p.push(format!("{field}: {e}"));
                }
            } else if riskwatch_core::secret::is_secret_key(key) {
                p.push(format!("{field}: give it as env:NAME or file:/path, not the secret itself"));
            }
        }
        p
    }

    /// The extra properties with references resolved (checked by [`KafkaConfig::problems`]; one
    /// that stopped resolving since is left out, and the client fails with librdkafka's error).
    fn resolved_properties(&self) -> impl Iterator<Item = (&str, String)> {
        self.properties.iter().filter_map(|(k, v)| {
            if !riskwatch_core::secret::is_reference(v) {
                return Some((k.as_str(), v.clone()));
            }
            match riskwatch_core::secret::resolve(v) {
                Ok(resolved) => Some((k.as_str(), resolved)),
                Err(e) => {
                    tracing::error!(property = %k, error = %e, "Kafka property not resolved");
                    None
                }
            }
        })
    }

    /// Client settings shared by producers, consumers and the admin client.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // Reconnect quickly after a broker restart; librdkafka retries forever on its own.
        c.set("reconnect.backoff.ms", "100").set("reconnect.backoff.max.ms", "2000");
        self.apply_properties(&mut c);
        c
    }

    fn apply_properties(&self, c: &mut ClientConfig) {
        for (k, v) in self.resolved_properties() {
            c.set(k, v);
        }
    }

    /// A producer that never loses or reorders what it confirmed: idempotent, `acks=all`,
    /// retrying until `delivery.timeout.ms`.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("delivery.timeout.ms", "120000")
            .set("message.timeout.ms", "120000");
        self.apply_properties(&mut c);
        c
    }

    /// A consumer in `group` that commits offsets only when told to.
    pub fn consumer(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "range")
            // Bound what librdkafka prefetches while the application is not consuming (a sink
            // waiting out a store outage): the backlog stays in Kafka, not in memory.
            .set("queued.max.messages.kbytes", "16384")
            // Alerts must not wait for a fetch to fill up: the broker answers within 20 ms.
            .set("fetch.wait.max.ms", "20")
            // Consumer lag for the metrics endpoint comes from librdkafka's statistics.
            .set("statistics.interval.ms", "5000");
        if self.static_membership {
            c.set("group.instance.id", client_id);
        }
        self.apply_properties(&mut c);
        c
    }

    /// The store sink's consumer in `sink_group`: as [`KafkaConfig::consumer`], prefetching
    /// [`SINK_PREFETCH_KBYTES`] instead of 16 MiB (a `queued.max.messages.kbytes` in
    /// `properties` still wins).
    pub fn sink_consumer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.consumer(&self.sink_group, client_id);
        c.set("queued.max.messages.kbytes", SINK_PREFETCH_KBYTES);
        self.apply_properties(&mut c);
        c
    }
}

/// What the sink's librdkafka prefetches, in KiB (`queued.max.messages.kbytes`): 8 MiB. While
/// QuestDB is down the sink stops consuming, and this prefetch is the part of the backlog it
/// holds in memory (the rest waits in Kafka). tests/kafka_path.rs measured the sink's growth at
/// +12–22 MiB with 8 MiB and +22–30 MiB with 16 MiB; catching up 320 MiB of backlog afterwards
/// took 11–14 s with 8 MiB and 10–12 s with 16 MiB (debug build, shared machine): the sink's
/// decoding and writing, not the prefetch, sets the pace.
pub const SINK_PREFETCH_KBYTES: &str = "8192";

#[cfg(test)]
mod tests {
    use super::*;

    fn with(props: &[(&str, &str)]) -> KafkaConfig {
        let mut k = KafkaConfig::new("k:9092");
        k.properties = props.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        k
    }

    #[test]
    fn an_inline_secret_is_refused_naming_the_field_without_echoing_it() {
        let p = with(&[("security.protocol", "SASL_SSL"), ("sasl.password", "hunter2")]).problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("kafka.properties.\"sasl.password\""), "{p:?}");
        assert!(!p[0].contains("hunter2"), "{p:?}");
    }

    #[test]
    fn the_sink_prefetches_less_than_other_consumers_unless_a_property_says_otherwise() {
        let k = with(&[]);
        assert_eq!(k.sink_consumer("s").get("queued.max.messages.kbytes"), Some(SINK_PREFETCH_KBYTES));
        assert_eq!(k.sink_consumer("s").get("group.id"), Some("riskwatch-sink"));
        assert_eq!(k.consumer("g", "c").get("queued.max.messages.kbytes"), Some("16384"));
        let k = with(&[("queued.max.messages.kbytes", "4096")]);
        assert_eq!(k.sink_consumer("s").get("queued.max.messages.kbytes"), Some("4096"));
    }

    #[test]
    fn references_resolve_into_every_client_and_a_missing_one_names_its_variable() {
        std::env::set_var("RISKWATCH_TEST_KAFKA_PW", "from-env");
        let k = with(&[("sasl.username", "riskwatch"), ("sasl.password", "env:RISKWATCH_TEST_KAFKA_PW")]);
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        for c in [k.client(), k.producer(), k.consumer("g", "c")] {
            assert_eq!(c.get("sasl.password"), Some("from-env"));
            assert_eq!(c.get("sasl.username"), Some("riskwatch"));
        }
        let p = with(&[("sasl.password", "env:RISKWATCH_TEST_KAFKA_PW_UNSET")]).problems();
        assert!(p.len() == 1 && p[0].contains("RISKWATCH_TEST_KAFKA_PW_UNSET"), "{p:?}");
        assert!(format!("{k:?}").contains("env:RISKWATCH_TEST_KAFKA_PW") && !format!("{k:?}").contains("from-env"));
    }
}
