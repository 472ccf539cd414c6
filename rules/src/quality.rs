//! Data-quality checks that run on every reading before the hazard rules, after QARTOD.
//!
//! A sensor that lies is as dangerous as one that is silent: a gauge stuck at yesterday's level
//! hides a flood, a glitching gas head pages the night shift. Each `[[quality]]` table of the
//! rules file ([`QualitySpec`]) configures, for the sensors it selects, some of the real-time
//! tests of the U.S. IOOS *Quality Assurance / Quality Control of Real-Time Oceanographic Data*
//! (QARTOD) manuals, following their implementation in `ioos_qc`
//! (<https://github.com/ioos/ioos_qc>, module `ioos_qc.qartod`):
//!
//! | test             | suspect / fail when                                              | ioos_qc            |
//! |------------------|------------------------------------------------------------------|--------------------|
//! | `gross_range`    | outside `[suspect_min, suspect_max]` / `[fail_min, fail_max]`    | `gross_range_test` |
//! | `spike`          | \|v − mean of the previous `window` values\| ≥ `suspect` / `fail` | `spike_test`       |
//! | `flat_line`      | within `tolerance` of the run's first value for ≥ `suspect_s` / `fail_s` and ≥ `min_samples` readings | `flat_line_test` |
//! | `rate_of_change` | \|Δv / Δt\| since the previous reading ≥ `suspect_per_hour` / `fail_per_hour` | `rate_of_change_test` |
//! | `timing`         | (fail only) more than `max_future_s` ahead of or `max_age_s` behind the processing clock | QARTOD timing/gap test |
//!
//! Flags use QARTOD's scale ([`Quality`]: 1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing).
//! The gap half of the timing/gap test — no reading for `stale.intervals` × the sensor's
//! expected interval — needs a clock tick rather than a reading, so the engine runs it; this
//! module only validates and carries the setting.
//!
//! ```toml
//! [[quality]]
//! applies_to = { kind = "water_level" }
//! gross_range = { fail_min = "sensor_min", fail_max = "sensor_max", suspect_max = "record_level + 2" }
//! spike = { suspect = 0.3, fail = 1.0 }
//! flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }
//! rate_of_change = { suspect_per_hour = 1.0, fail_per_hour = 3.0 }
//! timing = { max_future_s = 300, max_age_s = 86400 }
//! stale = { intervals = 3 }
//! ```
//!
//! # A real-time spike test
//!
//! ioos_qc's `spike_test` judges sample *n* against the midpoint of its neighbours *n − 1* and
//! *n + 1*, so a sample is only flagged once the *next* one has arrived — an interval late, which
//! for an hourly gauge is an hour. Here the reference is the mean of the previous `window`
//! *accepted* values, so a reading is flagged the moment it arrives. Without look-ahead a true
//! step change looks like a spike on its first sample; to keep a new level from being flagged
//! for ever, a flagged value is kept as a *candidate*, and if the next trusted reading lies within
//! the smallest spike threshold of it the step is confirmed: the candidate becomes the reference
//! and the second reading passes. A step thus costs one flagged reading.
//!
//! # What a flagged reading does to the state
//!
//! ioos_qc runs every test over the raw series. Doing that in real time would let one bad value
//! poison the next checks (the reading after a spike would fail rate of change on the way back).
//! So only *accepted* readings — timing not failed, gross range not failed, spike not flagged —
//! become the reference of the spike window, the rate-of-change predecessor and the flat-line
//! run. A rejected value neither extends nor breaks a flat line (a stuck gauge with one glitch is
//! still stuck), and the reading after a spike is compared with the values before it. Readings
//! flagged only by rate of change or flat line are accepted: they are plausible values, and the
//! next reading should be compared with them. A non-finite value (the decoder never produces
//! one) flags every configured value test [`Quality::Missing`] and leaves the state untouched.

use crate::{Measure, Selector, ThresholdExpr};
use riskwatch_core::{Level, Quality, Sensor, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Largest spike `window`: the state keeps recent values in a fixed array of this size.
pub const MAX_SPIKE_WINDOW: usize = 16;

/// One `[[quality]]` table of the rules file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySpec {
    /// Which sensors it checks.
    pub applies_to: Selector,
    /// What number it checks (GNSS: `horizontal`, `settlement`, `total`).
    #[serde(default = "default_measure")]
    pub measure: Measure,
    /// Plausible and possible value range.
    pub gross_range: Option<GrossRange>,
    /// Single-reading outliers.
    pub spike: Option<SpikeTest>,
    /// Stuck sensor.
    pub flat_line: Option<FlatLine>,
    /// Implausibly fast change.
    pub rate_of_change: Option<RateOfChange>,
    /// Measurement time far from the processing clock.
    pub timing: Option<Timing>,
    /// No reading for too long (run by the engine).
    pub stale: Option<Stale>,
    /// Level of the data-quality alerts this spec raises.
    #[serde(default = "default_level")]
    pub level: Level,
    /// Consecutive passing readings before a data-quality alert clears.
    #[serde(default = "default_clear_after")]
    pub clear_after: u32,
}

/// Gross range: outside the suspect bounds is suspect, outside the fail bounds fails. Bounds
/// may name registry attributes (`"sensor_max"`, `"record_level + 2"`); a value on a bound passes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrossRange {
    /// Below this is suspect.
    pub suspect_min: Option<ThresholdExpr>,
    /// Above this is suspect.
    pub suspect_max: Option<ThresholdExpr>,
    /// Below this fails (usually the sensor's measuring range).
    pub fail_min: Option<ThresholdExpr>,
    /// Above this fails.
    pub fail_max: Option<ThresholdExpr>,
}

/// Spike: distance of a reading from the mean of the previous accepted values.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeTest {
    /// Distance (measure's unit) at or above which a reading is suspect.
    pub suspect: Option<f64>,
    /// Distance at or above which a reading fails.
    pub fail: Option<f64>,
    /// How many previous accepted values form the reference (1 to [`MAX_SPIKE_WINDOW`]).
    #[serde(default = "default_window")]
    pub window: usize,
}

/// Flat line: the value has not moved for too long.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatLine {
    /// A reading within this distance of the run's first value continues the run (0 = equal).
    #[serde(default)]
    pub tolerance: f64,
    /// Event-time seconds of a run at which readings become suspect.
    pub suspect_s: Option<f64>,
    /// Event-time seconds of a run at which readings fail.
    pub fail_s: Option<f64>,
    /// Readings a run needs before it is flagged at all.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
}

