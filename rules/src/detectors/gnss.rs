//! GNSS deformation of one monitoring point: tangent angle, failure forecast, subsidence rate.
//!
//! [`GnssDetector`] takes the point's solutions (event time, cumulative east/north/up
//! displacement), hourly or daily, irregular or with gaps, and after each one reports a
//! [`GnssEstimate`]:
//!
//! - **Smoothed motion.** A quadratic least-squares fit (Savitzky–Golay style, but on the
//!   actual solution times, so irregular sampling is fine) over the last `window` solutions gives
//!   displacement, velocity (mm/day) and acceleration (mm/day²) at the newest solution. Smoothing
//!   comes before differentiating because a raw hourly difference of 1 mm-noise positions is
//!   ±34 mm/day of noise. Motion is measured **along the direction of cumulative horizontal
//!   displacement**: the unit vector of the smoothed east/north position, which is measured from
//!   the point's reference position and so points the way the slope has moved. Unlike the
//!   horizontal magnitude, a projection is not biased upwards by noise (a still point reads
//!   ≈ 0 mm/day, not ≈ +1). Vertical motion goes to the subsidence rate.
//! - **Improved tangent angle** (Xu Qiang et al., 2009). Normalising cumulative displacement by
//!   the constant-velocity-stage speed v, T = S / v, makes the slope of T(t) dimensionless:
//!   α = arctan(dT/dt) = arctan(v_now / v), 45° in steady creep, graded by
//!   [`TangentAngleThresholds`]. v is `v_constant_mm_per_day` when configured, otherwise the
//!   least-squares horizontal speed over the first `calibration_days` of data (which must then
//!   be steady creep); there is no angle until calibration ends.
//! - **Inverse velocity** (Fukuzono, 1985). While creep accelerates to failure 1/v falls
//!   linearly to zero: a least-squares line of 1/v against time over the trailing run of
//!   accelerating estimates, extrapolated to 1/v = 0, forecasts the failure time. The 1/v points
//!   are each window's mean velocity (its straight-line slope, 16× less noisy than the
//!   quadratic's end-point velocity). A window's mean velocity is not the velocity at its
//!   centre when the curve bends sharply, as it does days before failure: on the hyperbolic
//!   curve v = A/(tf − t) it is the velocity at the time t* = tf − 1/g, where
//!   g = Σ wᵢ·(−ln(tf − tᵢ)) with wᵢ the slope weights. The fit therefore starts from the
//!   window centres and re-places each point at its t* for the current forecast until the
//!   forecast settles; left at their centres, week-long windows put failure up to a day early.
//!   There is no forecast unless the point moves faster than in the constant stage and above
//!   the noise floor, at least `inverse_velocity_min_points` estimates in a row show positive
//!   acceleration, the line has R² ≥ `inverse_velocity_min_r2`, and the forecast lies no
//!   further ahead than the data behind it reach back (in steady creep the heavily overlapping
//!   windows can line up into a gentle spurious trend of 1/v pointing weeks ahead).
//! - **Subsidence** in mm/yr, positive when sinking: a least-squares line through the up
//!   component over `subsidence_window_days` (fitted to daily means weighted by count, which is
//!   the same line as through every solution to within the spread of times inside a day, and
//!   keeps hourly data as cheap as daily), with an annual sine and cosine fitted alongside once
//!   the data span 330 days so that seasonal heave does not leak into the rate.
//!
//! # Noise floor
//! Short-baseline GNSS is good to ~1 mm horizontally, and the domain rule is to act only on
//! motion above ~5× that per period (`noise_floor_mm`, default 5 mm). It is applied twice:
//! 1. *Window motion*: the horizontal distance between the fitted positions at the oldest and
//!    newest solution of the smoothing window. While it is below the floor the angle is capped at
//!    45°, so motion that cannot be told from steady creep or rest never grades above blue, and
//!    there is no failure forecast.
//! 2. *Calibrated speed*: a calibrated v is at least `noise_floor_mm / calibration_days`, the
//!    slowest motion the calibration period can tell from noise. Without this a still point
//!    would calibrate to v ≈ 0 and every wobble would read as an angle near 90°.
//!
//! # Gaps
//! The fit spans gaps (a least-squares quadratic does not need regular sampling), but after a
//! gap longer than `max_gap_hours` motion estimates pause until a quarter of a window of fresh
//! solutions has arrived, so the newest end of the curve is never pinned by a handful of points.
//! Calibration and the subsidence regression are unaffected by gaps.
//!
//! # Memory bound
//! [`GnssState`] holds at most `window + inverse_velocity_points − 1` horizontal solutions
//! (24 bytes each; the windows of every kept velocity estimate), `inverse_velocity_points`
//! velocity estimates (64 bytes each), `ceil(subsidence_window_days) + 1` daily bins of the up
//! component (32 bytes each, whatever the sampling rate) and fixed calibration sums: about
//! 20 kB with the defaults.

use ndarray::Array2;
use riskwatch_core::{Displacement, Level};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::f64::consts::TAU;

const MS_PER_DAY: f64 = 86_400_000.0;
const MS_PER_HOUR: f64 = 3_600_000.0;
const DAYS_PER_YEAR: f64 = 365.25;
/// The tangent angle of creep at exactly the constant-velocity-stage speed.
const CONSTANT_CREEP_DEG: f64 = 45.0;
/// Shortest span of vertical data over which an annual cycle can be told from a trend.
const ANNUAL_TERMS_MIN_SPAN_DAYS: f64 = 330.0;
/// Largest accepted `window` / `inverse_velocity_points`, to keep the state small.
const MAX_POINTS: usize = 10_000;
/// Largest accepted `subsidence_window_days` (ten years).
const MAX_SUBSIDENCE_WINDOW_DAYS: f64 = 3_653.0;
/// Floor on the constant-stage speed so the angle is never 0/0.
const MIN_CONSTANT_VELOCITY: f64 = 1e-9;
/// The failure forecast has settled when an iteration moves it less than this (~1 s).
const RETIMING_TOLERANCE_DAYS: f64 = 1e-5;
const MAX_RETIMING_ITERATIONS: usize = 50;
/// Earliest failure, after the newest solution, on which the 1/v points are re-placed (~90 s).
const MIN_LEAD_DAYS: f64 = 1e-3;

