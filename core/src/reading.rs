//! A validated sensor reading.

use crate::{SensorId, SensorKind, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One measurement from one sensor at one event time. Only the wire decoder (after validation
/// against the registry) and simulators build these, so every field can be trusted downstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The sensor that measured it.
    pub sensor: SensorId,
    /// The site the sensor belongs to (from the registry).
    pub site: SiteId,
    /// What was measured.
    pub kind: SensorKind,
    /// When it was measured (for waveforms: the time of the first sample).
    pub ts: Timestamp,
    /// The measurement.
    pub value: Value,
    /// Canonical unit spelling (see [`crate::kind::canonical_unit`]).
    pub unit: Arc<str>,
    /// Data-quality flag.
    pub quality: Quality,
    /// True for a drill's reading (a replayed past event published as an exercise): it is
    /// evaluated apart from live data and every alert it causes is marked as an exercise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exercise: bool,
}

/// A measurement: a scalar, a 3-component displacement or a waveform packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// One number.
    Scalar(f64),
    /// East / north / up displacement.
    Displacement(Displacement),
    /// Samples per channel at a fixed rate.
    Waveform(Waveform),
}

/// Cumulative displacement of a GNSS point from its reference position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Displacement {
    /// East component.
    pub e: f64,
    /// North component.
    pub n: f64,
    /// Up component (negative is subsidence).
    pub u: f64,
}

impl Displacement {
    /// Horizontal magnitude √(e² + n²).
    pub fn horizontal(&self) -> f64 {
        self.e.hypot(self.n)
    }
    /// Three-dimensional magnitude.
    pub fn total(&self) -> f64 {
        (self.e * self.e + self.n * self.n + self.u * self.u).sqrt()
    }
}

/// A packet of samples: N samples per channel at `rate_hz`, the first at the reading's `ts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waveform {
    /// Samples per second.
    pub rate_hz: f64,
    /// One entry per component, all of equal length.
    pub channels: Vec<Channel>,
}

/// One component of a waveform packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Component name, conventionally `e`, `n`, `z`.
    pub name: String,
    /// The samples, oldest first.
    pub samples: Vec<f64>,
}

impl Waveform {
    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.channels.first().map_or(0, |c| c.samples.len())
    }

    /// Whether the packet holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packet duration in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.len() as f64 * 1000.0 / self.rate_hz).round() as i64
    }

    /// Peak of the sample-wise vector magnitude over all channels (no filtering).
    pub fn peak_vector(&self) -> f64 {
        (0..self.len())
            .map(|i| self.channels.iter().map(|c| c.samples[i] * c.samples[i]).sum::<f64>().sqrt())
            .fold(0.0, f64::max)
    }
}

/// QARTOD-style data-quality flag (1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Quality {
    /// 1: passed all checks.
    Good,
    /// 2: not evaluated (the default for gateway data).
    NotEvaluated,
    /// 3: suspect; used by rules but flagged.
    Suspect,
    /// 4: failed; never raises or clears a hazard alert.
    Fail,
    /// 9: missing value.
    Missing,
}

impl Quality {
    /// The numeric flag.
    pub fn code(self) -> u8 {
        match self {
            Quality::Good => 1,
            Quality::NotEvaluated => 2,
            Quality::Suspect => 3,
            Quality::Fail => 4,
            Quality::Missing => 9,
        }
    }

    /// Whether hazard rules may act on a reading with this flag.
    pub fn usable_for_hazard(self) -> bool {
        matches!(self, Quality::Good | Quality::NotEvaluated | Quality::Suspect)
    }
}

impl TryFrom<u8> for Quality {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Ok(match v {
            1 => Quality::Good,
            2 => Quality::NotEvaluated,
            3 => Quality::Suspect,
            4 => Quality::Fail,
            9 => Quality::Missing,
            other => return Err(format!("quality flag {other} is not one of 1, 2, 3, 4, 9")),
        })
    }
}

impl From<Quality> for u8 {
    fn from(q: Quality) -> u8 {
        q.code()
    }
}
