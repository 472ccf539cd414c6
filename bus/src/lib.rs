//! riskwatch's Kafka plumbing, shared by `riskwatch ingest`, `rules` and `sink`.
//!
//! - [`KafkaConfig`]: brokers, topic names, partition counts and client properties.
//! - [`admin::ensure_topics`]: creates the topics riskwatch needs when they are missing.
//! - [`partition::site_partition`]: which readings partition a site lives on. riskwatch picks
//!   the partition itself (instead of the client's default partitioner) so that a rules worker
//!   knows exactly which sites a partition holds, and watches only those for staleness.
//! - [`records`]: what the records on each topic look like (key, value, headers).
//!
//! Nothing here depends on a particular Kafka-API broker; the tests run against tansu, and
//! production against Apache Kafka.

pub mod admin;
pub mod config;
pub mod partition;
pub mod records;

pub use config::KafkaConfig;