/// Where the tangent-angle levels start, degrees (Xu Qiang et al., 2009).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TangentAngleThresholds {
    /// Attention (blue) at or above this. Default 40: the method puts steady creep at "≈ 45°"
    /// and a smoothed angle scatters a few degrees either side of it, so blue starts at
    /// 0.84 of the constant-stage speed (tan 40°): steady creep stays blue, a slope slowing
    /// well below its creep rate drops out.
    pub blue_deg: f64,
    /// Caution (yellow) strictly above this. Default 45 (initial acceleration). Steady creep
    /// scatters across 45°, so an alert rule wants a deadband or on-delay here.
    pub yellow_above_deg: f64,
    /// Warning (orange) at or above this. Default 80 (medium acceleration).
    pub orange_deg: f64,
    /// Alarm (red) at or above this. Default 85 (critical sliding).
    pub red_deg: f64,
}

impl Default for TangentAngleThresholds {
    fn default() -> Self {
        TangentAngleThresholds { blue_deg: 40.0, yellow_above_deg: 45.0, orange_deg: 80.0, red_deg: 85.0 }
    }
}

impl TangentAngleThresholds {
    /// The level of a tangent angle in degrees; `None` below blue (or for NaN).
    pub fn level(&self, alpha_deg: f64) -> Option<Level> {
        if alpha_deg >= self.red_deg {
            Some(Level::Red)
        } else if alpha_deg >= self.orange_deg {
            Some(Level::Orange)
        } else if alpha_deg > self.yellow_above_deg {
            Some(Level::Yellow)
        } else if alpha_deg >= self.blue_deg {
            Some(Level::Blue)
        } else {
            None
        }
    }

    fn problems(&self, out: &mut Vec<String>) {
        let fields = [
            ("blue_deg", self.blue_deg),
            ("yellow_above_deg", self.yellow_above_deg),
            ("orange_deg", self.orange_deg),
            ("red_deg", self.red_deg),
        ];
        for (name, v) in fields {
            if !(0.0..=90.0).contains(&v) {
                out.push(format!("thresholds.{name}: must be between 0 and 90 degrees"));
            }
        }
        for pair in fields.windows(2) {
            let ((a, x), (b, y)) = (pair[0], pair[1]);
            if x > y {
                out.push(format!("thresholds: {a} {x} must be ≤ {b} {y}"));
            }
        }
    }
}

/// The level of a tangent angle under the default thresholds (blue ≥ 40°, yellow > 45°,
/// orange ≥ 80°, red ≥ 85°).
pub fn tangent_angle_level(alpha_deg: f64) -> Option<Level> {
    TangentAngleThresholds::default().level(alpha_deg)
}

/// Configuration of a [`GnssDetector`]. Missing fields take the defaults listed on each field,
/// which suit hourly solutions; for daily solutions use e.g. `window = 15`,
/// `max_gap_hours = 96`, `inverse_velocity_points = 15`, `inverse_velocity_min_points = 5`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GnssParams {
    /// Solutions in the smoothing fit (at least 5). Default 168: a week of hourly solutions,
    /// which brings 1 mm position noise down to ~0.15 mm/day of velocity noise (±2° of angle,
    /// one sigma, at 2 mm/day creep). The price is lag near failure: on a slope failing 15 days
    /// after its creep starts to accelerate, the angle reaches 80° and 85° about a day after
    /// the true curve does. Shorter windows react sooner and scatter more (two days: ±15°).
    pub window: usize,
    /// A longer gap between solutions pauses motion estimates until `window / 4` solutions
    /// have arrived after it, hours. Default 12.
    pub max_gap_hours: f64,
    /// Speed of the constant-velocity creep stage, mm/day; when absent it is calibrated from
    /// the first `calibration_days` of data. Default absent.
    pub v_constant_mm_per_day: Option<f64>,
    /// Length of the calibration period, days (used when `v_constant_mm_per_day` is absent).
    /// Default 14.
    pub calibration_days: f64,
    /// Horizontal motion that counts as real, mm (see the module docs). Default 5: five times
    /// the ~1 mm horizontal precision of short-baseline GNSS.
    pub noise_floor_mm: f64,
    /// Where the tangent-angle levels start.
    pub thresholds: TangentAngleThresholds,
    /// Velocity estimates kept for the inverse-velocity fit (at least 3). Default 48.
    pub inverse_velocity_points: usize,
    /// Fewest accelerating estimates the inverse-velocity fit needs (at least 3). Default 12.
    pub inverse_velocity_min_points: usize,
    /// Least R² of the inverse-velocity line for a forecast, 0–1. Default 0.8.
    pub inverse_velocity_min_r2: f64,
    /// Span of the subsidence regression, days. Default 365: over 90 days a ±5 mm annual
    /// cycle alone swings the rate by up to ±30 mm/yr; over a year the cycle can be fitted.
    pub subsidence_window_days: f64,
    /// Least span of vertical data before a subsidence rate is reported, days. Default 90.
    pub subsidence_min_span_days: f64,
    /// Fit an annual sine and cosine alongside the trend once the data span at least 330
    /// days, so seasonal motion does not leak into the rate. Default true.
    pub subsidence_annual_terms: bool,
}

impl Default for GnssParams {
    fn default() -> Self {
        GnssParams {
            window: 168,
            max_gap_hours: 12.0,
            v_constant_mm_per_day: None,
            calibration_days: 14.0,
            noise_floor_mm: 5.0,
            thresholds: TangentAngleThresholds::default(),
            inverse_velocity_points: 48,
            inverse_velocity_min_points: 12,
            inverse_velocity_min_r2: 0.8,
            subsidence_window_days: 365.0,
            subsidence_min_span_days: 90.0,
            subsidence_annual_terms: true,
        }
    }
}

