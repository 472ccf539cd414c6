//! A river gauge during a rainfall-driven flood.
//!
//! Water-level rules (warning / guaranteed / record level, rate of rise) need a series that
//! looks like a real flood wave passing a gauge: a slow start, a rise that steepens and then
//! rounds off at the crest, and a recession that is slower than the rise because the catchment
//! keeps draining for days. The rising limb is a gamma curve, the shape of a Nash cascade of
//! linear reservoirs' unit hydrograph; the falling limb is `sech`, which leaves the crest with
//! zero slope and then recedes exponentially toward base flow. An optional semi-diurnal tide
//! (off by default) covers tidal river reaches, and Gaussian noise stands for gauge jitter.
//!
//! The default wave is illustrative, loosely shaped on the 2020 Yangtze flood at Hankou (warning
//! level 27.30 m, crest 28.77 m); it is reconstructed for demos, not observed data.

use crate::noise::standard_normal;
use crate::params::{any, non_negative, positive, repair, Repair};
use crate::series::{Physics, Schedule, Series};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::Value;
use serde::{Deserialize, Serialize};

/// Shape of the flood wave and how the gauge samples it. Missing fields take the defaults
/// listed on each field (see [`RiverFloodParams::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiverFloodParams {
    /// Level before the rain and the asymptote of the recession, m. Default 25.0.
    pub base_level_m: f64,
    /// Crest level of the wave (without tide or noise), m. Default 28.8.
    pub peak_level_m: f64,
    /// Time from the start of the series (the rain) to the crest, hours. Default 60 (day 2.5).
    pub time_to_peak_h: f64,
    /// Gamma shape of the rising limb (the Nash cascade's reservoir count); larger starts later
    /// and rises more steeply. Default 4.
    pub rise_shape: f64,
    /// Recession time constant: far from the crest the excess over base falls by `e` every
    /// this many hours. Default 36.
    pub recession_h: f64,
    /// Semi-diurnal tide amplitude, m; 0 for a river reach above tidal influence. Default 0.
    pub tide_amplitude_m: f64,
    /// Tide period, hours. Default 12.42 (the M2 lunar constituent).
    pub tide_period_h: f64,
    /// Tide phase at the start of the series, degrees. Default 0.
    pub tide_phase_deg: f64,
    /// Standard deviation of gauge noise, m. Default 0.01.
    pub noise_sigma_m: f64,
    /// Time between readings, seconds (at least 0.001). Default 300 (5-minute readings).
    pub interval_s: f64,
    /// Length of the series, hours. Default 144 (6 days).
    pub duration_h: f64,
}

impl Default for RiverFloodParams {
    fn default() -> Self {
        RiverFloodParams {
            base_level_m: 25.0,
            peak_level_m: 28.8,
            time_to_peak_h: 60.0,
            rise_shape: 4.0,
            recession_h: 36.0,
            tide_amplitude_m: 0.0,
            tide_period_h: 12.42,
            tide_phase_deg: 0.0,
            noise_sigma_m: 0.01,
            interval_s: 300.0,
            duration_h: 144.0,
        }
    }
}

impl RiverFloodParams {
    /// Noise-free water level `t_s` seconds after the start of the series, m.
    pub fn level_at(&self, t_s: f64) -> f64 {
        let t_h = t_s / 3600.0;
        let tp = self.time_to_peak_h;
        let wave = if t_h <= 0.0 {
            0.0
        } else if t_h <= tp {
            let x = t_h / tp;
            // Gamma curve scaled to 1 at x = 1, with zero slope there.
            x.powf(self.rise_shape) * (self.rise_shape * (1.0 - x)).exp()
        } else {
            1.0 / ((t_h - tp) / self.recession_h).cosh()
        };
        let tide_angle = std::f64::consts::TAU * t_h / self.tide_period_h + self.tide_phase_deg.to_radians();
        self.base_level_m + (self.peak_level_m - self.base_level_m) * wave + self.tide_amplitude_m * tide_angle.sin()
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for RiverFloodParams {
    const WHAT: &'static str = "river flood";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        repair!(bad, p, d, {
            base_level_m: any,
            peak_level_m: any,
            time_to_peak_h: positive,
            rise_shape: positive,
            recession_h: positive,
            tide_amplitude_m: non_negative,
            tide_period_h: positive,
            tide_phase_deg: any,
            noise_sigma_m: non_negative,
            interval_s: |v: f64| v >= 0.001,
            duration_h: non_negative,
        });
    }
}

/// A river gauge's readings during one flood wave: a lazy, deterministic iterator of
/// water-level [`Reading`](riskwatch_core::Reading)s, one every `interval_s` from `start`
/// through `duration_h`. Build it with `RiverFlood::new` or `RiverFlood::track`.
pub type RiverFlood = Series<FloodWave>;

/// The flood wave as the gauge samples it: the physics of a [`RiverFlood`].
pub struct FloodWave {
    params: RiverFloodParams,
}

impl Physics for FloodWave {
    type Params = RiverFloodParams;

    fn schedule(params: &RiverFloodParams) -> Schedule {
        Schedule::through(params.interval_s, (params.duration_h * 3_600_000.0).round() as i64)
    }

