//! A GNSS monitoring point on a creeping slope that accelerates to failure.
//!
//! Landslide rules (the improved tangent-angle method and Fukuzono's inverse-velocity
//! failure-time forecast) only make sense on a series that passes through the stages they grade:
//! constant-velocity creep, then accelerating creep, then the approach to failure. Here the
//! point creeps at `creep_velocity_mm_per_day` until `acceleration_onset_days`; after that its
//! inverse velocity falls linearly to zero at `failure_after_days` (Fukuzono 1985), so the
//! velocity is `v0 · (tf − ta) / (tf − t)` and the cumulative slip is the Saito-type curve
//! `v0 · ta + v0 · (tf − ta) · ln((tf − ta) / (tf − t))`. Velocity is continuous at the onset, so
//! the tangent angle starts at 45° and climbs through 80° and 85° as failure nears.
//!
//! The slip runs downslope along `azimuth_deg` and dips `plunge_deg` below horizontal, giving a
//! small subsidence component. Each hourly solution carries independent Gaussian noise of
//! ~1 mm per horizontal component and ~2 mm vertical (short-baseline BeiDou/GNSS precision).
//! The series always stops `stop_before_failure_h` short of failure, where the curve is still
//! finite.

use crate::noise::standard_normal;
use crate::params::{any, non_negative, positive, repair, Repair};
use crate::series::{Physics, Schedule, Series};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::{Displacement, Timestamp, Value};
use serde::{Deserialize, Serialize};

const MS_PER_DAY: f64 = 86_400_000.0;

/// How the slope moves and how the receiver samples it. Missing fields take the defaults
/// listed on each field (see [`SlopeCreepParams::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlopeCreepParams {
    /// Velocity along the slip direction during constant-velocity creep, mm/day. Default 0.5.
    pub creep_velocity_mm_per_day: f64,
    /// When accelerating creep begins, days after the start of the series. Default 20.
    pub acceleration_onset_days: f64,
    /// When the slope fails (velocity would become infinite), days after the start; must be
    /// later than the onset. Default 30.25: six hours after the default series ends.
    pub failure_after_days: f64,
    /// Length of the series, days; it is cut shorter if needed to stop
    /// `stop_before_failure_h` before failure. Default 30.
    pub duration_days: f64,
    /// The series never comes closer to failure than this, hours. Default 1.
    pub stop_before_failure_h: f64,
    /// Direction of motion (downslope), degrees clockwise from north. Default 135 (south-east).
    pub azimuth_deg: f64,
    /// Angle of the slip below horizontal, degrees. Default 10.
    pub plunge_deg: f64,
    /// Standard deviation of noise on each horizontal component, mm. Default 1.
    pub horizontal_sigma_mm: f64,
    /// Standard deviation of noise on the vertical component, mm. Default 2.
    pub vertical_sigma_mm: f64,
    /// Time between solutions, seconds (at least 0.001). Default 3600 (hourly).
    pub interval_s: f64,
}

impl Default for SlopeCreepParams {
    fn default() -> Self {
        SlopeCreepParams {
            creep_velocity_mm_per_day: 0.5,
            acceleration_onset_days: 20.0,
            failure_after_days: 30.25,
            duration_days: 30.0,
            stop_before_failure_h: 1.0,
            azimuth_deg: 135.0,
            plunge_deg: 10.0,
            horizontal_sigma_mm: 1.0,
            vertical_sigma_mm: 2.0,
            interval_s: 3600.0,
        }
    }
}

impl SlopeCreepParams {
    /// Days after the start at which the series ends.
    pub fn end_days(&self) -> f64 {
        self.duration_days.min(self.failure_after_days - self.stop_before_failure_h / 24.0)
    }

    /// Noise-free velocity along the slip direction `t_days` after the start, mm/day. Times
    /// past the end of the series are taken at the end, so the result is always finite.
    pub fn velocity_mm_per_day_at(&self, t_days: f64) -> f64 {
        let (v0, ta, tf) = (self.creep_velocity_mm_per_day, self.acceleration_onset_days, self.failure_after_days);
        let t = t_days.min(self.end_days());
        if t <= ta {
            v0
        } else {
            v0 * (tf - ta) / (tf - t)
        }
    }