/// Rate of change between consecutive accepted readings, in the measure's unit per hour.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOfChange {
    /// Rate at or above which a reading is suspect.
    pub suspect_per_hour: Option<f64>,
    /// Rate at or above which a reading fails.
    pub fail_per_hour: Option<f64>,
}

/// Timing: the measurement time must be close to the processing clock.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// A reading more than this many seconds in the future fails (gateway clock ahead).
    pub max_future_s: Option<f64>,
    /// A reading more than this many seconds old fails (gateway clock behind, stale backlog).
    pub max_age_s: Option<f64>,
}

/// Stale sensor: no reading for `intervals` × the sensor's expected interval (`interval_s`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stale {
    /// Missed reporting intervals before the sensor counts as stale (≥ 1).
    #[serde(default = "default_intervals")]
    pub intervals: f64,
}

fn default_measure() -> Measure {
    Measure::Value
}
fn default_level() -> Level {
    Level::Blue
}
fn default_clear_after() -> u32 {
    3
}
fn default_window() -> usize {
    3
}
fn default_min_samples() -> u32 {
    3
}
fn default_intervals() -> f64 {
    3.0
}

/// One QARTOD test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QcTest {
    /// Value outside the plausible / possible range.
    GrossRange,
    /// Single-reading outlier.
    Spike,
    /// Stuck sensor.
    FlatLine,
    /// Implausibly fast change.
    RateOfChange,
    /// Measurement time far from the processing clock.
    Timing,
}

impl QcTest {
    /// All tests, in [`QcTest::index`] order.
    pub const ALL: [QcTest; 5] =
        [QcTest::GrossRange, QcTest::Spike, QcTest::FlatLine, QcTest::RateOfChange, QcTest::Timing];

    /// Position in [`QcOutcome::results`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in the rules file and in alert ids.
    pub fn as_str(self) -> &'static str {
        match self {
            QcTest::GrossRange => "gross_range",
            QcTest::Spike => "spike",
            QcTest::FlatLine => "flat_line",
            QcTest::RateOfChange => "rate_of_change",
            QcTest::Timing => "timing",
        }
    }

    /// What the test catches, in Chinese.
    pub fn zh(self) -> &'static str {
        match self {
            QcTest::GrossRange => "超出量程",
            QcTest::Spike => "突跳",
            QcTest::FlatLine => "卡死",
            QcTest::RateOfChange => "变化率异常",
            QcTest::Timing => "时间戳异常",
        }
    }

    /// What the test catches, in English.
    pub fn en(self) -> &'static str {
        match self {
            QcTest::GrossRange => "out of range",
            QcTest::Spike => "spike",
            QcTest::FlatLine => "stuck sensor",
            QcTest::RateOfChange => "implausible rate of change",
            QcTest::Timing => "bad timestamp",
        }
    }
}

impl fmt::Display for QcTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The flag of each configured test for one reading.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QcOutcome {
    /// Indexed by [`QcTest::index`]; `None` = test not configured. A configured test is `Good`,
    /// `Suspect` or `Fail`; `NotEvaluated` while it has no reference yet (first reading for spike
    /// and rate of change); `Missing` for a non-finite value.
    pub results: [Option<Quality>; 5],
}

/// Aggregation order: ioos_qc's `qartod_compare` (fail > suspect > good > not evaluated), except
/// that a missing value outranks everything, so a NaN can never come out `Good`.
fn severity(q: Quality) -> u8 {
    match q {
        Quality::NotEvaluated => 0,
        Quality::Good => 1,
        Quality::Suspect => 2,
        Quality::Fail => 3,
        Quality::Missing => 4,
    }
}

impl QcOutcome {
    /// The flag of one test (`None` = not configured).
    pub fn get(&self, test: QcTest) -> Option<Quality> {
        self.results[test.index()]
    }

    /// The reading's overall flag: the worst result; `Good` if all pass; `NotEvaluated` if no
    /// test is configured (or none could be evaluated yet).
    pub fn flag(&self) -> Quality {
        self.results.iter().flatten().copied().max_by_key(|q| severity(*q)).unwrap_or(Quality::NotEvaluated)
    }

    /// The tests that flagged the reading (suspect, fail or missing), in [`QcTest::ALL`] order.
    pub fn failed(&self) -> impl Iterator<Item = (QcTest, Quality)> {
        let results = self.results;
        QcTest::ALL.into_iter().filter_map(move |t| results[t.index()].filter(|q| severity(*q) >= 2).map(|q| (t, q)))
    }

    /// Whether no test flagged the reading: it counts towards clearing a data-quality alert.
    pub fn passed(&self) -> bool {
        self.failed().next().is_none()
    }

    fn set(&mut self, test: QcTest, q: Quality) {
        self.results[test.index()] = Some(q);
    }
}

/// Gross-range bounds resolved for one sensor.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bounds {
    suspect_min: Option<f64>,
    suspect_max: Option<f64>,
    fail_min: Option<f64>,
    fail_max: Option<f64>,
}

impl Bounds {
    /// In the order they must be ascending.
    fn ordered(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("fail_min", self.fail_min),
            ("suspect_min", self.suspect_min),
            ("suspect_max", self.suspect_max),
            ("fail_max", self.fail_max),
        ]
    }

    fn flag(&self, v: f64) -> Quality {
        if outside(v, self.fail_min, self.fail_max) {
            Quality::Fail
        } else if outside(v, self.suspect_min, self.suspect_max) {
            Quality::Suspect
        } else {
            Quality::Good
        }
    }
}

fn outside(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m)
}

/// Every out-of-order pair among the bounds that are known.
fn ordering_problems(bounds: &[(&str, Option<f64>); 4]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (a, va)) in bounds.iter().enumerate() {
        for (b, vb) in &bounds[i + 1..] {
            if let (Some(x), Some(y)) = (va, vb) {
                if x > y {
                    out.push(format!("gross_range: {a} {x} must be ≤ {b} {y}"));
                }
            }
        }
    }
    out
}