    fn new(params: RiverFloodParams, _: &Schedule, _: &mut ChaCha8Rng) -> Self {
        FloodWave { params }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let p = &self.params;
        Value::Scalar(p.level_at(offset_ms as f64 / 1000.0) + p.noise_sigma_m * standard_normal(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorSpec;
    use riskwatch_core::{Quality, Reading, SensorKind, Timestamp};

    const START: Timestamp = Timestamp::from_millis(1_594_080_000_000); // 2020-07-07T00:00Z

    fn spec() -> SensorSpec {
        SensorSpec::new("hankou-wl", "hankou", SensorKind::WaterLevel, "m")
    }

    /// (hours since start, level) for every reading.
    fn series(params: RiverFloodParams, seed: u64) -> Vec<(f64, f64)> {
        RiverFlood::new(params, spec(), START, seed)
            .map(|r| match r.value {
                Value::Scalar(v) => ((r.ts.millis() - START.millis()) as f64 / 3_600_000.0, v),
                other => panic!("expected a scalar, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn same_seed_same_series_other_seed_differs() {
        let a: Vec<Reading> = RiverFlood::new(RiverFloodParams::default(), spec(), START, 7).collect();
        let b: Vec<Reading> = RiverFlood::new(RiverFloodParams::default(), spec(), START, 7).collect();
        let c: Vec<Reading> = RiverFlood::new(RiverFloodParams::default(), spec(), START, 8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn readings_every_five_minutes_for_six_days() {
        let track = RiverFlood::track(RiverFloodParams::default(), spec(), START, 1);
        assert_eq!(track.span_ms, 6 * 24 * 3_600_000);
        let readings: Vec<Reading> = track.readings.collect();
        assert_eq!(readings.len(), 6 * 288 + 1);
        assert_eq!(readings[0].ts, START);
        assert_eq!(readings.last().map(|r| r.ts.millis() - START.millis()), Some(track.span_ms));
        for pair in readings.windows(2) {
            assert_eq!(pair[1].ts.millis() - pair[0].ts.millis(), 300_000);
        }
        for r in &readings {
            assert_eq!((r.sensor.as_str(), r.site.as_str(), &*r.unit), ("hankou-wl", "hankou", "m"));
            assert_eq!((r.kind.clone(), r.quality), (SensorKind::WaterLevel, Quality::Good));
        }
    }

    #[test]
    fn rises_to_the_crest_near_time_to_peak_then_recedes_slowly() {
        let p = RiverFloodParams::default();
        let s = series(p.clone(), 42);
        assert!(s.iter().all(|(_, v)| v.is_finite()));
        let (crest_h, crest) = s.iter().copied().fold((0.0, f64::MIN), |m, x| if x.1 > m.1 { x } else { m });
        assert!((crest - p.peak_level_m).abs() < 0.05, "crest {crest} vs configured {}", p.peak_level_m);
        assert!((crest_h - p.time_to_peak_h).abs() <= 6.0, "crest at {crest_h} h");
        assert!(s[0].1 < p.base_level_m + 0.05, "starts at base, got {}", s[0].1);

        let half = (p.base_level_m + p.peak_level_m) / 2.0;
        let first_above = s.iter().find(|(_, v)| *v > half).map(|x| x.0).unwrap_or(f64::NAN);
        let last_above = s.iter().rev().find(|(_, v)| *v > half).map(|x| x.0).unwrap_or(f64::NAN);
        assert!(last_above - crest_h > crest_h - first_above, "recession slower than rise");

        let end = s.last().map(|x| x.1).unwrap_or(f64::NAN);
        assert!(end < p.base_level_m + 0.3 * (p.peak_level_m - p.base_level_m), "receded to {end}");
        assert!(end > p.base_level_m, "still above base after six days");
    }

    #[test]
    fn tide_swings_a_tidal_reach_twice_a_day() {
        let p = RiverFloodParams {
            peak_level_m: 25.0,
            tide_amplitude_m: 0.5,
            noise_sigma_m: 0.0,
            duration_h: 25.0,
            ..RiverFloodParams::default()
        };
        let s = series(p, 3);
        let (lo, hi) = s.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
        assert!((hi - lo - 1.0).abs() < 0.01, "range {}", hi - lo);
        let upward_crossings = s.windows(2).filter(|w| w[0].1 < 25.0 && w[1].1 >= 25.0).count();
        assert_eq!(upward_crossings, 2);
    }

    #[test]
    fn bad_fields_are_named_and_never_panic() {
        let p = RiverFloodParams { interval_s: 0.0, recession_h: f64::NAN, ..RiverFloodParams::default() };
        let err = p.validate().err().unwrap_or_default();
        assert!(err.contains("interval_s") && err.contains("recession_h"), "{err}");
        assert!(series(p, 1).iter().all(|(_, v)| v.is_finite()));
        assert_eq!(RiverFloodParams::default().validate(), Ok(()));
    }

    #[test]
    fn params_fill_defaults_from_json() {
        let p: RiverFloodParams = serde_json::from_str(r#"{"peak_level_m": 30.0}"#).unwrap_or_default();
        assert_eq!(p, RiverFloodParams { peak_level_m: 30.0, ..RiverFloodParams::default() });
        assert!(serde_json::from_str::<RiverFloodParams>(r#"{"peak_m": 30.0}"#).is_err());
    }
}