impl GnssParams {
    /// Static validation; each message starts with the field it is about.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(5..=MAX_POINTS).contains(&self.window) {
            out.push(format!("window: must be between 5 and {MAX_POINTS} solutions"));
        }
        if !positive(self.max_gap_hours) {
            out.push("max_gap_hours: must be a finite number > 0".into());
        }
        if self.v_constant_mm_per_day.is_some_and(|v| !positive(v)) {
            out.push("v_constant_mm_per_day: must be a finite number > 0".into());
        }
        if !positive(self.calibration_days) {
            out.push("calibration_days: must be a finite number > 0".into());
        }
        if !(self.noise_floor_mm.is_finite() && self.noise_floor_mm >= 0.0) {
            out.push("noise_floor_mm: must be a finite number ≥ 0".into());
        }
        self.thresholds.problems(&mut out);
        if !(3..=MAX_POINTS).contains(&self.inverse_velocity_points) {
            out.push(format!("inverse_velocity_points: must be between 3 and {MAX_POINTS}"));
        }
        if !(3..=self.inverse_velocity_points.max(3)).contains(&self.inverse_velocity_min_points) {
            out.push("inverse_velocity_min_points: must be ≥ 3 and ≤ inverse_velocity_points".into());
        }
        if !(0.0..=1.0).contains(&self.inverse_velocity_min_r2) {
            out.push("inverse_velocity_min_r2: must be between 0 and 1".into());
        }
        if !(positive(self.subsidence_window_days) && self.subsidence_window_days <= MAX_SUBSIDENCE_WINDOW_DAYS) {
            out.push(format!("subsidence_window_days: must be > 0 and ≤ {MAX_SUBSIDENCE_WINDOW_DAYS}"));
        }
        if !(positive(self.subsidence_min_span_days) && self.subsidence_min_span_days <= self.subsidence_window_days) {
            out.push("subsidence_min_span_days: must be > 0 and ≤ subsidence_window_days".into());
        }
        out
    }

    /// Horizontal solutions kept: the windows of every kept velocity estimate.
    fn solutions_kept(&self) -> usize {
        self.window + self.inverse_velocity_points - 1
    }
}

/// Parameters that failed [`GnssParams::problems`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("GNSS detector parameters have {} problem(s): {}", .0.len(), .0.join("; "))]
pub struct GnssParamsError(pub Vec<String>);

/// A failure time forecast by the inverse-velocity method.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureForecast {
    /// Predicted failure, event time in ms (where the 1/v line reaches zero). It may lie
    /// before the newest solution when the line has already crossed: failure is overdue.
    pub failure_ms: i64,
    /// Coefficient of determination of the 1/v line, 0–1.
    pub r_squared: f64,
    /// Velocity estimates the line was fitted to.
    pub points: usize,
}

/// What the detector makes of the point after the newest solution. A field is `None` while
/// there is too little data for it (see each field); none is ever NaN.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GnssEstimate {
    /// Smoothed cumulative horizontal displacement along the direction of motion, mm; `None`
    /// until a full window has arrived, or for a while after a gap.
    pub displacement_mm: Option<f64>,
    /// Smoothed velocity along the direction of motion, mm/day (negative: moving back).
    pub velocity_mm_per_day: Option<f64>,
    /// Smoothed acceleration along the direction of motion, mm/day².
    pub acceleration_mm_per_day2: Option<f64>,
    /// Horizontal distance between the fitted ends of the smoothing window, mm: what is
    /// compared with the noise floor.
    pub window_motion_mm: Option<f64>,
    /// Speed of the constant-velocity stage in use (configured or calibrated), mm/day; `None`
    /// while calibrating.
    pub constant_velocity_mm_per_day: Option<f64>,
    /// Improved tangent angle α = arctan(velocity / constant velocity), degrees, capped at 45°
    /// while the window motion is below the noise floor.
    pub tangent_angle_deg: Option<f64>,
    /// The angle graded by the configured thresholds.
    pub level: Option<Level>,
    /// Inverse-velocity failure forecast; `None` unless the point moves faster than in the
    /// constant stage and above the noise floor, is accelerating, and the 1/v line fits well.
    pub failure_forecast: Option<FailureForecast>,
    /// Vertical rate, mm/yr, positive when sinking; `None` until the vertical data span
    /// `subsidence_min_span_days`.
    pub subsidence_mm_per_year: Option<f64>,
}

/// One horizontal solution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Solution {
    ts_ms: i64,
    e: f64,
    n: f64,
}

/// The smoothed motion at one solution, from the window `window_start_ms..=ts_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Kinematics {
    ts_ms: i64,
    window_start_ms: i64,
    /// Unit east/north vector of the direction of motion.
    direction: [f64; 2],
    displacement_mm: f64,
    velocity: f64,
    acceleration: f64,
    window_motion_mm: f64,
}

/// Sums of the up component over one UTC day: enough for a regression on daily means.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct DayBin {
    day: i64,
    count: f64,
    /// Sum of the solutions' times of day, days.
    sum_frac: f64,
    sum_u: f64,
}

/// Running sums for the straight-line fit of east and north against time (days since the
/// first solution) over the calibration period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TrendSums {
    count: f64,
    t: f64,
    tt: f64,
    e: f64,
    te: f64,
    n: f64,
    tn: f64,
}

impl TrendSums {
    fn add(&mut self, t: f64, e: f64, n: f64) {
        self.count += 1.0;
        self.t += t;
        self.tt += t * t;
        self.e += e;
        self.te += t * e;
        self.n += n;
        self.tn += t * n;
    }

    /// Speed of the fitted horizontal trend, mm/day; 0 when time does not vary.
    fn speed(&self) -> f64 {
        let var = self.tt - self.t * self.t / self.count;
        if self.count < 2.0 || var <= 0.0 {
            return 0.0;
        }
        let ve = (self.te - self.t * self.e / self.count) / var;
        let vn = (self.tn - self.t * self.n / self.count) / var;
        ve.hypot(vn)
    }
}

/// Everything a [`GnssDetector`] remembers between solutions (bounded; see the module docs).
/// Serialisable for engine snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GnssState {
    first_ms: Option<i64>,
    newest_ms: Option<i64>,
    /// Solutions since the last gap longer than `max_gap_hours` (including the first after it).
    since_gap: usize,
    solutions: VecDeque<Solution>,
    kinematics: VecDeque<Kinematics>,
    calibration: TrendSums,
    calibrated_mm_per_day: Option<f64>,
    vertical: VecDeque<DayBin>,
}

/// Streaming GNSS deformation detector for one monitoring point (see the module docs).
/// Serialises as its parameters and state; deserialising validates them like
/// [`GnssDetector::restore`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedDetector")]
pub struct GnssDetector {
    params: GnssParams,
    state: GnssState,
}

/// A [`GnssDetector`] as read back from a snapshot, before validation.
#[derive(Deserialize)]
struct SavedDetector {
    params: GnssParams,
    state: GnssState,
}

