//! A combustible-gas detector near a leak.
//!
//! Gas rules (GB/T 50493-2019 level-1 ≤ 25 %LEL, level-2 ≤ 50 %LEL) and the k-of-n roll-ups
//! over a plant need detectors that behave like a real plume passing over them: nothing until
//! the gas has been carried from the source (distance ÷ wind speed), a build-up toward a level
//! that falls off with distance and with how far the detector sits off the plume axis, strong
//! turbulent fluctuation, and an exponential wash-out once the leak is isolated. Detectors
//! placed downwind at increasing distances therefore alarm in sequence, while upwind and
//! crosswind ones stay near background.
//!
//! Concentration at the detector, once the plume has arrived, settles toward
//! `source_strength_lel · exp(−distance / length_scale_m) · exp(−½ (off_axis / plume_spread)²)`.
//! Turbulence multiplies it by `1 + turbulence_intensity · x`, where `x` is a unit Gaussian
//! process correlated over `turbulence_time_s`. The head saturates: output is clamped to
//! `0..=full_scale_lel`, as a catalytic or infrared head does at full scale.
//!
//! To simulate several detectors around one leak, build one [`GasLeakParams`], then give each
//! detector its own copy placed with [`GasLeakParams::at`] and its own seed.

use crate::noise::standard_normal;
use crate::params::{any, non_negative, positive, repair, Repair};
use crate::series::{Physics, Schedule, Series};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::Value;
use serde::{Deserialize, Serialize};

/// The leak, the weather and where the detector stands. Missing fields take the defaults
/// listed on each field (see [`GasLeakParams::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GasLeakParams {
    /// Concentration the plume would settle at right at the release point, %LEL (may exceed
    /// full scale). Default 120.
    pub source_strength_lel: f64,
    /// Downwind distance over which the settled concentration falls by a factor `e`, m.
    /// Default 30.
    pub length_scale_m: f64,
    /// Wind speed carrying the plume, m/s (at least 0.1: in calm air gas pools instead of
    /// being carried, which this model does not cover). Default 2.
    pub wind_speed_m_s: f64,
    /// Direction the wind blows *from*, degrees clockwise from north (meteorological
    /// convention). Default 270: a westerly, so the plume travels east.
    pub wind_from_deg: f64,
    /// Angular spread of the plume about the downwind axis (one standard deviation), degrees.
    /// A detector this far off axis sees 61 % of the on-axis level. Default 20.
    pub plume_spread_deg: f64,
    /// Distance from the leak to the detector, m. Default 15.
    pub detector_distance_m: f64,
    /// Bearing from the leak to the detector, degrees clockwise from north. Default 90
    /// (straight downwind of the default wind).
    pub detector_bearing_deg: f64,
    /// When the leak starts, seconds after the start of the series. Default 300.
    pub leak_start_s: f64,
    /// When the leak is isolated, seconds after the start of the series (not before
    /// `leak_start_s`). Default 1200.
    pub leak_end_s: f64,
    /// Time constant of the build-up at the detector once the plume arrives, s. Default 30.
    pub rise_time_s: f64,
    /// Time constant of the wash-out once the plume's tail has passed, s. Default 60.
    pub decay_time_s: f64,
    /// Standard deviation of turbulent fluctuation relative to the mean concentration.
    /// Default 0.3.
    pub turbulence_intensity: f64,
    /// Correlation time of the turbulent fluctuation, s. Default 5.
    pub turbulence_time_s: f64,
    /// Mean background reading with no leak (sensor offset and trace gas), %LEL. Default 0.3.
    pub background_lel: f64,
    /// Standard deviation of the background noise, %LEL. Default 0.2.
    pub background_sigma_lel: f64,
    /// Top of the detector's range; readings saturate here, %LEL. Default 100.
    pub full_scale_lel: f64,
    /// Time between readings, seconds (at least 0.001). Default 1.
    pub interval_s: f64,
    /// Length of the series, seconds. Default 1800 (30 minutes).
    pub duration_s: f64,
}

impl Default for GasLeakParams {
    fn default() -> Self {
        GasLeakParams {
            source_strength_lel: 120.0,
            length_scale_m: 30.0,
            wind_speed_m_s: 2.0,
            wind_from_deg: 270.0,
            plume_spread_deg: 20.0,
            detector_distance_m: 15.0,
            detector_bearing_deg: 90.0,
            leak_start_s: 300.0,
            leak_end_s: 1200.0,
            rise_time_s: 30.0,
            decay_time_s: 60.0,
            turbulence_intensity: 0.3,
            turbulence_time_s: 5.0,
            background_lel: 0.3,
            background_sigma_lel: 0.2,
            full_scale_lel: 100.0,
            interval_s: 1.0,
            duration_s: 1800.0,
        }
    }
}

