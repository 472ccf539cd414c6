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
    /// Extra librdkafka properties for every client (e.g. `security.protocol`, `sasl.*`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

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
            readings_partitions: defaults::partitions(),
            alerts_partitions: defaults::small_partitions(),
            replication_factor: defaults::replication(),
            rules_group: defaults::rules_group(),
            sink_group: defaults::sink_group(),
            properties: BTreeMap::new(),
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
            ("rules_group", &self.rules_group),
            ("sink_group", &self.sink_group),
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
        p
    }

    /// Client settings shared by producers, consumers and the admin client.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // Reconnect quickly after a broker restart; librdkafka retries forever on its own.
        c.set("reconnect.backoff.ms", "100").set("reconnect.backoff.max.ms", "2000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
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
        for (k, v) in &self.properties {
            c.set(k, v);
        }
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
            .set("partition.assignment.strategy", "range");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