    /// Noise-free cumulative slip along the slip direction `t_days` after the start, mm (clamped
    /// like [`SlopeCreepParams::velocity_mm_per_day_at`]).
    pub fn slip_mm_at(&self, t_days: f64) -> f64 {
        let (v0, ta, tf) = (self.creep_velocity_mm_per_day, self.acceleration_onset_days, self.failure_after_days);
        let t = t_days.min(self.end_days()).max(0.0);
        if t <= ta {
            v0 * t
        } else {
            v0 * ta + v0 * (tf - ta) * ((tf - ta) / (tf - t)).ln()
        }
    }

    /// Noise-free east/north/up displacement `t_days` after the start, mm.
    pub fn displacement_at(&self, t_days: f64) -> Displacement {
        let slip = self.slip_mm_at(t_days);
        let (az, plunge) = (self.azimuth_deg.to_radians(), self.plunge_deg.to_radians());
        let horizontal = slip * plunge.cos();
        Displacement { e: horizontal * az.sin(), n: horizontal * az.cos(), u: -slip * plunge.sin() }
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for SlopeCreepParams {
    const WHAT: &'static str = "slope creep";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        repair!(bad, p, d, {
            creep_velocity_mm_per_day: non_negative,
            failure_after_days: positive,
        });
        let tf = p.failure_after_days;
        let onset = tf * d.acceleration_onset_days / d.failure_after_days;
        repair!(bad, p.acceleration_onset_days, onset, |v: f64| (0.0..tf).contains(&v));
        repair!(bad, p.duration_days, d.duration_days, non_negative);
        let stop = d.stop_before_failure_h.min(tf * 12.0);
        repair!(bad, p.stop_before_failure_h, stop, |v: f64| v > 0.0 && v < tf * 24.0);
        repair!(bad, p, d, {
            azimuth_deg: any,
            plunge_deg: |v: f64| (-90.0..=90.0).contains(&v),
            horizontal_sigma_mm: non_negative,
            vertical_sigma_mm: non_negative,
            interval_s: |v: f64| v >= 0.001,
        });
    }
}

/// A GNSS point's solutions on a slope heading for failure: a lazy, deterministic iterator
/// of displacement [`Reading`](riskwatch_core::Reading)s, one every `interval_s` from `start`
/// to the end of the series. Build it with `SlopeCreep::new` or `SlopeCreep::track`.
pub type SlopeCreep = Series<CreepToFailure>;

/// The slope's motion as the receiver solves it: the physics of a [`SlopeCreep`].
pub struct CreepToFailure {
    params: SlopeCreepParams,
}

impl Physics for CreepToFailure {
    type Params = SlopeCreepParams;

    fn schedule(params: &SlopeCreepParams) -> Schedule {
        // Floor, not round: the last solution must not fall past the end, nearer to failure.
        Schedule::through(params.interval_s, (params.end_days() * MS_PER_DAY).floor() as i64)
    }

    fn new(params: SlopeCreepParams, _: &Schedule, _: &mut ChaCha8Rng) -> Self {
        CreepToFailure { params }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let p = &self.params;
        let truth = p.displacement_at(offset_ms as f64 / MS_PER_DAY);
        Value::Displacement(Displacement {
            e: truth.e + p.horizontal_sigma_mm * standard_normal(rng),
            n: truth.n + p.horizontal_sigma_mm * standard_normal(rng),
            u: truth.u + p.vertical_sigma_mm * standard_normal(rng),
        })
    }
}

impl SlopeCreep {
    /// When the slope fails: the time a correct inverse-velocity forecast should predict.
    pub fn failure_time(&self) -> Timestamp {
        let ms = (self.physics().params.failure_after_days * MS_PER_DAY).round() as i64;
        Timestamp::from_millis(self.start().millis().saturating_add(ms))
    }
}

/// A GNSS point on subsiding ground (地面沉降): a steady sinking trend plus a seasonal term
/// (groundwater drawn in the dry season, recharged in the wet one), usually reported as one
/// daily solution. Missing fields take the defaults listed on each field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubsidenceParams {
    /// Long-term sinking rate, mm/yr (positive = sinking). Default 30.
    pub rate_mm_per_year: f64,
    /// Amplitude of the annual vertical term, mm. Default 8.
    pub seasonal_amplitude_mm: f64,
    /// Phase of the annual term at the start of the series, degrees. Default 0.
    pub seasonal_phase_deg: f64,
    /// Horizontal drift that accompanies the sinking, mm/yr (east). Default 2.
    pub horizontal_mm_per_year: f64,
    /// Standard deviation of the horizontal noise, mm. Default 1.
    pub horizontal_sigma_mm: f64,
    /// Standard deviation of the vertical noise, mm. Default 2.
    pub vertical_sigma_mm: f64,
    /// Time between solutions, seconds. Default 86400 (daily).
    pub interval_s: f64,
    /// Length of the series, days. Default 730.
    pub duration_days: f64,
}

