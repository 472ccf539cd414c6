//! The production wiring over Kafka: `riskwatch ingest` (MQTT → readings topic), `riskwatch
//! rules` (a rules host per owned readings partition → alerts topic and MQTT) and `riskwatch
//! sink` (readings and alerts → QuestDB), each a consumer-group member that can be killed and
//! restarted at any moment (architecture.md, "Production path").

pub mod command_route;
pub mod ingest;
pub mod rules_worker;
pub mod sink;
