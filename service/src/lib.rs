//! What every riskwatch process shares, whichever wiring it runs: reading the configuration
//! files, MQTT TLS and credentials, the Prometheus metrics registry with its `/metrics`,
//! `/healthz` and `/readyz` endpoint, and stopping on Ctrl-C or SIGTERM. The `riskwatch` binary
//! and the duty console (`riskwatch-console`) both build on it.

pub mod metrics;
pub mod mqtt_tls;
pub mod process_metrics;
pub mod settings;
pub mod shutdown;