impl Default for SubsidenceParams {
    fn default() -> Self {
        SubsidenceParams {
            rate_mm_per_year: 30.0,
            seasonal_amplitude_mm: 8.0,
            seasonal_phase_deg: 0.0,
            horizontal_mm_per_year: 2.0,
            horizontal_sigma_mm: 1.0,
            vertical_sigma_mm: 2.0,
            interval_s: 86_400.0,
            duration_days: 730.0,
        }
    }
}

impl SubsidenceParams {
    /// Noise-free displacement `t_days` after the start, mm.
    pub fn displacement_at(&self, t_days: f64) -> Displacement {
        let years = t_days / 365.25;
        let season = std::f64::consts::TAU * years + self.seasonal_phase_deg.to_radians();
        Displacement {
            e: self.horizontal_mm_per_year * years,
            n: 0.0,
            u: -self.rate_mm_per_year * years + self.seasonal_amplitude_mm * season.sin(),
        }
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for SubsidenceParams {
    const WHAT: &'static str = "subsidence";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        repair!(bad, p, d, {
            rate_mm_per_year: any,
            seasonal_amplitude_mm: non_negative,
            seasonal_phase_deg: any,
            horizontal_mm_per_year: any,
            horizontal_sigma_mm: non_negative,
            vertical_sigma_mm: non_negative,
            interval_s: |v: f64| v >= 0.001,
            duration_days: non_negative,
        });
    }
}

/// A subsiding GNSS point's solutions. Build it with `Subsidence::new` or `Subsidence::track`.
pub type Subsidence = Series<SinkingGround>;

/// The ground as the GNSS point sees it: the physics of a [`Subsidence`].
pub struct SinkingGround {
    params: SubsidenceParams,
}

impl Physics for SinkingGround {
    type Params = SubsidenceParams;

    fn schedule(params: &SubsidenceParams) -> Schedule {
        Schedule::through(params.interval_s, (params.duration_days * MS_PER_DAY).round() as i64)
    }