impl GrossRange {
    fn fields(&self) -> [(&'static str, Option<&ThresholdExpr>); 4] {
        [
            ("fail_min", self.fail_min.as_ref()),
            ("suspect_min", self.suspect_min.as_ref()),
            ("suspect_max", self.suspect_max.as_ref()),
            ("fail_max", self.fail_max.as_ref()),
        ]
    }

    fn problems(&self, out: &mut Vec<String>) {
        let fields = self.fields();
        if fields.iter().all(|(_, e)| e.is_none()) {
            out.push("gross_range: give at least one of suspect_min, suspect_max, fail_min, fail_max".into());
        }
        let constant = |e: Option<&ThresholdExpr>| match e {
            Some(ThresholdExpr::Const(v)) => Some(*v),
            _ => None,
        };
        for (name, e) in fields {
            if constant(e).is_some_and(|v| !v.is_finite()) {
                out.push(format!("gross_range.{name}: must be finite"));
            }
        }
        out.extend(ordering_problems(&fields.map(|(n, e)| (n, constant(e).filter(|v| v.is_finite())))));
    }

    fn resolve(&self, attributes: &riskwatch_core::Attributes) -> Result<Bounds, String> {
        let mut v = [None; 4];
        for (slot, (name, e)) in v.iter_mut().zip(self.fields()) {
            if let Some(e) = e {
                let x = e.resolve(attributes).map_err(|m| format!("gross_range.{name}: {m}"))?;
                if !x.is_finite() {
                    return Err(format!("gross_range.{name}: {e} is not a finite number"));
                }
                *slot = Some(x);
            }
        }
        let b = Bounds { fail_min: v[0], suspect_min: v[1], suspect_max: v[2], fail_max: v[3] };
        ordering_problems(&b.ordered()).into_iter().next().map_or(Ok(b), Err)
    }
}

/// Checks a suspect/fail pair of "at or above" thresholds: at least one, each finite and > 0,
/// suspect ≤ fail.
fn pair_problems(out: &mut Vec<String>, test: &str, (sn, s): (&str, Option<f64>), (fname, f): (&str, Option<f64>)) {
    if s.is_none() && f.is_none() {
        out.push(format!("{test}: give {sn}, {fname} or both"));
    }
    for (n, v) in [(sn, s), (fname, f)] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            out.push(format!("{test}.{n}: must be a finite number > 0"));
        }
    }
    if let (Some(s), Some(f)) = (s, f) {
        if s > f {
            out.push(format!("{test}: {sn} {s} must be ≤ {fname} {f}"));
        }
    }
}

/// Suspect / fail for a quantity that is bad when large.
fn grade(x: f64, suspect: Option<f64>, fail: Option<f64>) -> Quality {
    if x.is_nan() || fail.is_some_and(|f| x >= f) {
        Quality::Fail
    } else if suspect.is_some_and(|s| x >= s) {
        Quality::Suspect
    } else {
        Quality::Good
    }
}

impl QualitySpec {
    /// Static validation; each message starts with the field it is about.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.applies_to.kind.is_empty() {
            out.push("applies_to.kind: must name a sensor kind".into());
        }
        let tests = [
            self.gross_range.is_some(),
            self.spike.is_some(),
            self.flat_line.is_some(),
            self.rate_of_change.is_some(),
            self.timing.is_some(),
        ];
        if !tests.contains(&true) && self.stale.is_none() {
            out.push(
                "tests: configure at least one of gross_range, spike, flat_line, rate_of_change, timing, stale".into(),
            );
        }
        if let Some(g) = &self.gross_range {
            g.problems(&mut out);
        }
        if let Some(s) = &self.spike {
            pair_problems(&mut out, "spike", ("suspect", s.suspect), ("fail", s.fail));
            if !(1..=MAX_SPIKE_WINDOW).contains(&s.window) {
                out.push(format!("spike.window: must be ≥ 1 and ≤ {MAX_SPIKE_WINDOW}"));
            }
        }
        if let Some(f) = &self.flat_line {
            if !(f.tolerance.is_finite() && f.tolerance >= 0.0) {
                out.push("flat_line.tolerance: must be a finite number ≥ 0".into());
            }
            pair_problems(&mut out, "flat_line", ("suspect_s", f.suspect_s), ("fail_s", f.fail_s));
            if f.min_samples < 2 {
                out.push("flat_line.min_samples: must be ≥ 2 (one reading is not a line)".into());
            }
        }
        if let Some(r) = &self.rate_of_change {
            pair_problems(
                &mut out,
                "rate_of_change",
                ("suspect_per_hour", r.suspect_per_hour),
                ("fail_per_hour", r.fail_per_hour),
            );
        }
        if let Some(t) = &self.timing {
            if t.max_future_s.is_none() && t.max_age_s.is_none() {
                out.push("timing: give max_future_s, max_age_s or both".into());
            }
            for (n, v) in [("max_future_s", t.max_future_s), ("max_age_s", t.max_age_s)] {
                if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    out.push(format!("timing.{n}: must be a finite number of seconds ≥ 0"));
                }
            }
        }
        if let Some(s) = &self.stale {
            if !(s.intervals.is_finite() && s.intervals >= 1.0) {
                out.push("stale.intervals: must be a finite number ≥ 1".into());
            }
        }
        if self.clear_after == 0 {
            out.push("clear_after: must be ≥ 1".into());
        }
        out
    }

    /// Binds the spec to one sensor, resolving registry attributes. `Err` names the field and
    /// the missing attribute (`gross_range.fail_max: sensor has no attribute "sensor_max"`), an
    /// out-of-order resolved range, a missing `interval_s` for `stale`, or the static problems.
    pub fn resolve(&self, sensor: &Sensor) -> Result<ResolvedQuality, String> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let gross_range = self.gross_range.as_ref().map(|g| g.resolve(&sensor.attributes)).transpose()?;
        let stale_after_ms =
            match self.stale {
                Some(s) => match sensor.interval_s.filter(|iv| iv.is_finite() && *iv > 0.0) {
                    Some(iv) => Some((iv * s.intervals * 1000.0).round() as i64),
                    None => return Err(
                        "stale: sensor has no interval_s (expected reporting interval) to count missed intervals of"
                            .into(),
                    ),
                },
                None => None,
            };
        Ok(ResolvedQuality {
            measure: self.measure,
            unit: Arc::from(self.measure.unit(&sensor.unit)),
            gross_range,
            spike: self.spike,
            flat_line: self.flat_line,
            rate_of_change: self.rate_of_change,
            timing: self.timing,
            stale_intervals: self.stale.map(|s| s.intervals),
            stale_after_ms,
            level: self.level,
            clear_after: self.clear_after,
        })
    }
}

/// A [`QualitySpec`] bound to one sensor, thresholds resolved against its registry attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedQuality {
    measure: Measure,
    unit: Arc<str>,
    gross_range: Option<Bounds>,
    spike: Option<SpikeTest>,
    flat_line: Option<FlatLine>,
    rate_of_change: Option<RateOfChange>,
    timing: Option<Timing>,
    stale_intervals: Option<f64>,
    stale_after_ms: Option<i64>,
    level: Level,
    clear_after: u32,
}

