//! Simulated sensors for the four hazard families.
//!
//! Each physics model is a deterministic iterator of [`Reading`]s for one sensor: the same
//! parameters, start time and seed always give the same series, so demos, tests and benchmarks
//! are reproducible. The [`fleet`] module paces such series in wall-clock time and publishes
//! them over real MQTT in the wire format, the way gateways do.
//!
//! Models: [`flood::RiverFlood`] (rainfall-driven hydrograph), [`gas::GasLeak`] (a leak
//! reaching detectors downwind), [`gnss::SlopeCreep`] (creep → acceleration → failure),
//! [`seismic::SeismicStation`] (background noise plus an event with P and S arrivals),
//! [`rain::RainGauge`] (a storm's interval amounts), [`gnss::Subsidence`] (trend plus season).
//!
//! Scenarios ([`scenario`]) put many such sensors, failure modes and expected alerts in one
//! TOML file; [`plan`] compiles a scenario and a seed into the deterministic, ordered messages a
//! fleet of gateways sends, and [`fleet::publish_plan`] paces them over MQTT.

use riskwatch_core::{Reading, SensorId, SensorKind, SiteId, Timestamp};
use std::sync::Arc;

pub mod demo_fleet;
pub mod fleet;
pub mod flood;
pub mod flood_forecast;
pub mod forecast_plan;
pub mod gas;
pub mod gnss;
mod noise;
mod params;
pub mod plan;
pub mod rain;
pub mod scenario;
pub mod seismic;
pub mod series;
pub mod sl651_rtu;

/// Identity of the simulated sensor a model produces readings for.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorSpec {
    /// Sensor id (must be in the registry the pipeline uses).
    pub sensor: SensorId,
    /// Its site.
    pub site: SiteId,
    /// Its kind.
    pub kind: SensorKind,
    /// Unit it publishes in.
    pub unit: Arc<str>,
}

impl SensorSpec {
    /// Builds a spec from plain strings.
    pub fn new(sensor: &str, site: &str, kind: SensorKind, unit: &str) -> Self {
        SensorSpec { sensor: SensorId::new(sensor), site: SiteId::new(site), kind, unit: Arc::from(unit) }
    }
}

/// One simulated sensor's series: a finite iterator of readings in non-decreasing event time,
/// starting at `start`, plus the event-time span it covers (used to pace it into a demo).
pub struct Track {
    /// The sensor.
    pub spec: SensorSpec,
    /// Event time of the first reading.
    pub start: Timestamp,
    /// Event-time length of the whole series, in ms.
    pub span_ms: i64,
    /// The readings.
    pub readings: Box<dyn Iterator<Item = Reading> + Send>,
}