impl GasLeakParams {
    /// The same leak seen by a detector `distance_m` from the source at `bearing_deg`.
    pub fn at(self, distance_m: f64, bearing_deg: f64) -> Self {
        GasLeakParams { detector_distance_m: distance_m, detector_bearing_deg: bearing_deg, ..self }
    }

    /// Bearing the plume travels toward, degrees clockwise from north.
    pub fn downwind_bearing_deg(&self) -> f64 {
        (self.wind_from_deg + 180.0).rem_euclid(360.0)
    }

    /// Seconds for the gas to travel from the leak to the detector.
    pub fn transport_delay_s(&self) -> f64 {
        self.detector_distance_m / self.wind_speed_m_s
    }

    /// Mean concentration the detector would settle at under a steady leak, %LEL, before
    /// saturation and noise.
    pub fn settled_concentration_lel(&self) -> f64 {
        let off_axis = (self.detector_bearing_deg - self.downwind_bearing_deg() + 180.0).rem_euclid(360.0) - 180.0;
        let crosswind = (-0.5 * (off_axis / self.plume_spread_deg).powi(2)).exp();
        self.source_strength_lel * (-self.detector_distance_m / self.length_scale_m).exp() * crosswind
    }

    /// Mean leak contribution at the detector `t_s` seconds after the start, %LEL, without
    /// background, turbulence or saturation.
    pub fn mean_concentration_at(&self, t_s: f64) -> f64 {
        let arrival = self.leak_start_s + self.transport_delay_s();
        let tail = self.leak_end_s + self.transport_delay_s();
        let build_up = |dt: f64| self.settled_concentration_lel() * (1.0 - (-dt / self.rise_time_s).exp());
        if t_s < arrival {
            0.0
        } else if t_s < tail {
            build_up(t_s - arrival)
        } else {
            build_up(tail - arrival) * (-(t_s - tail) / self.decay_time_s).exp()
        }
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for GasLeakParams {
    const WHAT: &'static str = "gas leak";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        repair!(bad, p, d, {
            source_strength_lel: non_negative,
            length_scale_m: positive,
            wind_speed_m_s: |v: f64| v >= 0.1,
            wind_from_deg: any,
            plume_spread_deg: positive,
            detector_distance_m: non_negative,
            detector_bearing_deg: any,
            leak_start_s: any,
        });
        let default_end = p.leak_start_s + (d.leak_end_s - d.leak_start_s);
        let leak_start = p.leak_start_s;
        repair!(bad, p.leak_end_s, default_end, |v: f64| v >= leak_start);
        repair!(bad, p, d, {
            rise_time_s: positive,
            decay_time_s: positive,
            turbulence_intensity: non_negative,
            turbulence_time_s: positive,
            background_lel: non_negative,
            background_sigma_lel: non_negative,
            full_scale_lel: positive,
            interval_s: |v: f64| v >= 0.001,
            duration_s: non_negative,
        });
    }
}

/// One gas detector's readings around a leak: a lazy, deterministic iterator of %LEL
/// [`Reading`](riskwatch_core::Reading)s, one every `interval_s` from `start` through
/// `duration_s`. Build it with `GasLeak::new` or `GasLeak::track`.
pub type GasLeak = Series<Plume>;

/// The plume as one detector sees it: the physics of a [`GasLeak`].
pub struct Plume {
    params: GasLeakParams,
    /// Unit-variance turbulent fluctuation, carried from reading to reading (drawn fresh for
    /// the first one).
    eddy: Option<f64>,
    /// How much of `eddy` survives one interval.
    eddy_memory: f64,
}

impl Physics for Plume {
    type Params = GasLeakParams;

    fn schedule(params: &GasLeakParams) -> Schedule {
        Schedule::through(params.interval_s, (params.duration_s * 1000.0).round() as i64)
    }

