//! Topic provisioning: riskwatch creates the topics it needs at start-up if they are missing
//! (Kafka admin API), and reads back the readings topic's real partition count.

use crate::KafkaConfig;
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};
use tracing::info;

/// Creates every riskwatch topic that does not exist yet; existing topics are left alone.
/// Retries for up to `within` while the brokers are unreachable.
pub async fn ensure_topics(cfg: &KafkaConfig, within: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client().create().context("creating Kafka admin client")?;
    let topics = [
        NewTopic::new(&cfg.readings_topic, cfg.readings_partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", "2592000000"),
        NewTopic::new(&cfg.alerts_topic, cfg.alerts_partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", "31536000000"),
        NewTopic::new(&cfg.dead_letter_topic, cfg.alerts_partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", "2592000000"),
        NewTopic::new(&cfg.network_topic, 1, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", "2592000000"),
        NewTopic::new(&cfg.state_topic, 1, TopicReplication::Fixed(cfg.replication_factor))
            .set("cleanup.policy", "compact")
            // One record holds a partition's whole rule state: a few hundred bytes per sensor,
            // more than Kafka's default 1 MB for a worker owning thousands of sensors.
            .set("max.message.bytes", crate::config::MAX_STATE_RECORD_BYTES),
    ];
    let deadline = Instant::now() + within;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    loop {
        let outcome = admin.create_topics(&topics, &opts).await;
        let err = match outcome {
            Ok(results) => {
                let mut problems = Vec::new();
                for r in results {
                    match r {
                        Ok(name) => info!(topic = %name, "created Kafka topic"),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => problems.push(format!("{name}: {code}")),
                    }
                }
                if problems.is_empty() {
                    return Ok(());
                }
                problems.join("; ")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("could not create Kafka topics at {}: {err}", cfg.brokers);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The number of partitions `topic` really has (which is what producers and workers must use,
/// whatever the config says).
pub fn partition_count(cfg: &KafkaConfig, topic: &str, within: Duration) -> Result<i32> {
    let consumer: BaseConsumer = cfg.client().create().context("creating Kafka metadata client")?;
    let deadline = Instant::now() + within;
    loop {
        let err = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => match md.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => return Ok(t.partitions().len() as i32),
                Some(t) => format!("topic {topic}: {:?}", t.error()),
                None => format!("topic {topic} not found"),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("no metadata for {topic} from {}: {err}", cfg.brokers);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
