//! The embedded wiring (`riskwatch run`, `riskwatch demo`): one process — MQTT source (the
//! in-process broker or an external one), the rules host, SQLite — joined by bounded in-process
//! channels instead of Kafka (architecture.md, "Embedded mode").

pub mod broker;
pub mod pipeline;
mod publisher;
pub mod recovery;
pub(crate) mod rules_stage;
pub mod summary;

pub use pipeline::{FrontConfig, Pipeline, PipelineConfig};