    fn new(params: GasLeakParams, schedule: &Schedule, _: &mut ChaCha8Rng) -> Self {
        let interval_s = schedule.interval_ms as f64 / 1000.0;
        let eddy_memory = (-interval_s / params.turbulence_time_s).exp();
        Plume { params, eddy: None, eddy_memory }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let m = self.eddy_memory;
        let eddy = match self.eddy {
            None => standard_normal(rng),
            Some(eddy) => m * eddy + (1.0 - m * m).sqrt() * standard_normal(rng),
        };
        self.eddy = Some(eddy);
        let p = &self.params;
        let plume = p.mean_concentration_at(offset_ms as f64 / 1000.0) * (1.0 + p.turbulence_intensity * eddy).max(0.0);
        let background = p.background_lel + p.background_sigma_lel * standard_normal(rng);
        Value::Scalar((background + plume).clamp(0.0, p.full_scale_lel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorSpec;
    use riskwatch_core::{Quality, Reading, SensorKind, Timestamp};

    const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    /// (seconds since start, %LEL) for every reading of a detector placed at distance/bearing.
    fn detector(distance_m: f64, bearing_deg: f64, seed: u64) -> Vec<(f64, f64)> {
        let params = GasLeakParams::default().at(distance_m, bearing_deg);
        let spec = SensorSpec::new("plant-gas-1", "plant", SensorKind::GasCombustible, "%LEL");
        GasLeak::new(params, spec, START, seed)
            .map(|r| match r.value {
                Value::Scalar(v) => ((r.ts.millis() - START.millis()) as f64 / 1000.0, v),
                other => panic!("expected a scalar, got {other:?}"),
            })
            .collect()
    }

    fn first_crossing(s: &[(f64, f64)], level: f64) -> Option<f64> {
        s.iter().find(|(_, v)| *v >= level).map(|x| x.0)
    }

    fn peak(s: &[(f64, f64)]) -> f64 {
        s.iter().map(|x| x.1).fold(f64::MIN, f64::max)
    }

    #[test]
    fn same_seed_same_series() {
        assert_eq!(detector(15.0, 90.0, 5), detector(15.0, 90.0, 5));
        assert_ne!(detector(15.0, 90.0, 5), detector(15.0, 90.0, 6));
    }

    #[test]
    fn one_reading_a_second_for_thirty_minutes() {
        let spec = SensorSpec::new("plant-gas-1", "plant", SensorKind::GasCombustible, "%LEL");
        let track = GasLeak::track(GasLeakParams::default(), spec, START, 1);
        assert_eq!(track.span_ms, 1_800_000);
        let readings: Vec<Reading> = track.readings.collect();
        assert_eq!(readings.len(), 1801);
        assert!(readings.windows(2).all(|w| w[1].ts.millis() - w[0].ts.millis() == 1000));
        assert!(readings.iter().all(|r| r.quality == Quality::Good && &*r.unit == "%LEL"));
    }

    #[test]
    fn downwind_detectors_alarm_in_sequence_and_crosswind_stays_low() {
        let p = GasLeakParams::default();
        let near = detector(10.0, 90.0, 1);
        let far = detector(30.0, 90.0, 2);
        let crosswind = detector(20.0, 0.0, 3);
        let upwind = detector(10.0, 270.0, 4);
        let t_near = first_crossing(&near, 25.0).unwrap_or(f64::INFINITY);
        let t_far = first_crossing(&far, 25.0).unwrap_or(f64::INFINITY);
        assert!(t_near >= p.leak_start_s + 10.0 / p.wind_speed_m_s, "no alarm before the gas can arrive");
        assert!(t_near < t_far && t_far < p.leak_end_s, "near {t_near} s, far {t_far} s");
        assert!(peak(&crosswind) < 5.0, "crosswind peak {}", peak(&crosswind));
        assert!(peak(&upwind) < 2.0, "upwind peak {}", peak(&upwind));
        assert!(peak(&near[..300]) < 2.0, "background before the leak");
    }

    /// Mean reading over event times in `window` (seconds since start).
    fn mean_over(s: &[(f64, f64)], window: std::ops::Range<f64>) -> f64 {
        let (sum, n) = s.iter().filter(|(t, _)| window.contains(t)).fold((0.0, 0), |(sum, n), x| (sum + x.1, n + 1));
        sum / n as f64
    }

    #[test]
    fn washes_out_after_isolation() {
        let p = GasLeakParams::default();
        let near = detector(10.0, 90.0, 9);
        let tail = p.leak_end_s + 10.0 / p.wind_speed_m_s;
        assert!(mean_over(&near, p.leak_end_s - 60.0..p.leak_end_s) > 50.0);
        assert!(mean_over(&near, tail + 5.0 * p.decay_time_s..p.duration_s + 1.0) < 2.0);
    }

    #[test]
    fn head_saturates_at_full_scale() {
        let at_source = detector(0.0, 90.0, 11);
        assert_eq!(peak(&at_source), 100.0);
        assert!(at_source.iter().all(|(_, v)| v.is_finite() && (0.0..=100.0).contains(v)));
    }

    #[test]
    fn bad_fields_are_named() {
        let p = GasLeakParams { wind_speed_m_s: 0.0, leak_end_s: 10.0, ..GasLeakParams::default() };
        let err = p.validate().err().unwrap_or_default();
        assert!(err.contains("wind_speed_m_s") && err.contains("leak_end_s"), "{err}");
        assert_eq!(GasLeakParams::default().validate(), Ok(()));
    }
}