/// A run of readings within the flat-line tolerance of its first value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Run {
    start: Timestamp,
    value: f64,
    samples: u32,
}

impl Run {
    /// The run after a reading: extended if within `tolerance` of its first value, else a new run.
    fn next(run: Option<Run>, ts: Timestamp, v: f64, tolerance: f64) -> Run {
        match run {
            Some(r) if (v - r.value).abs() <= tolerance => Run { samples: r.samples.saturating_add(1), ..r },
            _ => Run { start: ts, value: v, samples: 1 },
        }
    }
}

/// Per-(spec, sensor) state: about 200 bytes, no heap, serialisable for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityState {
    /// Most recent accepted values, newest first; the first `recent_len` are valid.
    recent: [f64; MAX_SPIKE_WINDOW],
    recent_len: u8,
    /// A spike-flagged reading that a next, agreeing reading would confirm as a step change.
    candidate: Option<(Timestamp, f64)>,
    /// The last accepted reading: the rate-of-change reference.
    last: Option<(Timestamp, f64)>,
    /// The current flat-line run of accepted readings.
    run: Option<Run>,
}

impl QualityState {
    /// The value of the last reading accepted as a reference (not flagged by spike, and
    /// passing timing and gross range).
    pub(crate) fn last_value(&self) -> Option<f64> {
        self.last.map(|(_, v)| v)
    }

    fn spike_reference(&self, window: usize) -> Option<f64> {
        let n = usize::from(self.recent_len).min(window).min(MAX_SPIKE_WINDOW);
        (n > 0).then(|| self.recent[..n].iter().sum::<f64>() / n as f64)
    }
}

impl ResolvedQuality {
    /// Checks one reading's measured value `v` at event time `ts`; `now` is the processing clock
    /// (wall clock live, event time in replay). Readings must come in non-decreasing event time.
    pub fn check(&self, state: &mut QualityState, ts: Timestamp, v: f64, now: Timestamp) -> QcOutcome {
        let mut out = QcOutcome::default();
        if let Some(t) = &self.timing {
            out.set(QcTest::Timing, timing_flag(t, ts, now));
        }
        if !v.is_finite() {
            for (test, on) in [
                (QcTest::GrossRange, self.gross_range.is_some()),
                (QcTest::Spike, self.spike.is_some()),
                (QcTest::FlatLine, self.flat_line.is_some()),
                (QcTest::RateOfChange, self.rate_of_change.is_some()),
            ] {
                if on {
                    out.set(test, Quality::Missing);
                }
            }
            return out;
        }
        let gross = self.gross_range.map(|b| b.flag(v));
        if let Some(g) = gross {
            out.set(QcTest::GrossRange, g);
        }
        // Trusted: its time and value may serve as a reference, if the spike test agrees.
        let trusted = out.get(QcTest::Timing) != Some(Quality::Fail) && gross != Some(Quality::Fail);
        let mut spiked = false;
        if let Some(sp) = &self.spike {
            if let Some((cts, cv)) = state.candidate.filter(|_| trusted) {
                if (v - cv).abs() < sp.suspect.or(sp.fail).unwrap_or(f64::INFINITY) {
                    // The flagged value was the first of a new level, not a spike.
                    state.recent_len = 0;
                    self.accept(state, cts, cv);
                }
            }
            let q = match state.spike_reference(sp.window) {
                Some(mean) => grade((v - mean).abs(), sp.suspect, sp.fail),
                None => Quality::NotEvaluated,
            };
            spiked = matches!(q, Quality::Suspect | Quality::Fail);
            out.set(QcTest::Spike, q);
        }
        if let Some(r) = &self.rate_of_change {
            out.set(QcTest::RateOfChange, rate_flag(r, state.last, ts, v));
        }
        let accepted = trusted && !spiked;
        if let Some(f) = &self.flat_line {
            let run = Run::next(state.run, ts, v, f.tolerance);
            let held_s = ts.millis().saturating_sub(run.start.millis()) as f64 / 1000.0;
            let q = if run.samples >= f.min_samples { grade(held_s, f.suspect_s, f.fail_s) } else { Quality::Good };
            out.set(QcTest::FlatLine, q);
        }
        if accepted {
            self.accept(state, ts, v);
        } else if trusted {
            state.candidate = Some((ts, v));
        }
        out
    }

    /// Makes a reading the reference of the spike window, rate of change and flat line.
    fn accept(&self, state: &mut QualityState, ts: Timestamp, v: f64) {
        state.recent.copy_within(0..MAX_SPIKE_WINDOW - 1, 1);
        state.recent[0] = v;
        state.recent_len = state.recent_len.saturating_add(1).min(MAX_SPIKE_WINDOW as u8);
        state.last = Some((ts, v));
        state.candidate = None;
        if let Some(f) = &self.flat_line {
            state.run = Some(Run::next(state.run, ts, v, f.tolerance));
        }
    }