impl TryFrom<SavedDetector> for GnssDetector {
    type Error = GnssParamsError;
    fn try_from(saved: SavedDetector) -> Result<Self, Self::Error> {
        GnssDetector::restore(saved.params, saved.state)
    }
}

impl GnssDetector {
    /// A detector with no history.
    pub fn new(params: GnssParams) -> Result<Self, GnssParamsError> {
        Self::restore(params, GnssState::default())
    }

    /// A detector continuing from `state` (e.g. from a snapshot), under possibly edited
    /// parameters: history beyond the new capacities is dropped, oldest first.
    pub fn restore(params: GnssParams, mut state: GnssState) -> Result<Self, GnssParamsError> {
        let problems = params.problems();
        if !problems.is_empty() {
            return Err(GnssParamsError(problems));
        }
        keep_newest(&mut state.solutions, params.solutions_kept());
        keep_newest(&mut state.kinematics, params.inverse_velocity_points);
        Ok(GnssDetector { params, state })
    }

    /// The parameters in force.
    pub fn params(&self) -> &GnssParams {
        &self.params
    }

    /// The state to put in a snapshot.
    pub fn state(&self) -> &GnssState {
        &self.state
    }

    /// Takes the solution at event time `ts_ms` and returns the estimate after it. A solution
    /// not later than the newest one, or with a non-finite component, is ignored (the estimate
    /// is then the current one).
    pub fn push(&mut self, ts_ms: i64, d: Displacement) -> GnssEstimate {
        let later = self.state.newest_ms.is_none_or(|t| ts_ms > t);
        if later && d.e.is_finite() && d.n.is_finite() && d.u.is_finite() {
            self.ingest(ts_ms, d);
        }
        self.estimate()
    }

    /// The estimate after the newest solution.
    pub fn estimate(&self) -> GnssEstimate {
        let v_const = self.params.v_constant_mm_per_day.or(self.state.calibrated_mm_per_day);
        let now = self.state.kinematics.back().filter(|k| Some(k.ts_ms) == self.state.newest_ms);
        let angle = now.zip(v_const).map(|(k, v)| {
            let alpha = k.velocity.atan2(v).to_degrees();
            if k.window_motion_mm < self.params.noise_floor_mm {
                alpha.min(CONSTANT_CREEP_DEG)
            } else {
                alpha
            }
        });
        GnssEstimate {
            displacement_mm: now.map(|k| k.displacement_mm),
            velocity_mm_per_day: now.map(|k| k.velocity),
            acceleration_mm_per_day2: now.map(|k| k.acceleration),
            window_motion_mm: now.map(|k| k.window_motion_mm),
            constant_velocity_mm_per_day: v_const,
            tangent_angle_deg: angle,
            level: angle.and_then(|a| self.params.thresholds.level(a)),
            failure_forecast: now.zip(v_const).and_then(|(k, v)| self.failure_forecast(k, v)),
            subsidence_mm_per_year: self.subsidence_rate(),
        }
    }

    fn ingest(&mut self, ts_ms: i64, d: Displacement) {
        let p = &self.params;
        let s = &mut self.state;
        if s.newest_ms.is_some_and(|t| ts_ms.saturating_sub(t) as f64 > p.max_gap_hours * MS_PER_HOUR) {
            s.since_gap = 0;
        }
        s.since_gap = s.since_gap.saturating_add(1);
        s.newest_ms = Some(ts_ms);
        let first = *s.first_ms.get_or_insert(ts_ms);

        if s.calibrated_mm_per_day.is_none() {
            let t = ts_ms.saturating_sub(first) as f64 / MS_PER_DAY;
            if t <= p.calibration_days {
                s.calibration.add(t, d.e, d.n);
            }
            if t >= p.calibration_days {
                let floor = p.noise_floor_mm / p.calibration_days;
                s.calibrated_mm_per_day = Some(s.calibration.speed().max(floor).max(MIN_CONSTANT_VELOCITY));
            }
        }

        let day = ts_ms.div_euclid(MS_PER_DAY as i64);
        let frac = ts_ms.rem_euclid(MS_PER_DAY as i64) as f64 / MS_PER_DAY;
        match s.vertical.back_mut() {
            Some(bin) if bin.day == day => {
                bin.count += 1.0;
                bin.sum_frac += frac;
                bin.sum_u += d.u;
            }
            _ => s.vertical.push_back(DayBin { day, count: 1.0, sum_frac: frac, sum_u: d.u }),
        }
        let keep_days = p.subsidence_window_days.ceil() as i64;
        while s.vertical.front().is_some_and(|b| b.day < day - keep_days) {
            s.vertical.pop_front();
        }

        if s.solutions.len() >= p.solutions_kept() {
            s.solutions.pop_front();
        }
        s.solutions.push_back(Solution { ts_ms, e: d.e, n: d.n });
        if let Some(k) = self.smooth() {
            let s = &mut self.state;
            if s.kinematics.len() >= self.params.inverse_velocity_points {
                s.kinematics.pop_front();
            }
            s.kinematics.push_back(k);
        }
    }

