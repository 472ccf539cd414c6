//! Detector measures: the stateful quantities a rule can put thresholds on — the GNSS
//! improved tangent angle, velocity and subsidence rate; GB/T 17742 instrumental intensity and
//! PGV; the STA/LTA ratio. Each (rule, sensor) binding owns its detector, created at the first
//! reading and carried in snapshots, so live packets, replays and restarts see the same
//! numbers.

use crate::detectors::gnss::{GnssDetector, GnssParams};
use crate::detectors::intensity::IntensityMeter;
use crate::detectors::sta_lta::RecursiveStaLta;
use crate::Measure;
use riskwatch_core::{Reading, Timestamp, Value};
use serde::{Deserialize, Serialize};

/// STA/LTA windows of a rule (`sta_lta = { sta_s = 0.5, lta_s = 10 }`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaLtaParams {
    /// Short-term average window, seconds. Default 0.5 (recursive STA/LTA practice).
    pub sta_s: f64,
    /// Long-term average window, seconds. Default 10.
    pub lta_s: f64,
}

impl Default for StaLtaParams {
    fn default() -> Self {
        StaLtaParams { sta_s: 0.5, lta_s: 10.0 }
    }
}

impl StaLtaParams {
    /// Static checks naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.sta_s.is_finite() && self.sta_s > 0.0) {
            p.push("sta_lta.sta_s: must be a positive number of seconds".into());
        }
        if !(self.lta_s.is_finite() && self.lta_s >= self.sta_s) {
            p.push("sta_lta.lta_s: must be at least sta_s".into());
        }
        p
    }
}

/// A binding's detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// GNSS deformation (tangent angle, velocity, subsidence).
    Gnss(Box<GnssDetector>),
    /// Band-passed PGA/PGV and instrumental intensity.
    Intensity(Box<IntensityMeter>),
    /// Recursive STA/LTA over the vector magnitude... of the vertical (`z`) channel if present.
    StaLta {
        /// The filter.
        filter: Box<RecursiveStaLta>,
        /// Sample rate it was built for.
        rate_hz: f64,
    },
}

/// Extra facts a detector attaches to an alert (e.g. the forecast failure time).
pub type Details = serde_json::Value;

/// The detector a measure needs, or why none can be built for this reading.
fn build(measure: Measure, gnss: &GnssParams, sta_lta: &StaLtaParams, r: &Reading) -> Option<Detector> {
    match measure {
        Measure::TangentAngle | Measure::GnssVelocity | Measure::SubsidenceRate => {
            GnssDetector::new(gnss.clone()).ok().map(|d| Detector::Gnss(Box::new(d)))
        }
        Measure::Intensity | Measure::Pgv => match &r.value {
            Value::Waveform(w) => IntensityMeter::new(w.rate_hz).ok().map(|m| Detector::Intensity(Box::new(m))),
            _ => None,
        },
        Measure::StaLta => match &r.value {
            Value::Waveform(w) => {
                let nsta = (sta_lta.sta_s * w.rate_hz).round().max(1.0) as usize;
                let nlta = (sta_lta.lta_s * w.rate_hz).round().max(nsta as f64) as usize;
                RecursiveStaLta::new(nsta, nlta)
                    .ok()
                    .map(|f| Detector::StaLta { filter: Box::new(f), rate_hz: w.rate_hz })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Feeds a reading to the binding's detector (building it first if needed) and returns the
/// measured value and any details for alerts. `None` while the detector has too little data.
pub fn measure(
    measure: Measure,
    slot: &mut Option<Detector>,
    gnss: &GnssParams,
    sta_lta: &StaLtaParams,
    r: &Reading,
    scratch: &mut Vec<f64>,
) -> Option<(f64, Option<Details>)> {
    // A packet at another sample rate needs a detector designed for that rate.
    let rate_changed = match (slot.as_ref(), &r.value) {
        (Some(Detector::Intensity(m)), Value::Waveform(w)) => (m.sample_rate_hz() - w.rate_hz).abs() > 1e-9,
        (Some(Detector::StaLta { rate_hz, .. }), Value::Waveform(w)) => (*rate_hz - w.rate_hz).abs() > 1e-9,
        _ => false,
    };
    if slot.is_none() || rate_changed {
        *slot = build(measure, gnss, sta_lta, r);
    }
    match (slot.as_mut()?, &r.value) {
        (Detector::Gnss(d), Value::Displacement(x)) => {
            let est = d.push(r.ts.millis(), *x);
            let details = est.failure_forecast.map(|f| {
                serde_json::json!({
                    "predicted_failure": Timestamp(f.failure_ms).to_rfc3339(),
                    "forecast_r_squared": f.r_squared,
                    "forecast_points": f.points,
                    "velocity_mm_per_day": est.velocity_mm_per_day,
                })
            });
            let v = match measure {
                Measure::TangentAngle => est.tangent_angle_deg,
                Measure::GnssVelocity => est.velocity_mm_per_day,
                _ => est.subsidence_mm_per_year,
            }?;
            Some((v, details))
        }
        (Detector::Intensity(m), Value::Waveform(w)) => {
            let scale = if &*r.unit == "gal" { 0.01 } else { 1.0 };
            let peaks = m.process_waveform(w, scale).ok()?;
            let details =
                serde_json::json!({ "pga_m_s2": peaks.pga, "pgv_m_s": peaks.pgv, "intensity": peaks.intensity });
            let v = if measure == Measure::Pgv { peaks.pgv } else { peaks.intensity };
            Some((v, Some(details)))
        }
        (Detector::StaLta { filter, .. }, Value::Waveform(w)) => {
            // The vertical component carries the P arrival; fall back to the first channel.
            let ch = w.channels.iter().find(|c| c.name == "z").or_else(|| w.channels.first())?;
            scratch.clear();
            filter.process(&ch.samples, scratch);
            let peak = scratch.iter().copied().filter(|x| x.is_finite()).fold(0.0, f64::max);
            Some((peak, None))
        }
        _ => None,
    }
}
