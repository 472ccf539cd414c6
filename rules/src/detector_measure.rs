//! Detector measures: the stateful quantities a rule can put thresholds on — the GNSS
//! improved tangent angle, velocity and subsidence rate; GB/T 17742 instrumental intensity and
//! PGV; the STA/LTA ratio. Each (rule, sensor) binding owns its detector, created at the first
//! reading and carried in snapshots, so live packets, replays and restarts see the same
//! numbers.

use crate::detectors::butterworth::{Band, SosFilter};
use crate::detectors::gnss::{GnssDetector, GnssParams};
use crate::detectors::intensity::IntensityMeter;
use crate::detectors::sta_lta::RecursiveStaLta;
use crate::Measure;
use riskwatch_core::{Reading, Timestamp, Value};
use serde::{Deserialize, Serialize};

/// STA/LTA windows of a rule and its pre-filter
/// (`sta_lta = { sta_s = 0.5, lta_s = 10, filter = { type = "bandpass", freqmin = 1, freqmax = 20 } }`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaLtaParams {
    /// Short-term average window, seconds. Default 0.5 (recursive STA/LTA practice).
    pub sta_s: f64,
    /// Long-term average window, seconds. Default 10.
    pub lta_s: f64,
    /// Butterworth filter applied to the samples before STA/LTA (none by default).
    pub filter: Option<PreFilter>,
}

impl Default for StaLtaParams {
    fn default() -> Self {
        StaLtaParams { sta_s: 0.5, lta_s: 10.0, filter: None }
    }
}

/// Which Butterworth filter (ObsPy's `bandpass`, `highpass`, `lowpass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterType {
    /// `freqmin` to `freqmax`.
    Bandpass,
    /// Above `freq`.
    Highpass,
    /// Below `freq`.
    Lowpass,
}

/// The pre-filter of an STA/LTA rule, causal and streaming (ObsPy `zerophase=False`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreFilter {
    /// `bandpass`, `highpass` or `lowpass`.
    #[serde(rename = "type")]
    pub kind: FilterType,
    /// Lower corner of a band-pass, Hz.
    pub freqmin: Option<f64>,
    /// Upper corner of a band-pass, Hz.
    pub freqmax: Option<f64>,
    /// Corner of a high- or low-pass, Hz.
    pub freq: Option<f64>,
    /// Filter order, as ObsPy's `corners` (default 4).
    #[serde(default = "four")]
    pub corners: u32,
}

fn four() -> u32 {
    4
}

impl PreFilter {
    /// The band, or the problems naming the fields.
    pub fn band(&self) -> Result<Band, Vec<String>> {
        let positive = |name: &str, v: Option<f64>, p: &mut Vec<String>| match v {
            Some(x) if x.is_finite() && x > 0.0 => x,
            Some(x) => {
                p.push(format!("sta_lta.filter.{name}: {x} must be a positive frequency in Hz"));
                0.0
            }
            None => {
                p.push(format!("sta_lta.filter.{name}: required for type {:?}", self.kind));
                0.0
            }
        };
        let unused = |name: &str, v: Option<f64>, p: &mut Vec<String>| {
            if v.is_some() {
                p.push(format!("sta_lta.filter.{name}: not used by type {:?}", self.kind));
            }
        };
        let mut p = Vec::new();
        let band = match self.kind {
            FilterType::Bandpass => {
                unused("freq", self.freq, &mut p);
                let (lo, hi) = (positive("freqmin", self.freqmin, &mut p), positive("freqmax", self.freqmax, &mut p));
                if p.is_empty() && hi <= lo {
                    p.push(format!("sta_lta.filter.freqmax: {hi} must be above freqmin {lo}"));
                }
                Band::Bandpass { freqmin: lo, freqmax: hi }
            }
            FilterType::Highpass | FilterType::Lowpass => {
                unused("freqmin", self.freqmin, &mut p);
                unused("freqmax", self.freqmax, &mut p);
                let freq = positive("freq", self.freq, &mut p);
                if self.kind == FilterType::Highpass {
                    Band::Highpass { freq }
                } else {
                    Band::Lowpass { freq }
                }
            }
        };
        if self.corners == 0 || self.corners > crate::detectors::butterworth::MAX_CORNERS {
            p.push(format!(
                "sta_lta.filter.corners: {} must be 1 to {}",
                self.corners,
                crate::detectors::butterworth::MAX_CORNERS
            ));
        }
        if p.is_empty() {
            Ok(band)
        } else {
            Err(p)
        }
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
        if let Some(Err(problems)) = self.filter.map(|f| f.band()) {
            p.extend(problems);
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
    /// Recursive STA/LTA of the vertical (`z`) channel if present, else the first channel,
    /// after the optional Butterworth pre-filter.
    StaLta {
        /// The filter.
        filter: Box<RecursiveStaLta>,
        /// Sample rate it was built for.
        rate_hz: f64,
        /// The pre-filter with its state (absent: raw samples).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefilter: Option<Box<SosFilter>>,
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
                // A corner the terminal's rate cannot carry (at or above Nyquist) gives no
                // detector, so no value, as the intensity measure below 20 Hz.
                // The filter starts at rest on the terminal's first sample (gravity on z).
                let prefilter = match sta_lta.filter {
                    Some(f) => {
                        let band = f.band().ok()?;
                        let mut sos = SosFilter::design(band, f.corners, w.rate_hz).ok()?;
                        if let Some(&x) = stalta_channel(w).and_then(|c| c.samples.first()) {
                            sos.prime(x);
                        }
                        Some(Box::new(sos))
                    }
                    None => None,
                };
                RecursiveStaLta::new(nsta, nlta).ok().map(|f| Detector::StaLta {
                    filter: Box::new(f),
                    rate_hz: w.rate_hz,
                    prefilter,
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// The channel STA/LTA runs on: the vertical component carries the P arrival; else the first.
fn stalta_channel(w: &riskwatch_core::Waveform) -> Option<&riskwatch_core::Channel> {
    w.channels.iter().find(|c| c.name == "z").or_else(|| w.channels.first())
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
        (Detector::StaLta { filter, prefilter, .. }, Value::Waveform(w)) => {
            let ch = stalta_channel(w)?;
            scratch.clear();
            scratch.extend_from_slice(&ch.samples);
            match prefilter {
                Some(pre) => pre.process_with(scratch, filter.stepper()),
                None => filter.process_in_place(scratch),
            }
            let peak = scratch.iter().copied().filter(|x| x.is_finite()).fold(0.0, f64::max);
            Some((peak, None))
        }
        _ => None,
    }
}