    fn new(params: SubsidenceParams, _: &Schedule, _: &mut ChaCha8Rng) -> Self {
        SinkingGround { params }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let p = &self.params;
        let truth = p.displacement_at(offset_ms as f64 / MS_PER_DAY);
        Value::Displacement(Displacement {
            e: truth.e + p.horizontal_sigma_mm * standard_normal(rng),
            n: truth.n + p.horizontal_sigma_mm * standard_normal(rng),
            u: truth.u + p.vertical_sigma_mm * standard_normal(rng),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorSpec;
    use riskwatch_core::{Quality, Reading, SensorKind};

    const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn spec() -> SensorSpec {
        SensorSpec::new("slope-gnss-3", "slope", SensorKind::GnssDisplacement, "mm")
    }

    /// (days since start, displacement) for every solution.
    fn series(params: SlopeCreepParams, seed: u64) -> Vec<(f64, Displacement)> {
        SlopeCreep::new(params, spec(), START, seed)
            .map(|r| match r.value {
                Value::Displacement(d) => ((r.ts.millis() - START.millis()) as f64 / MS_PER_DAY, d),
                other => panic!("expected a displacement, got {other:?}"),
            })
            .collect()
    }

    /// Least-squares velocity (mm/day) of the downslope horizontal component over `points`.
    fn downslope_velocity(points: &[(f64, Displacement)], azimuth_deg: f64) -> f64 {
        let az = azimuth_deg.to_radians();
        let xs: Vec<(f64, f64)> = points.iter().map(|(t, d)| (*t, d.e * az.sin() + d.n * az.cos())).collect();
        let n = xs.len() as f64;
        let (mt, mx) = (xs.iter().map(|x| x.0).sum::<f64>() / n, xs.iter().map(|x| x.1).sum::<f64>() / n);
        let cov: f64 = xs.iter().map(|(t, x)| (t - mt) * (x - mx)).sum();
        let var: f64 = xs.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
        cov / var
    }

    #[test]
    fn same_seed_same_series() {
        let a: Vec<Reading> = SlopeCreep::new(SlopeCreepParams::default(), spec(), START, 3).collect();
        let b: Vec<Reading> = SlopeCreep::new(SlopeCreepParams::default(), spec(), START, 3).collect();
        assert_eq!(a, b);
        assert_ne!(series(SlopeCreepParams::default(), 3), series(SlopeCreepParams::default(), 4));
    }

    #[test]
    fn hourly_solutions_for_thirty_days() {
        let track = SlopeCreep::track(SlopeCreepParams::default(), spec(), START, 1);
        assert_eq!(track.span_ms, 30 * 86_400_000);
        let readings: Vec<Reading> = track.readings.collect();
        assert_eq!(readings.len(), 30 * 24 + 1);
        assert!(readings.windows(2).all(|w| w[1].ts.millis() - w[0].ts.millis() == 3_600_000));
        assert!(readings.iter().all(|r| r.quality == Quality::Good && r.kind == SensorKind::GnssDisplacement));
    }

    #[test]
    fn creeps_steadily_then_accelerates_downslope() {
        let p = SlopeCreepParams::default();
        let s = series(p.clone(), 21);
        let early = downslope_velocity(&s[..10 * 24], p.azimuth_deg);
        let late = downslope_velocity(&s[s.len() - 24..], p.azimuth_deg);
        assert!((early - 0.5).abs() < 0.15, "early creep {early} mm/day");
        assert!(late > 10.0 * early, "late {late} mm/day vs early {early} mm/day");

        let tail = &s[s.len() - 24..];
        let mean = |f: fn(&Displacement) -> f64| tail.iter().map(|(_, d)| f(d)).sum::<f64>() / tail.len() as f64;
        let (e, n, u) = (mean(|d| d.e), mean(|d| d.n), mean(|d| d.u));
        let bearing = e.atan2(n).to_degrees().rem_euclid(360.0);
        assert!((bearing - p.azimuth_deg).abs() < 10.0, "moving toward {bearing}°");
        assert!(u < 0.0, "sinking as it slides, up = {u}");
    }

    #[test]
    fn tangent_angle_reaches_red_before_the_series_ends() {
        let p = SlopeCreepParams::default();
        let ratio = p.velocity_mm_per_day_at(p.end_days()) / p.creep_velocity_mm_per_day;
        assert!(ratio.atan().to_degrees() >= 85.0, "α = {}°", ratio.atan().to_degrees());
        assert_eq!(p.velocity_mm_per_day_at(p.acceleration_onset_days), p.creep_velocity_mm_per_day);
    }

    #[test]
    fn stays_finite_and_stops_short_of_failure() {
        let p = SlopeCreepParams { duration_days: 60.0, ..SlopeCreepParams::default() };
        let model = SlopeCreep::new(p.clone(), spec(), START, 5);
        let failure = model.failure_time();
        let readings: Vec<Reading> = model.collect();
        let last = readings.last().map(|r| r.ts.millis()).unwrap_or(i64::MAX);
        assert!(failure.millis() - last >= 3_600_000, "last solution {} ms before failure", failure.millis() - last);
        assert!(series(p, 5).iter().all(|(_, d)| d.e.is_finite() && d.n.is_finite() && d.u.is_finite()));
    }

    #[test]
    fn bad_fields_are_named() {
        let p = SlopeCreepParams { acceleration_onset_days: 40.0, interval_s: -1.0, ..SlopeCreepParams::default() };
        let err = p.validate().err().unwrap_or_default();
        assert!(err.contains("acceleration_onset_days") && err.contains("interval_s"), "{err}");
        assert_eq!(SlopeCreepParams::default().validate(), Ok(()));
    }

    #[test]
    fn subsidence_sinks_at_its_trend_with_a_seasonal_swing() {
        let p = SubsidenceParams::default();
        let spec = SensorSpec::new("city-gnss-1", "city", SensorKind::GnssDisplacement, "mm");
        let ups: Vec<f64> = Subsidence::new(p.clone(), spec, START, 4)
            .map(|r| match r.value {
                Value::Displacement(d) => d.u,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ups.len(), 731);
        // Two whole years: the seasonal term cancels and the trend remains.
        let first: f64 = ups[..30].iter().sum::<f64>() / 30.0;
        let last: f64 = ups[ups.len() - 30..].iter().sum::<f64>() / 30.0;
        let sunk_per_year = (first - last) / 2.0;
        assert!((sunk_per_year - p.rate_mm_per_year).abs() < 5.0, "{sunk_per_year} mm/yr");
        // A quarter year in, the seasonal term lifts the point above its trend.
        let q = p.displacement_at(365.25 / 4.0).u + p.rate_mm_per_year / 4.0;
        assert!((q - p.seasonal_amplitude_mm).abs() < 1e-6);
    }
}
