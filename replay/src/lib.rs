//! Replay of recorded readings through the production rule engine (`riskwatch replay`).
//!
//! Hydrology staff replay past floods after each season and in drills: which alerts would
//! today's rules have raised, when, with how much lead time, and what if a threshold were
//! different. Everything here runs the exact [`riskwatch_rules::Engine`] the live pipeline
//! runs, in event time.
//!
//! - [`input`]: recorded readings from CSV, yearbook-style CSV, JSON lines, the embedded
//!   SQLite store and QuestDB's CSV export, validated and in event-time order (streamed when
//!   the input already is).
//! - [`questdb`]: QuestDB's address and credentials, and its `/exp` answer read as it arrives.
//! - [`hindcast`]: the engine over them, as fast as possible or at a speed factor.
//! - [`whatif`]: registry attribute overrides for a second run.
//! - [`verify`]: alert episodes; probability of detection, false-alarm ratio, critical
//!   success index and lead time against a file of observed events.
//! - [`diff`]: two runs on the same history, side by side.
//! - [`writeup`], [`plot`], [`timeaxis`] and [`names`]: Markdown / HTML report with the alert
//!   timeline and SVG plots (baseline and what-if on one chart, dated time axis), stations
//!   named as in the registry (Chinese by default), and the JSON of all events.
//! - [`alert_history`] and [`kpi_report`]: `riskwatch report`, the alarm KPIs
//!   ([`riskwatch_kpi`]) of a period of a store's alert events, as Markdown or HTML.

pub mod alert_history;
pub mod diff;
pub mod forecast_plot;
pub mod forecast_report;
pub mod forecast_skill;
pub mod hindcast;
pub mod input;
pub mod kpi_report;
pub mod names;
pub mod plot;
pub mod questdb;
pub mod timeaxis;
pub mod verify;
pub mod whatif;
pub mod writeup;

use riskwatch_core::{AlertEvent, SensorId, SensorKind, SiteId, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// One bucket of a sensor's downsampled trace (for plots): the extremes and the last value
/// of the scalar readings in `[start, start + bucket)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// Bucket start.
    pub start: Timestamp,
    /// Smallest value in the bucket.
    pub min: f64,
    /// Largest value in the bucket.
    pub max: f64,
    /// Last value in the bucket.
    pub last: f64,
}

/// A sensor's values over the replayed period, downsampled to fixed buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The sensor.
    pub sensor: SensorId,
    /// Its site.
    pub site: SiteId,
    /// Its kind.
    pub kind: SensorKind,
    /// Unit of the values.
    pub unit: Arc<str>,
    /// Bucket length.
    pub bucket: Duration,
    /// Buckets in time order (buckets without readings are absent).
    pub points: Vec<TracePoint>,
}

/// What a replay produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every alert event, in the order the engine emitted them.
    pub events: Vec<AlertEvent>,
    /// Downsampled traces of the scalar sensors (empty if not asked for).
    pub traces: Vec<Trace>,
    /// Readings run through the engine.
    pub readings: u64,
    /// Input records refused (bad line, unknown sensor, …), with where and why.
    pub rejected: Vec<input::Rejection>,
    /// Event time of the first and last reading.
    pub span: Option<(Timestamp, Timestamp)>,
    /// Wall-clock time the run took.
    pub wall: Duration,
}

/// Times in reports as RFC 3339 UTC text (serialisation only).
pub(crate) mod rfc3339 {
    use riskwatch_core::{Level, Timestamp};
    use serde::ser::{SerializeSeq, Serializer};

    pub fn one<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub fn opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339()),
            None => s.serialize_none(),
        }
    }

    pub fn levels<S: Serializer>(v: &[(Timestamp, Level)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for (t, l) in v {
            seq.serialize_element(&(t.to_rfc3339(), l))?;
        }
        seq.end()
    }
}
