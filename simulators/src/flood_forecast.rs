//! Forecasts of a river flood: what a forecasting office would publish for a gauge while the
//! wave of [`crate::flood`] passes it.
//!
//! Each forecast is issued every `issue_every_h` hours and looks `horizon_h` hours ahead in
//! steps of `step_h`. Its values are the flood's own (noise-free) hydrograph plus an error that
//! grows with lead time, as real forecast errors do: per member, a draw `z ~ N(0, 1)` scales a
//! spread of `error_per_h_m` metres per hour of lead (a member that runs high runs high all the
//! way), plus an optional `bias_per_h_m` shared by all members (a model that systematically
//! over- or under-forecasts). `members = 1` is a deterministic forecast; more is an ensemble.
//! The same parameters, start and seed always give the same forecasts.

use crate::flood::RiverFloodParams;
use crate::noise::standard_normal;
use crate::SensorSpec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use riskwatch_core::{Forecast, Timestamp};
use serde::{Deserialize, Serialize};

/// How the forecasts are issued and how wrong they are. Missing fields take the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodForecastParams {
    /// Hours between issues. Default 6.
    pub issue_every_h: f64,
    /// Hours ahead each forecast looks. Default 72.
    pub horizon_h: f64,
    /// Hours between valid times. Default 1.
    pub step_h: f64,
    /// Ensemble members (1 = deterministic). Default 1.
    pub members: u32,
    /// Spread of a member's error per hour of lead time, m. Default 0.01 (±0.24 m at 24 h).
    pub error_per_h_m: f64,
    /// Error shared by all members per hour of lead time, m. Default 0.
    pub bias_per_h_m: f64,
}

impl Default for FloodForecastParams {
    fn default() -> Self {
        FloodForecastParams {
            issue_every_h: 6.0,
            horizon_h: 72.0,
            step_h: 1.0,
            members: 1,
            error_per_h_m: 0.01,
            bias_per_h_m: 0.0,
        }
    }
}

impl FloodForecastParams {
    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.issue_every_h) {
            bad.push("issue_every_h: must be a number > 0");
        }
        if !positive(self.step_h) {
            bad.push("step_h: must be a number > 0");
        }
        if !(positive(self.horizon_h) && self.horizon_h >= self.step_h && self.horizon_h <= 720.0) {
            bad.push("horizon_h: must be ≥ step_h and ≤ 720 (30 days, the wire format's limit)");
        }
        if self.horizon_h / self.step_h > 1000.0 {
            bad.push("step_h: at most 1000 valid times per forecast (wire format limit)");
        }
        if !(1..=100).contains(&self.members) {
            bad.push("members: 1 to 100");
        }
        if !(self.error_per_h_m.is_finite() && self.error_per_h_m >= 0.0) {
            bad.push("error_per_h_m: must be a number ≥ 0");
        }
        if !self.bias_per_h_m.is_finite() {
            bad.push("bias_per_h_m: must be a finite number");
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("flood forecast: {}", bad.join("; ")))
        }
    }
}

/// Every forecast issued for `spec` during the flood that starts at `start` (the flood's
/// `duration_h`), issued at `start`, `start + issue_every_h`, …; an error if a field is bad.
pub fn flood_forecasts(
    flood: &RiverFloodParams,
    params: &FloodForecastParams,
    spec: &SensorSpec,
    start: Timestamp,
    seed: u64,
) -> Result<Vec<Forecast>, String> {
    params.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00f0_7eca);
    let h = 3_600_000.0;
    let issue_every = (params.issue_every_h * h).round() as i64;
    let step = (params.step_h * h).round().max(1.0) as i64;
    let steps = (params.horizon_h / params.step_h).floor() as i64;
    let end = start.millis() + (flood.duration_h.max(0.0) * h).round() as i64;
    let mut out = Vec::new();
    let mut issued = start.millis();
    while issued <= end {
        let valid: Vec<Timestamp> = (1..=steps).map(|k| Timestamp(issued + k * step)).collect();
        let members = (0..params.members)
            .map(|_| {
                let z = standard_normal(&mut rng);
                valid
                    .iter()
                    .map(|t| {
                        let lead_h = (t.millis() - issued) as f64 / h;
                        let truth = flood.level_at((t.millis() - start.millis()) as f64 / 1000.0);
                        truth + lead_h * (params.bias_per_h_m + z * params.error_per_h_m)
                    })
                    .collect()
            })
            .collect();
        out.push(Forecast {
            sensor: spec.sensor.clone(),
            site: spec.site.clone(),
            kind: spec.kind.clone(),
            unit: spec.unit.clone(),
            issued: Timestamp(issued),
            valid,
            members,
        });
        issued += issue_every;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::SensorKind;

    const START: Timestamp = Timestamp::from_millis(1_594_080_000_000);

    fn spec() -> SensorSpec {
        SensorSpec::new("hankou-wl", "hankou", SensorKind::WaterLevel, "m")
    }

    #[test]
    fn forecasts_every_six_hours_through_the_flood_with_errors_growing_with_lead_time() {
        let flood = RiverFloodParams::default();
        let p = FloodForecastParams { members: 50, ..FloodForecastParams::default() };
        let fs = flood_forecasts(&flood, &p, &spec(), START, 7).unwrap();
        assert_eq!(fs.len(), 144 / 6 + 1);
        assert_eq!(fs, flood_forecasts(&flood, &p, &spec(), START, 7).unwrap(), "deterministic");
        for f in &fs {
            assert_eq!(f.valid.len(), 72);
            assert_eq!(f.members.len(), 50);
            assert!(f.valid[0] > f.issued);
        }
        // The ensemble's spread (max − min over members) at 6 h is well below that at 60 h.
        let spread = |f: &Forecast, k: usize| {
            let col: Vec<f64> = f.members.iter().map(|m| m[k]).collect();
            col.iter().cloned().fold(f64::MIN, f64::max) - col.iter().cloned().fold(f64::MAX, f64::min)
        };
        let f = &fs[4];
        assert!(spread(f, 5) * 5.0 < spread(f, 59), "{} vs {}", spread(f, 5), spread(f, 59));
        // The median follows the hydrograph.
        let truth = flood.level_at((f.valid[23].millis() - START.millis()) as f64 / 1000.0);
        assert!((f.median()[23] - truth).abs() < 0.1, "median {} vs truth {truth}", f.median()[23]);
    }

    #[test]
    fn bad_fields_are_named() {
        let p = FloodForecastParams { members: 0, step_h: 0.0, ..FloodForecastParams::default() };
        let e = flood_forecasts(&RiverFloodParams::default(), &p, &spec(), START, 1).unwrap_err();
        assert!(e.contains("members") && e.contains("step_h"), "{e}");
    }
}