    /// A short bilingual description of why `test` flags the value `v`, for alert messages. It
    /// does not repeat the test's name ([`QcTest::zh`] / [`QcTest::en`]), which callers usually
    /// put in front: `("读数 45.00 m 超出量程 [0.00, 40.00] m", "45.00 m outside gross range [0.00, 40.00] m")`.
    pub fn explain(&self, test: QcTest, v: f64) -> (String, String) {
        let u = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        let val = format!("{v:.2}{u}");
        if !v.is_finite() && test != QcTest::Timing {
            return (format!("读数 {v} 不是有限数值"), format!("reading {v} is not a finite number"));
        }
        let not_configured = || ("未配置该项检查".to_string(), "test not configured".to_string());
        match test {
            QcTest::GrossRange => {
                let Some(b) = self.gross_range else { return not_configured() };
                let fails = b.flag(v) == Quality::Fail || (b.suspect_min.is_none() && b.suspect_max.is_none());
                let (lo, hi) = if fails { (b.fail_min, b.fail_max) } else { (b.suspect_min, b.suspect_max) };
                let lo = lo.map_or("(−∞".to_string(), |x| format!("[{x:.2}"));
                let hi = hi.map_or("+∞)".to_string(), |x| format!("{x:.2}]"));
                let (zr, er) = if fails { ("量程", "gross range") } else { ("合理范围", "suspect range") };
                (format!("读数 {val} 超出{zr} {lo}, {hi}{u}"), format!("{val} outside {er} {lo}, {hi}{u}"))
            }
            QcTest::Spike => {
                let Some(s) = self.spike else { return not_configured() };
                let (zl, el) = limits(s.suspect, s.fail, |x| (format!("{x:.2}{u}"), format!("{x:.2}{u}")));
                (
                    format!("读数 {val} 偏离前 {} 个读数的均值（限值：{zl}）", s.window),
                    format!("{val} departs from the mean of the previous {} readings (limits: {el})", s.window),
                )
            }
            QcTest::FlatLine => {
                let Some(f) = self.flat_line else { return not_configured() };
                let (zl, el) = limits(f.suspect_s, f.fail_s, duration);
                (
                    format!(
                        "读数 {val} 在 ±{}{u} 内保持不变（限值：{zl}，且至少 {} 个读数）",
                        f.tolerance, f.min_samples
                    ),
                    format!(
                        "{val} has stayed within ±{}{u} (limits: {el}, and at least {} readings)",
                        f.tolerance, f.min_samples
                    ),
                )
            }
            QcTest::RateOfChange => {
                let Some(r) = self.rate_of_change else { return not_configured() };
                let per_h = |x: f64| (format!("{x:.2}{u}/小时"), format!("{x:.2}{u}/h"));
                let (zl, el) = limits(r.suspect_per_hour, r.fail_per_hour, per_h);
                (
                    format!("读数 {val} 相对上一读数变化过快（限值：{zl}）"),
                    format!("{val} changed too fast since the previous reading (limits: {el})"),
                )
            }
            QcTest::Timing => {
                let Some(t) = self.timing else { return not_configured() };
                let mut zs = Vec::new();
                let mut es = Vec::new();
                if let Some(s) = t.max_future_s {
                    let (z, e) = duration(s);
                    zs.push(format!("超前当前时钟超过 {z}"));
                    es.push(format!("more than {e} in the future"));
                }
                if let Some(s) = t.max_age_s {
                    let (z, e) = duration(s);
                    zs.push(format!("早于当前时钟超过 {z}"));
                    es.push(format!("more than {e} old"));
                }
                (
                    format!("读数 {val} 的测量时间{}", zs.join("或")),
                    format!("reading {val} was measured {}", es.join(" or ")),
                )
            }
        }
    }

    /// Level of the data-quality alerts this check raises.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Consecutive passing readings ([`QcOutcome::passed`]) before a data-quality alert clears.
    pub fn clear_after(&self) -> u32 {
        self.clear_after
    }

    /// Missed reporting intervals before the sensor counts as stale, if configured.
    pub fn stale_intervals(&self) -> Option<f64> {
        self.stale_intervals
    }

    /// Milliseconds without a reading after which the sensor is stale: `stale.intervals` × the
    /// sensor's `interval_s`.
    pub fn stale_after_ms(&self) -> Option<i64> {
        self.stale_after_ms
    }

    /// The number this check reads from a reading.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// Whether a test is configured.
    pub fn has(&self, test: QcTest) -> bool {
        match test {
            QcTest::GrossRange => self.gross_range.is_some(),
            QcTest::Spike => self.spike.is_some(),
            QcTest::FlatLine => self.flat_line.is_some(),
            QcTest::RateOfChange => self.rate_of_change.is_some(),
            QcTest::Timing => self.timing.is_some(),
        }
    }
}

fn timing_flag(t: &Timing, ts: Timestamp, now: Timestamp) -> Quality {
    let ahead_s = ts.millis().saturating_sub(now.millis()) as f64 / 1000.0;
    let too_new = t.max_future_s.is_some_and(|m| ahead_s > m);
    let too_old = t.max_age_s.is_some_and(|m| -ahead_s > m);
    if too_new || too_old {
        Quality::Fail
    } else {
        Quality::Good
    }
}

/// Rate against the last accepted reading. Δt ≤ 0 (a duplicate timestamp the engine should
/// have dropped) has no rate: not evaluated rather than a division by zero.
fn rate_flag(r: &RateOfChange, last: Option<(Timestamp, f64)>, ts: Timestamp, v: f64) -> Quality {
    let Some((t0, v0)) = last else { return Quality::NotEvaluated };
    let dt_ms = ts.millis().saturating_sub(t0.millis());
    if dt_ms <= 0 {
        return Quality::NotEvaluated;
    }
    grade((v - v0).abs() * 3_600_000.0 / dt_ms as f64, r.suspect_per_hour, r.fail_per_hour)
}

/// "可疑 ≥ a，失效 ≥ b" / "suspect ≥ a, fail ≥ b" for the thresholds that are set.
fn limits(suspect: Option<f64>, fail: Option<f64>, show: impl Fn(f64) -> (String, String)) -> (String, String) {
    let mut zh = Vec::new();
    let mut en = Vec::new();
    for (x, zn, enn) in [(suspect, "可疑", "suspect"), (fail, "失效", "fail")] {
        if let Some(x) = x {
            let (z, e) = show(x);
            zh.push(format!("{zn} ≥ {z}"));
            en.push(format!("{enn} ≥ {e}"));
        }
    }
    (zh.join("，"), en.join(", "))
}