    /// Quadratic fit of east and north over the last `window` solutions, evaluated at the
    /// newest and projected on the direction of cumulative horizontal displacement.
    fn smooth(&self) -> Option<Kinematics> {
        let (all, n) = (&self.state.solutions, self.params.window);
        if all.len() < n || self.state.since_gap < n.div_ceil(4) {
            return None;
        }
        let w = all.range(all.len() - n..).collect::<Vec<_>>();
        let (oldest, newest) = (w[0], w[n - 1]);
        let span_ms = newest.ts_ms.saturating_sub(oldest.ts_ms) as f64;
        // Time scaled to [-1, 0] keeps the normal equations well conditioned.
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            (w[i].ts_ms.saturating_sub(newest.ts_ms) as f64 / span_ms).powi(j as i32)
        });
        let y = Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { w[i].e } else { w[i].n });
        let c = least_squares(&x, &y)?;
        let h = span_ms / MS_PER_DAY;
        let position = [c[[0, 0]], c[[0, 1]]];
        let velocity = [c[[1, 0]] / h, c[[1, 1]] / h];
        let direction = unit(position).or_else(|| unit(velocity)).unwrap_or([0.0, 0.0]);
        let along = |v: [f64; 2]| v[0] * direction[0] + v[1] * direction[1];
        let k = Kinematics {
            ts_ms: newest.ts_ms,
            window_start_ms: oldest.ts_ms,
            direction,
            displacement_mm: along(position),
            velocity: along(velocity),
            acceleration: along([2.0 * c[[2, 0]] / (h * h), 2.0 * c[[2, 1]] / (h * h)]),
            // Fitted newest minus fitted oldest position: c(0) − c(−1) = c1 − c2.
            window_motion_mm: (c[[1, 0]] - c[[2, 0]]).hypot(c[[1, 1]] - c[[2, 1]]),
        };
        [k.displacement_mm, k.velocity, k.acceleration, k.window_motion_mm].iter().all(|v| v.is_finite()).then_some(k)
    }

    /// Fukuzono's forecast from the trailing run of accelerating estimates (see module docs).
    fn failure_forecast(&self, now: &Kinematics, v_const: f64) -> Option<FailureForecast> {
        let p = &self.params;
        if now.window_motion_mm < p.noise_floor_mm || now.velocity <= v_const {
            return None;
        }
        // Days from the newest solution to each held one; the windows share them.
        let t: Vec<f64> =
            self.state.solutions.iter().map(|s| s.ts_ms.saturating_sub(now.ts_ms) as f64 / MS_PER_DAY).collect();
        let windows: Vec<MeanVelocity> = self
            .state
            .kinematics
            .iter()
            .rev()
            .take_while(|k| k.acceleration > 0.0 && k.velocity > 0.0)
            .map_while(|k| self.mean_velocity(k, now, &t))
            .collect();
        let oldest = windows.iter().map(|m| m.start).min()?;
        if windows.len() < p.inverse_velocity_min_points {
            return None;
        }
        let centres: Vec<f64> = windows.iter().map(|m| m.centre).collect();
        let mut line = InverseVelocityLine::fit(&centres, &windows)?;
        let mut curve = vec![0.0; t.len()];
        for _ in 0..MAX_RETIMING_ITERATIONS {
            // The curve must fail after the newest solution for the points to lie on it; a
            // forecast already in the past (usual for the first, centred fit close to failure)
            // is re-placed on a curve failing just after it.
            let tf = line.failure_days.max(MIN_LEAD_DAYS);
            for i in oldest..t.len() {
                curve[i] = -(tf - t[i]).ln();
            }
            let Some(times) = windows.iter().map(|m| m.time_on_curve(tf, &curve)).collect::<Option<Vec<_>>>() else {
                break;
            };
            let Some(next) = InverseVelocityLine::fit(&times, &windows) else { break };
            let settled = (next.failure_days.max(MIN_LEAD_DAYS) - tf).abs() < RETIMING_TOLERANCE_DAYS;
            line = next;
            if settled {
                break;
            }
        }
        // Extrapolating further ahead than the data reach back is guesswork.
        if !(line.r_squared >= p.inverse_velocity_min_r2 && line.failure_days <= -t[oldest]) {
            return None;
        }
        let failure_ms = now.ts_ms.saturating_add((line.failure_days * MS_PER_DAY).round() as i64);
        Some(FailureForecast { failure_ms, r_squared: line.r_squared, points: windows.len() })
    }

    /// Straight-line velocity of the window of estimate `k` along the newest direction of
    /// motion; `None` if that window is no longer held or the point does not advance in it.
    /// `t` holds the days from `now` to each held solution.
    fn mean_velocity(&self, k: &Kinematics, now: &Kinematics, t: &[f64]) -> Option<MeanVelocity> {
        let all = &self.state.solutions;
        let (lo, hi) =
            (all.partition_point(|s| s.ts_ms < k.window_start_ms), all.partition_point(|s| s.ts_ms <= k.ts_ms));
        if all.get(lo).map(|s| s.ts_ms) != Some(k.window_start_ms) || hi < lo.saturating_add(3) {
            return None;
        }
        let t = &t[lo..hi];
        let centre = t.iter().sum::<f64>() / t.len() as f64;
        let sxx: f64 = t.iter().map(|t| (t - centre) * (t - centre)).sum();
        let weights: Vec<f64> = t.iter().map(|t| (t - centre) / sxx).collect();
        let velocity: f64 =
            all.range(lo..hi).zip(&weights).map(|(s, w)| w * (s.e * now.direction[0] + s.n * now.direction[1])).sum();
        (velocity > 0.0 && velocity.is_finite()).then_some(MeanVelocity { velocity, centre, start: lo, weights })
    }

    /// Sinking rate from a regression of daily mean heights, with an annual cycle when the data
    /// span enough of a year.
    fn subsidence_rate(&self) -> Option<f64> {
        let bins = &self.state.vertical;
        let newest = bins.back()?;
        // Days after the start of the newest bin's day.
        let t = |b: &DayBin| (b.day - newest.day) as f64 + b.sum_frac / b.count;
        let span = t(newest) - t(bins.front()?);
        if bins.len() < 3 || span < self.params.subsidence_min_span_days {
            return None;
        }
        let annual = self.params.subsidence_annual_terms && span >= ANNUAL_TERMS_MIN_SPAN_DAYS;
        // Rows weighted by √count: a regression on daily means equal to one on every solution.
        let x = Array2::from_shape_fn((bins.len(), if annual { 4 } else { 2 }), |(i, j)| {
            let b = &bins[i];
            let phase = TAU * (b.day as f64 + b.sum_frac / b.count) / DAYS_PER_YEAR;
            let basis = match j {
                0 => 1.0,
                1 => t(b) / DAYS_PER_YEAR,
                2 => phase.sin(),
                _ => phase.cos(),
            };
            basis * b.count.sqrt()
        });
        let y = Array2::from_shape_fn((bins.len(), 1), |(i, _)| bins[i].sum_u / bins[i].count.sqrt());
        let rate = -least_squares(&x, &y)?[[1, 0]];
        rate.is_finite().then_some(rate)
    }
}

/// One window's straight-line velocity, for the inverse-velocity fit.
struct MeanVelocity {
    velocity: f64,
    /// Mean time of the window, days relative to the newest solution.
    centre: f64,
    /// Index of the window's first solution among those held.
    start: usize,
    /// Least-squares slope weights: velocity = Σ weights · positions.
    weights: Vec<f64>,
}

