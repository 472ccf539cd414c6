//! A tipping-bucket rain gauge under a storm.
//!
//! Rainfall rules add up interval amounts over 1 h, 3 h, 6 h and 24 h windows, so the gauge must
//! report what a real one does: the rain **of the last interval** (usually 5 minutes), in whole
//! bucket tips (0.1, 0.2 or 0.5 mm), zero between showers. The storm's intensity follows a gamma
//! curve around `peak_h` (the same shape as the flood wave's rising limb, mirrored into a slower
//! tail), and showery variability multiplies it by a log-normal factor correlated over
//! `cell_time_min`, so the rain comes in bursts rather than as a smooth curve.
//!
//! The intensity (before variability) peaks at `peak_intensity_mm_per_h` at `peak_h`; the storm
//! total is about `peak_intensity_mm_per_h × (rise + fall width)`, see [`RainStormParams::total_mm`].

use crate::noise::standard_normal;
use crate::params::{non_negative, positive, repair, Repair};
use crate::series::{Physics, Schedule, Series};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::Value;
use serde::{Deserialize, Serialize};

/// The storm and the gauge. Missing fields take the defaults listed on each field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RainStormParams {
    /// When the storm's intensity peaks, hours after the start of the series. Default 12.
    pub peak_h: f64,
    /// Peak rain intensity, mm/h (before showery variability). Default 40.
    pub peak_intensity_mm_per_h: f64,
    /// Gamma shape of the storm: larger is more concentrated around the peak. Default 3.
    pub shape: f64,
    /// Standard deviation of the log of the showery multiplier (0 = smooth). Default 0.5.
    pub variability: f64,
    /// Correlation time of the showers, minutes. Default 30.
    pub cell_time_min: f64,
    /// Bucket size: each reading is a whole number of tips, mm. Default 0.1.
    pub bucket_mm: f64,
    /// Time between readings, seconds; each reading is the rain of that interval. Default 300.
    pub interval_s: f64,
    /// Length of the series, hours. Default 48.
    pub duration_h: f64,
}

impl Default for RainStormParams {
    fn default() -> Self {
        RainStormParams {
            peak_h: 12.0,
            peak_intensity_mm_per_h: 40.0,
            shape: 3.0,
            variability: 0.5,
            cell_time_min: 30.0,
            bucket_mm: 0.1,
            interval_s: 300.0,
            duration_h: 48.0,
        }
    }
}

impl RainStormParams {
    /// Smooth rain intensity `t_h` hours after the start, mm/h.
    pub fn intensity_at(&self, t_h: f64) -> f64 {
        if t_h <= 0.0 {
            return 0.0;
        }
        let x = t_h / self.peak_h;
        self.peak_intensity_mm_per_h * x.powf(self.shape) * (self.shape * (1.0 - x)).exp()
    }

    /// Smooth storm total over the series, mm (numerical integral of the intensity).
    pub fn total_mm(&self) -> f64 {
        let steps = 10_000;
        let dt = self.duration_h / steps as f64;
        (0..steps).map(|i| self.intensity_at((i as f64 + 0.5) * dt) * dt).sum()
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for RainStormParams {
    const WHAT: &'static str = "rain storm";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        repair!(bad, p, d, {
            peak_h: positive,
            peak_intensity_mm_per_h: non_negative,
            shape: positive,
            variability: non_negative,
            cell_time_min: positive,
            bucket_mm: positive,
            interval_s: |v: f64| v >= 0.001,
            duration_h: non_negative,
        });
    }
}

/// A rain gauge's interval amounts during one storm. Build it with `RainGauge::new` or `::track`.
pub type RainGauge = Series<Storm>;

/// The storm as one gauge samples it: the physics of a [`RainGauge`].
pub struct Storm {
    params: RainStormParams,
    cell: Option<f64>,
    memory: f64,
    interval_h: f64,
}

impl Physics for Storm {
    type Params = RainStormParams;

    fn schedule(params: &RainStormParams) -> Schedule {
        Schedule::through(params.interval_s, (params.duration_h * 3_600_000.0).round() as i64)
    }

    fn new(params: RainStormParams, schedule: &Schedule, _: &mut ChaCha8Rng) -> Self {
        let interval_h = schedule.interval_ms as f64 / 3_600_000.0;
        let memory = (-interval_h * 60.0 / params.cell_time_min).exp();
        Storm { params, cell: None, memory, interval_h }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let m = self.memory;
        let cell = match self.cell {
            None => standard_normal(rng),
            Some(c) => m * c + (1.0 - m * m).sqrt() * standard_normal(rng),
        };
        self.cell = Some(cell);
        let p = &self.params;
        // The reading at t is the rain of (t - interval, t]: sample the middle of it.
        let mid_h = offset_ms as f64 / 3_600_000.0 - self.interval_h / 2.0;
        let sigma = p.variability;
        let showery = (sigma * cell - sigma * sigma / 2.0).exp(); // mean 1
        let amount = p.intensity_at(mid_h) * self.interval_h * showery;
        let tips = (amount / p.bucket_mm).floor();
        Value::Scalar(((tips * p.bucket_mm) * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorSpec;
    use riskwatch_core::{SensorKind, Timestamp};

    fn amounts(p: RainStormParams, seed: u64) -> Vec<f64> {
        let spec = SensorSpec::new("rg-1", "county", SensorKind::Rainfall, "mm");
        RainGauge::new(p, spec, Timestamp::from_millis(1_700_000_000_000), seed)
            .map(|r| match r.value {
                Value::Scalar(v) => v,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn five_minute_amounts_in_whole_tips_adding_up_to_the_storm() {
        let p = RainStormParams::default();
        let a = amounts(p.clone(), 1);
        assert_eq!(a.len(), 48 * 12 + 1);
        assert!(a.iter().all(|v| *v >= 0.0 && ((v / 0.1).round() * 0.1 - v).abs() < 1e-9));
        let total: f64 = a.iter().sum();
        assert!((total - p.total_mm()).abs() < 0.35 * p.total_mm(), "total {total} vs {}", p.total_mm());
        // Wettest hour is near the peak.
        let hourly: Vec<f64> = a.chunks(12).map(|c| c.iter().sum()).collect();
        let wettest = hourly.iter().enumerate().fold((0, 0.0), |m, (i, v)| if *v > m.1 { (i, *v) } else { m }).0;
        assert!((wettest as f64 - p.peak_h).abs() <= 4.0, "wettest hour {wettest}");
        assert_eq!(a, amounts(p.clone(), 1));
        assert_ne!(a, amounts(p, 2));
    }
}