/// Seconds as people say them: "2 小时" / "2 h", "90 秒" / "90 s".
fn duration(s: f64) -> (String, String) {
    for (unit, zh, en) in [(86_400.0, "天", "d"), (3_600.0, "小时", "h"), (60.0, "分钟", "min")] {
        if s >= unit && (s / unit).fract() == 0.0 {
            let n = s / unit;
            return (format!("{n} {zh}"), format!("{n} {en}"));
        }
    }
    (format!("{s} 秒"), format!("{s} s"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::{SensorId, SensorKind, SiteId};
    use Quality::{Fail, Good, Missing, NotEvaluated, Suspect};

    const MIN: i64 = 60_000;
    const T0: i64 = 1_594_566_000_000; // 2020-07-12T15:00:00Z

    fn sensor(attrs: &[(&str, f64)]) -> Sensor {
        Sensor {
            id: SensorId::new("hankou-wl"),
            site: SiteId::new("hankou"),
            kind: SensorKind::WaterLevel,
            unit: Arc::from("m"),
            name: String::new(),
            name_zh: String::new(),
            location: None,
            interval_s: Some(300.0),
            tags: vec![],
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn spec(body: &str) -> QualitySpec {
        let text = format!("applies_to = {{ kind = \"water_level\" }}\n{body}");
        toml::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn resolved(body: &str) -> ResolvedQuality {
        spec(body).resolve(&sensor(&[])).unwrap()
    }

    /// Feeds values `step_ms` apart (clock = event time) and returns one test's flag per reading.
    fn flags(q: &ResolvedQuality, test: QcTest, step_ms: i64, values: &[f64]) -> Vec<Option<Quality>> {
        let mut st = QualityState::default();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ts = Timestamp(T0 + i as i64 * step_ms);
                q.check(&mut st, ts, *v, ts).get(test)
            })
            .collect()
    }

    #[test]
    fn gross_range_fails_outside_fail_bounds_and_is_suspect_outside_suspect_bounds() {
        let q = resolved("gross_range = { fail_min = 0, suspect_min = 1, suspect_max = 35, fail_max = 40 }");
        for (v, want) in [
            (-0.1, Fail),
            (0.0, Suspect),
            (0.5, Suspect),
            (1.0, Good),
            (20.0, Good),
            (35.0, Good),
            (35.1, Suspect),
            (40.0, Suspect),
            (40.01, Fail),
            (1e9, Fail),
        ] {
            let out = q.check(&mut QualityState::default(), Timestamp(T0), v, Timestamp(T0));
            assert_eq!(out.get(QcTest::GrossRange), Some(want), "value {v}");
            assert_eq!(out.flag(), want, "value {v}");
        }
    }

    #[test]
    fn gross_range_thresholds_come_from_registry_attributes() {
        let s = spec(
            r#"gross_range = { fail_min = "sensor_min", fail_max = "sensor_max", suspect_max = "record_level + 2" }"#,
        );
        let q = s.resolve(&sensor(&[("sensor_min", 10.0), ("sensor_max", 40.0), ("record_level", 29.7)])).unwrap();
        let at = |v| q.check(&mut QualityState::default(), Timestamp(T0), v, Timestamp(T0)).flag();
        assert_eq!((at(9.9), at(25.0), at(31.8), at(40.5)), (Fail, Good, Suspect, Fail));

        let err = s.resolve(&sensor(&[("sensor_min", 10.0), ("record_level", 29.7)])).unwrap_err();
        assert!(err.contains("gross_range.fail_max") && err.contains("\"sensor_max\""), "{err}");
        let err =
            s.resolve(&sensor(&[("sensor_min", 10.0), ("sensor_max", 40.0), ("record_level", 39.0)])).unwrap_err();
        assert_eq!(err, "gross_range: suspect_max 41 must be ≤ fail_max 40");
    }

    #[test]
    fn a_single_spike_is_flagged_and_the_readings_after_it_are_not() {
        let q = resolved("spike = { suspect = 0.5, fail = 2.0 }");
        let got = flags(&q, QcTest::Spike, 5 * MIN, &[10.0, 10.1, 10.0, 10.05, 15.0, 10.1, 10.0, 10.8, 10.05, 10.0]);
        let want = [NotEvaluated, Good, Good, Good, Fail, Good, Good, Suspect, Good, Good];
        assert_eq!(got, want.map(Some));
    }

    #[test]
    fn a_step_change_is_flagged_once_then_becomes_the_new_level() {
        let q = resolved("spike = { suspect = 0.5, fail = 2.0 }");
        let got = flags(&q, QcTest::Spike, 5 * MIN, &[10.0, 10.0, 10.0, 14.0, 14.1, 14.0, 13.9, 10.0]);
        let want = [NotEvaluated, Good, Good, Fail, Good, Good, Good, Fail];
        assert_eq!(got, want.map(Some));
    }

    #[test]
    fn with_all_tests_on_only_the_spike_itself_is_flagged() {
        let q = resolved(
            "gross_range = { fail_min = 0, fail_max = 40 }\nspike = { suspect = 0.5, fail = 2.0 }\n\
             rate_of_change = { suspect_per_hour = 3.0, fail_per_hour = 10.0 }\nflat_line = { tolerance = 0.001, suspect_s = 7200 }",
        );
        let mut st = QualityState::default();
        let overall: Vec<Quality> = [10.0, 10.1, 10.0, 10.05, 15.0, 10.1, 10.0, 10.05]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ts = Timestamp(T0 + i as i64 * 5 * MIN);
                q.check(&mut st, ts, *v, ts).flag()
            })
            .collect();
        assert_eq!(overall, [Good, Good, Good, Good, Fail, Good, Good, Good]);
    }

    #[test]
    fn a_stuck_sensor_turns_suspect_then_fails_and_recovers_when_the_value_moves() {
        let q = resolved("flat_line = { tolerance = 0.01, suspect_s = 3600, fail_s = 7200 }");
        // Every 10 minutes; jitter within the tolerance does not break the run.
        let mut values: Vec<f64> = (0..14).map(|i| 12.3 + if i % 2 == 0 { 0.004 } else { -0.004 }).collect();
        values.extend([12.5, 12.5]);
        let got = flags(&q, QcTest::FlatLine, 10 * MIN, &values);
        let mut want = vec![Good; 6]; // 0–50 min
        want.extend([Suspect; 6]); // 60–110 min
        want.extend([Fail, Fail]); // 120, 130 min
        want.extend([Good, Good]); // moved by 0.2 m: a new run
        assert_eq!(got, want.into_iter().map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_flat_line_needs_min_samples_as_well_as_time() {
        let q = resolved("flat_line = { suspect_s = 3600, min_samples = 3 }");
        // Two identical readings two hours apart (a gap, not a stuck sensor), then a third.
        assert_eq!(flags(&q, QcTest::FlatLine, 120 * MIN, &[5.0, 5.0, 5.0]), [Good, Good, Suspect].map(Some));
    }

    #[test]
    fn out_of_range_values_neither_extend_nor_break_a_flat_line() {
        let q = resolved("gross_range = { fail_min = 1 }\nflat_line = { suspect_s = 1800, min_samples = 3 }");
        // A gauge stuck at 0 (below its range) is reported as out of range, not as stuck.
        let stuck_low = flags(&q, QcTest::FlatLine, 10 * MIN, &[0.0; 6]);
        assert!(stuck_low.iter().all(|f| *f == Some(Good)), "{stuck_low:?}");
        // A glitch to 0 inside a stuck run does not restart the run's clock.
        // (A restarted run would still be Good at 30 and 40 minutes.)
        let got = flags(&q, QcTest::FlatLine, 10 * MIN, &[5.0, 5.0, 0.0, 5.0, 5.0]);
        assert_eq!(got, [Good, Good, Good, Suspect, Suspect].map(Some));
    }

    #[test]
    fn an_implausible_jump_flags_rate_of_change() {
        let q = resolved("rate_of_change = { suspect_per_hour = 1.0, fail_per_hour = 3.0 }");
        // 5-minute readings: +0.05 (0.6 m/h), +0.1 (1.2 m/h), +0.5 (6 m/h), then steady.
        let got = flags(&q, QcTest::RateOfChange, 5 * MIN, &[10.0, 10.05, 10.15, 10.65, 10.65]);
        assert_eq!(got, [NotEvaluated, Good, Suspect, Fail, Good].map(Some));
        // Falling as fast is as implausible.
        assert_eq!(flags(&q, QcTest::RateOfChange, 5 * MIN, &[10.0, 9.5])[1], Some(Fail));
    }

    #[test]
    fn rate_of_change_with_no_elapsed_time_does_not_divide_by_zero() {
        let q = resolved("rate_of_change = { suspect_per_hour = 1.0 }");
        let mut st = QualityState::default();
        q.check(&mut st, Timestamp(T0), 10.0, Timestamp(T0));
        let out = q.check(&mut st, Timestamp(T0), 12.0, Timestamp(T0));
        assert_eq!(out.get(QcTest::RateOfChange), Some(NotEvaluated));
        assert!(out.passed());
    }

    #[test]
    fn timestamps_in_the_future_or_too_old_fail_timing() {
        let q = resolved("timing = { max_future_s = 300, max_age_s = 86400 }");
        let now = Timestamp(T0);
        for (offset_ms, want) in [
            (0, Good),
            (300_000, Good),
            (300_001, Fail),
            (3_600_000, Fail),
            (-86_400_000, Good),
            (-86_400_001, Fail),
            (i64::MIN, Fail),
            (i64::MAX / 2, Fail),
        ] {
            let ts = Timestamp(T0.saturating_add(offset_ms));
            let out = q.check(&mut QualityState::default(), ts, 1.0, now);
            assert_eq!(out.get(QcTest::Timing), Some(want), "offset {offset_ms} ms");
        }
    }

    #[test]
    fn a_reading_with_a_bad_timestamp_does_not_become_a_reference() {
        let q = resolved("timing = { max_future_s = 60 }\nrate_of_change = { fail_per_hour = 1.0 }");
        let mut st = QualityState::default();
        let now = Timestamp(T0);
        q.check(&mut st, Timestamp(T0), 10.0, now);
        // A reading stamped a year ahead fails timing and is not used as the predecessor.
        let bad = q.check(&mut st, Timestamp(T0 + 365 * 24 * 60 * MIN), 10.0, now);
        assert_eq!(bad.get(QcTest::Timing), Some(Fail));
        let next = q.check(&mut st, Timestamp(T0 + 60 * MIN), 10.5, Timestamp(T0 + 60 * MIN));
        assert_eq!(next.flag(), Good, "0.5 m in an hour against the reading before the bad one");
    }

    #[test]
    fn problems_name_the_bad_field() {
        let cases = [
            ("gross_range = { fail_min = 10, suspect_min = 5 }", "gross_range: fail_min 10 must be ≤ suspect_min 5"),
            (
                "gross_range = { suspect_min = 30, suspect_max = 20 }",
                "gross_range: suspect_min 30 must be ≤ suspect_max 20",
            ),
            ("gross_range = {}", "gross_range: give at least one of"),
            ("spike = { suspect = 1, window = 0 }", "spike.window: must be ≥ 1"),
            ("spike = { suspect = 1, window = 17 }", "spike.window: must be ≥ 1 and ≤ 16"),
            ("spike = { suspect = 2, fail = 1 }", "spike: suspect 2 must be ≤ fail 1"),
            ("spike = { suspect = -1 }", "spike.suspect: must be a finite number > 0"),
            ("spike = { fail = inf }", "spike.fail: must be a finite number > 0"),
            ("spike = {}", "spike: give suspect, fail or both"),
            ("flat_line = { tolerance = -0.1, suspect_s = 60 }", "flat_line.tolerance: must be a finite number ≥ 0"),
            ("flat_line = { suspect_s = 60, min_samples = 1 }", "flat_line.min_samples: must be ≥ 2"),
            ("flat_line = { suspect_s = 7200, fail_s = 3600 }", "flat_line: suspect_s 7200 must be ≤ fail_s 3600"),
            (
                "rate_of_change = { suspect_per_hour = 0 }",
                "rate_of_change.suspect_per_hour: must be a finite number > 0",
            ),
            ("timing = {}", "timing: give max_future_s, max_age_s or both"),
            ("timing = { max_age_s = -1 }", "timing.max_age_s: must be a finite number of seconds ≥ 0"),
            ("stale = { intervals = 0.5 }", "stale.intervals: must be a finite number ≥ 1"),
            ("gross_range = { fail_max = 1 }\nclear_after = 0", "clear_after: must be ≥ 1"),
            ("level = \"red\"", "tests: configure at least one of"),
        ];
        for (body, want) in cases {
            let problems = spec(body).problems();
            assert!(problems.iter().any(|p| p.starts_with(want)), "{body}: expected {want:?}, got {problems:?}");
            assert!(spec(body).resolve(&sensor(&[])).is_err(), "{body}: resolve must refuse an invalid spec");
        }
        let good =
            spec("gross_range = { fail_min = \"sensor_min\", suspect_min = 0 }\nspike = { fail = 1 }\nstale = {}");
        assert_eq!(good.problems(), Vec::<String>::new(), "attribute bounds are checked at resolve time");
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let s = spec("spike = { suspect = 1 }\nflat_line = { suspect_s = 60 }\nstale = {}");
        assert_eq!((s.measure, s.level, s.clear_after), (Measure::Value, Level::Blue, 3));
        assert_eq!(s.spike.map(|x| x.window), Some(3));
        assert_eq!(s.flat_line.map(|f| (f.tolerance, f.min_samples)), Some((0.0, 3)));
        assert_eq!(s.stale.map(|x| x.intervals), Some(3.0));
        let err = toml::from_str::<QualitySpec>("applies_to = { kind = \"x\" }\nspike = { suspect = 1, windw = 3 }")
            .unwrap_err();
        assert!(err.to_string().contains("windw"), "{err}");
        let g: QualitySpec = toml::from_str(
            "applies_to = { kind = \"gnss_displacement\" }\nmeasure = \"horizontal\"\ntiming = { max_age_s = 60 }",
        )
        .unwrap();
        assert_eq!(g.measure, Measure::Horizontal);
    }

    #[test]
    fn stale_is_carried_and_needs_the_sensor_interval() {
        let s = spec("stale = { intervals = 4 }\nlevel = \"yellow\"\nclear_after = 2");
        let q = s.resolve(&sensor(&[])).unwrap();
        assert_eq!(
            (q.stale_intervals(), q.stale_after_ms(), q.level(), q.clear_after()),
            (Some(4.0), Some(1_200_000), Level::Yellow, 2)
        );
        let no_interval = Sensor { interval_s: None, ..sensor(&[]) };
        assert!(s.resolve(&no_interval).unwrap_err().starts_with("stale: sensor has no interval_s"));
        assert_eq!(QcTest::ALL.iter().filter(|t| q.has(**t)).count(), 0);
        assert_eq!(q.check(&mut QualityState::default(), Timestamp(T0), 1.0, Timestamp(T0)).flag(), NotEvaluated);
    }

    #[test]
    fn outcome_reports_the_worst_flag_and_what_failed() {
        let mut o = QcOutcome::default();
        assert_eq!((o.flag(), o.passed()), (NotEvaluated, true));
        o.set(QcTest::Spike, NotEvaluated);
        o.set(QcTest::GrossRange, Good);
        assert_eq!((o.flag(), o.passed()), (Good, true));
        o.set(QcTest::FlatLine, Suspect);
        o.set(QcTest::Timing, Fail);
        assert_eq!(o.flag(), Fail);
        assert_eq!(o.failed().collect::<Vec<_>>(), vec![(QcTest::FlatLine, Suspect), (QcTest::Timing, Fail)]);
        for (i, t) in QcTest::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        assert_eq!(
            (QcTest::FlatLine.as_str(), QcTest::FlatLine.zh(), QcTest::FlatLine.en()),
            ("flat_line", "卡死", "stuck sensor")
        );
    }

    #[test]
    fn explanations_carry_the_value_and_the_limits() {
        let q = resolved(
            "gross_range = { fail_min = 0, fail_max = 40, suspect_max = 35 }\nspike = { suspect = 0.5, fail = 2 }\n\
             flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }\nrate_of_change = { fail_per_hour = 3 }\n\
             timing = { max_future_s = 300, max_age_s = 86400 }",
        );
        let (zh, en) = q.explain(QcTest::GrossRange, 45.0);
        assert_eq!(zh, "读数 45.00 m 超出量程 [0.00, 40.00] m");
        assert_eq!(en, "45.00 m outside gross range [0.00, 40.00] m");
        assert_eq!(q.explain(QcTest::GrossRange, 36.0).1, "36.00 m outside suspect range (−∞, 35.00] m");
        let (zh, en) = q.explain(QcTest::FlatLine, 12.3);
        assert_eq!(zh, "读数 12.30 m 在 ±0.001 m 内保持不变（限值：可疑 ≥ 1 小时，失效 ≥ 2 小时，且至少 3 个读数）");
        assert_eq!(
            en,
            "12.30 m has stayed within ±0.001 m (limits: suspect ≥ 1 h, fail ≥ 2 h, and at least 3 readings)"
        );
        assert_eq!(
            q.explain(QcTest::Spike, 15.0).1,
            "15.00 m departs from the mean of the previous 3 readings (limits: suspect ≥ 0.50 m, fail ≥ 2.00 m)"
        );
        assert!(q.explain(QcTest::RateOfChange, 15.0).1.ends_with("(limits: fail ≥ 3.00 m/h)"));
        assert_eq!(
            q.explain(QcTest::Timing, 1.0).1,
            "reading 1.00 m was measured more than 5 min in the future or more than 1 d old"
        );
        assert!(q.explain(QcTest::Spike, f64::NAN).1.contains("not a finite number"));
    }

    #[test]
    fn non_finite_values_are_missing_and_leave_the_state_alone() {
        let q = resolved(
            "gross_range = { fail_max = 40 }\nspike = { fail = 2 }\nflat_line = { suspect_s = 60 }\n\
             rate_of_change = { fail_per_hour = 3 }\ntiming = { max_age_s = 60 }",
        );
        let mut st = QualityState::default();
        q.check(&mut st, Timestamp(T0), 10.0, Timestamp(T0));
        let before = st.clone();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let out = q.check(&mut st, Timestamp(T0 + MIN), v, Timestamp(T0 + MIN));
            assert_eq!(out.flag(), Missing, "{v}");
            assert_eq!(out.get(QcTest::Timing), Some(Good));
            assert_eq!(out.failed().count(), 4);
        }
        assert_eq!(st, before);
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let q = resolved(
            "gross_range = { fail_min = -1e300, fail_max = 1e300 }\nspike = { suspect = 1, fail = 2, window = 16 }\n\
             flat_line = { suspect_s = 60, fail_s = 120 }\nrate_of_change = { suspect_per_hour = 1 }\ntiming = { max_future_s = 0, max_age_s = 0 }",
        );
        let values = [0.0, f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 1e300, -1e300, f64::NAN, f64::INFINITY, 5.0];
        let times = [i64::MIN, -1, 0, T0, T0, i64::MAX];
        let mut st = QualityState::default();
        for ts in times {
            for v in values {
                for now in [i64::MIN, T0, i64::MAX] {
                    let out = q.check(&mut st, Timestamp(ts), v, Timestamp(now));
                    let _ = (out.flag(), q.explain(QcTest::ALL[(ts as usize) % 5], v));
                }
            }
        }
    }

    #[test]
    fn state_is_small_fixed_size_and_survives_a_snapshot() {
        assert!(std::mem::size_of::<QualityState>() < 512, "{} bytes", std::mem::size_of::<QualityState>());
        let q = resolved(
            "spike = { suspect = 0.5, window = 16 }\nflat_line = { suspect_s = 3600 }\nrate_of_change = { suspect_per_hour = 5 }",
        );
        let mut st = QualityState::default();
        for i in 0..100_000_i64 {
            let ts = Timestamp(T0 + i * MIN);
            // Mostly noise, a spike every 1000 readings, a stuck stretch every 10 000.
            let v = match i {
                i if i % 10_000 < 100 => 10.0,
                i if i % 1000 == 500 => 50.0,
                i => 10.0 + (i % 7) as f64 * 0.125,
            };
            q.check(&mut st, ts, v, ts);
        }
        let snapshot = toml::to_string(&st).unwrap();
        assert!(snapshot.len() < 1024, "{} bytes after 100 000 readings:\n{snapshot}", snapshot.len());
        let back: QualityState = toml::from_str(&toml::to_string(&st).unwrap()).unwrap();
        assert_eq!(back, st);
    }
}