impl MeanVelocity {
    /// When, on the curve v = A/(tf − t) failing at `failure_days`, the velocity equals this
    /// window's mean velocity; `curve` holds −ln(tf − t) for every held solution.
    fn time_on_curve(&self, failure_days: f64, curve: &[f64]) -> Option<f64> {
        let g: f64 = self.weights.iter().zip(&curve[self.start..]).map(|(w, c)| w * c).sum();
        (g > 0.0 && g.is_finite()).then(|| failure_days - 1.0 / g)
    }
}

/// The least-squares line of 1/v against time and where it reaches zero.
struct InverseVelocityLine {
    failure_days: f64,
    r_squared: f64,
}

impl InverseVelocityLine {
    /// `None` unless 1/v falls with time.
    fn fit(times: &[f64], windows: &[MeanVelocity]) -> Option<Self> {
        let n = times.len() as f64;
        let inverse = || windows.iter().map(|m| 1.0 / m.velocity);
        let (mt, my) = (times.iter().sum::<f64>() / n, inverse().sum::<f64>() / n);
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for (t, y) in times.iter().zip(inverse()) {
            sxx += (t - mt) * (t - mt);
            sxy += (t - mt) * (y - my);
            syy += (y - my) * (y - my);
        }
        let slope = sxy / sxx;
        let line = InverseVelocityLine { failure_days: mt - my / slope, r_squared: sxy * sxy / (sxx * syy) };
        (slope < 0.0 && line.failure_days.is_finite() && line.r_squared.is_finite()).then_some(line)
    }
}

/// Drops all but the newest `cap` entries and makes room for `cap`.
fn keep_newest<T>(q: &mut VecDeque<T>, cap: usize) {
    q.drain(..q.len().saturating_sub(cap));
    q.reserve_exact(cap - q.len());
}

/// Unit vector along `v`, if it has a direction.
fn unit(v: [f64; 2]) -> Option<[f64; 2]> {
    let norm = v[0].hypot(v[1]);
    (norm > 1e-9 && norm.is_finite()).then(|| [v[0] / norm, v[1] / norm])
}

/// Coefficients minimising ‖y − x·c‖² for each column of `y`, by the normal equations; `None`
/// when the design is singular (e.g. all times equal).
fn least_squares(x: &Array2<f64>, y: &Array2<f64>) -> Option<Array2<f64>> {
    solve(x.t().dot(x), x.t().dot(y))
}

/// Solves `a · c = b` by Gauss–Jordan elimination with partial pivoting.
fn solve(mut a: Array2<f64>, mut b: Array2<f64>) -> Option<Array2<f64>> {
    let k = a.nrows();
    let scale = a.diag().iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))?;
        let size = a[[pivot, col]].abs();
        if size.is_nan() || size <= 1e-12 * scale {
            return None;
        }
        for j in 0..k {
            a.swap([pivot, j], [col, j]);
        }
        for j in 0..b.ncols() {
            b.swap([pivot, j], [col, j]);
        }
        let (a_row, b_row) = (a.row(col).to_owned(), b.row(col).to_owned());
        for row in (0..k).filter(|&r| r != col) {
            let f = a[[row, col]] / a_row[col];
            a.row_mut(row).scaled_add(-f, &a_row);
            b.row_mut(row).scaled_add(-f, &b_row);
        }
    }
    for (mut row, d) in b.rows_mut().into_iter().zip(a.diag()) {
        row /= *d;
    }
    Some(b)
}
#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 86_400_000;
    const START_MS: i64 = 1_700_000_000_000;

    /// Deterministic standard-normal noise: a 64-bit LCG (Knuth's MMIX constants) through
    /// Box–Muller.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
        }
    }

    /// The simulators' creep-to-failure slope, re-derived (rules cannot depend on them):
    /// 2 mm/day until day 15, then 1/v falls linearly to zero at day 30.05.
    const V0: f64 = 2.0;
    const ONSET_DAYS: f64 = 15.0;
    const FAILURE_DAYS: f64 = 30.05;

    fn slip_mm(t: f64) -> f64 {
        if t <= ONSET_DAYS {
            V0 * t
        } else {
            V0 * ONSET_DAYS + V0 * (FAILURE_DAYS - ONSET_DAYS) * ((FAILURE_DAYS - ONSET_DAYS) / (FAILURE_DAYS - t)).ln()
        }
    }

    fn day(ts_ms: i64) -> f64 {
        (ts_ms - START_MS) as f64 / DAY_MS as f64
    }

    /// Hourly solutions from day 0 to one hour before failure (720 h + 1), sliding towards
    /// azimuth 135° (south-east) and sinking a tenth as fast, with 1 mm noise on each
    /// horizontal component and 2 mm on the vertical.
    fn creep_series(seed: u64) -> Vec<(i64, Displacement)> {
        let mut noise = Noise(seed);
        let az = 135f64.to_radians();
        (0..=720)
            .map(|h| {
                let s = slip_mm(h as f64 / 24.0);
                let d = Displacement {
                    e: s * az.sin() + noise.normal(),
                    n: s * az.cos() + noise.normal(),
                    u: -0.1 * s + 2.0 * noise.normal(),
                };
                (START_MS + h * HOUR_MS, d)
            })
            .collect()
    }

    fn detector(params: GnssParams) -> GnssDetector {
        GnssDetector::new(params).unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(params: GnssParams, series: &[(i64, Displacement)]) -> Vec<(f64, GnssEstimate)> {
        let mut det = detector(params);
        series.iter().map(|(ts, d)| (day(*ts), det.push(*ts, *d))).collect()
    }

    fn known_creep_rate() -> GnssParams {
        GnssParams { v_constant_mm_per_day: Some(V0), ..GnssParams::default() }
    }

    #[test]
    fn tangent_angle_levels_follow_the_xu_qiang_table() {
        let cases = [
            (-30.0, None),
            (39.9, None),
            (40.0, Some(Level::Blue)),
            (45.0, Some(Level::Blue)),
            (45.1, Some(Level::Yellow)),
            (79.9, Some(Level::Yellow)),
            (80.0, Some(Level::Orange)),
            (84.9, Some(Level::Orange)),
            (85.0, Some(Level::Red)),
            (89.9, Some(Level::Red)),
            (f64::NAN, None),
        ];
        for (alpha, level) in cases {
            assert_eq!(tangent_angle_level(alpha), level, "α = {alpha}°");
        }
    }

    #[test]
    fn creep_to_failure_reads_45_degrees_then_crosses_80_and_85_before_failure() {
        for seed in [1, 7, 42] {
            let estimates = run(known_creep_rate(), &creep_series(seed));
            // Steady creep, once the week-long window is full.
            for (t, est) in estimates.iter().filter(|(t, _)| (7.0..=ONSET_DAYS).contains(t)) {
                let alpha = est.tangent_angle_deg.unwrap_or(f64::NAN);
                assert!((35.0..=55.0).contains(&alpha), "seed {seed} day {t:.2}: α = {alpha:.1}° in steady creep");
                assert_eq!(est.failure_forecast, None, "seed {seed} day {t:.2}: no forecast in steady creep");
            }
            let first = |deg: f64| {
                estimates.iter().find(|(_, e)| e.tangent_angle_deg.is_some_and(|a| a >= deg)).map(|(t, _)| *t)
            };
            let (t80, t85) = (first(80.0).unwrap_or(f64::MAX), first(85.0).unwrap_or(f64::MAX));
            // The true curve reaches 80° at day 27.40 and 85° at day 28.73; a week of
            // smoothing lags by about a day.
            assert!((27.4..29.0).contains(&t80), "seed {seed}: 80° first at day {t80:.2}");
            assert!((28.73..FAILURE_DAYS).contains(&t85) && t85 > t80, "seed {seed}: 85° first at day {t85:.2}");
            let level_at = |day: f64| estimates.iter().find(|(t, _)| *t >= day).and_then(|(_, e)| e.level);
            assert_eq!(level_at(t80), Some(Level::Orange));
            assert_eq!(level_at(t85), Some(Level::Red));
            assert!(estimates.iter().filter(|(t, _)| *t < 25.0).all(|(_, e)| e.level < Some(Level::Orange)));
        }
    }

    #[test]
    fn inverse_velocity_forecasts_failure_within_a_day_over_the_last_three_days() {
        for seed in [1, 7, 42] {
            let estimates = run(known_creep_rate(), &creep_series(seed));
            let last_days = estimates.iter().filter(|(t, _)| *t >= FAILURE_DAYS - 3.0);
            let mut worst = 0.0_f64;
            for (t, est) in last_days {
                let Some(forecast) = est.failure_forecast else { panic!("seed {seed} day {t:.2}: no forecast") };
                let error = day(forecast.failure_ms) - FAILURE_DAYS;
                assert!(error.abs() <= 1.0, "seed {seed} day {t:.2}: forecast {error:+.2} days off");
                assert!(forecast.r_squared >= 0.8 && forecast.points >= 12, "{forecast:?}");
                worst = worst.max(error.abs());
            }
            assert!(worst > 0.0, "seed {seed}: noise should leave some error");
        }
    }

    #[test]
    fn calibration_recovers_the_creep_rate() {
        let estimates = run(GnssParams::default(), &creep_series(3));
        for (t, est) in &estimates {
            match est.constant_velocity_mm_per_day {
                None => assert!(*t < 14.0 && est.tangent_angle_deg.is_none(), "day {t:.2}"),
                Some(v) => assert!(*t >= 14.0 && (v - V0).abs() < 0.1, "day {t:.2}: calibrated {v} mm/day"),
            }
        }
        let steady = estimates.iter().filter(|(t, _)| (14.0..=ONSET_DAYS).contains(t));
        assert!(steady.clone().count() > 20);
        assert!(steady.clone().all(|(_, e)| e.tangent_angle_deg.is_some_and(|a| (35.0..=55.0).contains(&a))));
    }

    #[test]
    fn a_still_point_never_grades_above_blue() {
        let calibrated = GnssParams::default();
        let slow_creep = GnssParams { v_constant_mm_per_day: Some(0.5), ..GnssParams::default() };
        let known = known_creep_rate();
        for (seed, offset) in [(11, (0.0, 0.0)), (12, (14.0, -9.0)), (13, (-3.0, 2.0))] {
            let mut noise = Noise(seed);
            let series: Vec<(i64, Displacement)> = (0..60 * 24)
                .map(|h| {
                    let d = Displacement {
                        e: offset.0 + noise.normal(),
                        n: offset.1 + noise.normal(),
                        u: 2.0 * noise.normal(),
                    };
                    (START_MS + h * HOUR_MS, d)
                })
                .collect();
            for params in [&calibrated, &slow_creep, &known] {
                let estimates = run(params.clone(), &series);
                assert!(estimates.iter().filter(|(t, _)| *t > 14.0).all(|(_, e)| e.tangent_angle_deg.is_some()));
                for (t, est) in &estimates {
                    let alpha = est.tangent_angle_deg.unwrap_or(0.0);
                    assert!(alpha <= 45.0, "seed {seed} day {t:.2}: α = {alpha:.1}° ({params:?})");
                    assert!(est.level <= Some(Level::Blue) && est.failure_forecast.is_none(), "{est:?}");
                    assert!(est.window_motion_mm.is_none_or(|m| m < 5.0), "{est:?}");
                }
            }
            // Against a real 2 mm/day creep rate the wobble of a still point is far from blue.
            let estimates = run(known.clone(), &series);
            assert!(estimates.iter().all(|(_, e)| e.tangent_angle_deg.is_none_or(|a| a < 40.0)));
        }
    }

    #[test]
    fn subsidence_of_30_mm_per_year_is_seen_through_a_seasonal_cycle() {
        // Two years of daily solutions: sinking 30 mm/yr, ±5 mm annual cycle, 2 mm noise.
        let mut noise = Noise(5);
        let series: Vec<(i64, Displacement)> = (0..730)
            .map(|d| {
                let t = d as f64;
                let u = -30.0 * t / DAYS_PER_YEAR + 5.0 * (TAU * t / DAYS_PER_YEAR).sin() + 2.0 * noise.normal();
                (START_MS + d * DAY_MS, Displacement { e: noise.normal(), n: noise.normal(), u })
            })
            .collect();
        let daily = GnssParams { window: 15, max_gap_hours: 96.0, ..GnssParams::default() };
        let estimates = run(daily.clone(), &series);
        for (t, est) in &estimates {
            match est.subsidence_mm_per_year {
                None => assert!(*t < 90.0, "day {t}"),
                Some(rate) if *t >= 365.0 => assert!((rate - 30.0).abs() <= 3.0, "day {t}: {rate:.1} mm/yr"),
                Some(_) => assert!(*t >= 90.0),
            }
        }
        let last = estimates.last().and_then(|(_, e)| e.subsidence_mm_per_year).unwrap_or(f64::NAN);
        assert!((last - 30.0).abs() <= 1.0, "after two years: {last:.2} mm/yr");

        // Why the default window is a year: over 90 days the cycle swamps the trend.
        let quarter = GnssParams { subsidence_window_days: 90.0, ..daily };
        let worst = run(quarter, &series)
            .iter()
            .filter_map(|(_, e)| e.subsidence_mm_per_year)
            .fold(0.0_f64, |m, r| m.max((r - 30.0).abs()));
        assert!(worst > 15.0, "a 90-day line is off by up to {worst:.1} mm/yr");
    }

    #[test]
    fn gaps_and_bad_solutions_neither_panic_nor_produce_nan() {
        let mut jitter = Noise(9);
        let mut series: Vec<(i64, Displacement)> = creep_series(4)
            .into_iter()
            .filter(|(ts, _)| !(5.0..6.5).contains(&day(*ts)) && !(18.0..21.0).contains(&day(*ts)))
            .filter_map(|(ts, d)| {
                // Drop a fifth of the solutions; the rest come up to 10 minutes late.
                let (keep, late) = (jitter.uniform() > 0.2, jitter.uniform() * 600_000.0);
                keep.then_some((ts + late as i64, d))
            })
            .collect();
        let (ts, d) = series[300];
        series.insert(301, (ts, d)); // duplicate time
        series.insert(302, (ts - HOUR_MS, d)); // out of order
        series.insert(303, (ts + 1, Displacement { e: f64::NAN, ..d }));
        series.insert(304, (ts + 2, Displacement { u: f64::INFINITY, ..d }));
        let estimates = run(known_creep_rate(), &series);
        for (t, est) in &estimates {
            let values = [
                est.displacement_mm,
                est.velocity_mm_per_day,
                est.acceleration_mm_per_day2,
                est.window_motion_mm,
                est.tangent_angle_deg,
                est.failure_forecast.map(|f| f.r_squared),
                est.subsidence_mm_per_year,
            ];
            assert!(values.iter().flatten().all(|v| v.is_finite()), "day {t:.2}: {est:?}");
        }
        // Estimates pause after the three-day gap and resume within a quarter window.
        let after_gap = |from: f64, to: f64| estimates.iter().filter(move |(t, _)| (from..to).contains(t));
        assert!(after_gap(21.0, 22.0).all(|(_, e)| e.velocity_mm_per_day.is_none()));
        assert!(after_gap(23.5, 30.0).all(|(_, e)| e.velocity_mm_per_day.is_some()));
        assert!(estimates.last().is_some_and(|(_, e)| e.level == Some(Level::Red)));

        // A point that never moves at all has no direction of motion.
        let still: Vec<_> =
            (0..400).map(|h| (START_MS + h * HOUR_MS, Displacement { e: 0.0, n: 0.0, u: 0.0 })).collect();
        let last = run(GnssParams::default(), &still).pop().map(|(_, e)| e);
        assert_eq!(last.and_then(|e| e.velocity_mm_per_day), Some(0.0));
        assert_eq!(last.and_then(|e| e.tangent_angle_deg), Some(0.0));
    }

    #[test]
    fn state_round_trips_through_json_and_resumes_identically() {
        let series = creep_series(8);
        let (before, after) = series.split_at(650);
        let mut det = detector(known_creep_rate());
        for (ts, d) in before {
            det.push(*ts, *d);
        }
        let json = serde_json::to_string(det.state()).unwrap_or_default();
        let state: GnssState = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(&state, det.state());
        let mut restored = GnssDetector::restore(known_creep_rate(), state.clone()).unwrap_or_else(|e| panic!("{e}"));
        // Restored under a smaller configuration, the history is cut to the new capacity.
        let small = GnssParams { window: 24, inverse_velocity_points: 12, ..known_creep_rate() };
        let mut shrunk = GnssDetector::restore(small, state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((shrunk.state().solutions.len(), shrunk.state().kinematics.len()), (35, 12));
        for (ts, d) in after {
            assert_eq!(det.push(*ts, *d), restored.push(*ts, *d));
            assert!(shrunk.push(*ts, *d).tangent_angle_deg.is_some_and(|a| a.is_finite()));
        }
        assert!(restored.estimate().failure_forecast.is_some());
        assert!(json.len() < 40_000, "snapshot of {} bytes", json.len());

        // A whole detector round-trips too, and an edited snapshot with bad parameters is refused.
        let json = serde_json::to_value(&restored).unwrap_or_default();
        assert_eq!(serde_json::from_value::<GnssDetector>(json.clone()).ok(), Some(restored));
        let mut bad = json;
        bad["params"]["window"] = 0.into();
        let err = serde_json::from_value::<GnssDetector>(bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("window"), "{err}");
    }

    #[test]
    fn problems_name_the_bad_fields() {
        let params = GnssParams {
            window: 2,
            v_constant_mm_per_day: Some(-1.0),
            noise_floor_mm: f64::NAN,
            thresholds: TangentAngleThresholds { orange_deg: 86.0, ..TangentAngleThresholds::default() },
            inverse_velocity_min_points: 100,
            subsidence_min_span_days: 400.0,
            ..GnssParams::default()
        };
        let problems = params.problems().join("\n");
        for field in [
            "window",
            "v_constant_mm_per_day",
            "noise_floor_mm",
            "orange_deg",
            "inverse_velocity_min_points",
            "subsidence_min_span_days",
        ] {
            assert!(problems.contains(field), "{field} missing from:\n{problems}");
        }
        assert!(GnssDetector::new(params).is_err());
        assert_eq!(GnssParams::default().problems(), Vec::<String>::new());
        let parsed: GnssParams = toml::from_str("v_constant_mm_per_day = 2.0\n[thresholds]\nblue_deg = 42.0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.window, 168);
        assert_eq!(parsed.thresholds.blue_deg, 42.0);
        assert_eq!(parsed.thresholds.red_deg, 85.0);
    }
}
