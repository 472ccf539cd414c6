//! The plumbing every physics model shares: turning per-reading physics into a series.
//!
//! A model file says what its sensor measures at a given moment ([`Physics::reading_at`]) and
//! when it takes readings ([`Physics::schedule`]); [`Series`] does the rest the same way for
//! all of them: it repairs and logs bad parameters, seeds the generator, stamps each value with
//! the sensor's identity and event time, and wraps the lot as a [`Track`]. The public model
//! types (`RiverFlood`, `GasLeak`, …) are `Series` of their physics, so a reader who knows one
//! knows all, and the random draws a model makes are exactly the ones its physics asks for.

use crate::params::Repair;
use crate::{SensorSpec, Track};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use riskwatch_core::{Quality, Reading, Timestamp, Value};

/// What one simulated sensor measures: the physics a [`Series`] samples.
///
/// Implemented by this crate's four models; their parameters also implement a crate-private
/// check-and-repair trait, so the trait is not meant for models outside the crate.
pub trait Physics: Send + Sized + 'static {
    /// The model's parameters.
    type Params: Repair;

    /// When the readings fall, for repaired parameters.
    fn schedule(params: &Self::Params) -> Schedule;

    /// The physics for repaired parameters. Anything fixed for the whole series but random
    /// (such as the tones of a seismic record) is drawn from `rng` here, before any reading.
    fn new(params: Self::Params, schedule: &Schedule, rng: &mut ChaCha8Rng) -> Self;

    /// The value the sensor reports `offset_ms` after the start of the series, drawing its
    /// noise from `rng`. Called once per reading, in order.
    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value;
}

/// When a series' readings fall: `count` of them, `interval_ms` apart from the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Time between readings, ms (at least 1).
    pub interval_ms: i64,
    /// Number of readings.
    pub count: u64,
    /// Event time the whole series covers, ms.
    pub span_ms: i64,
}

impl Schedule {
    /// Instantaneous readings every `interval_s` (rounded to whole ms, at least 1) from the
    /// start through `end_ms`; none if `end_ms` is negative. The span ends at the last reading.
    pub fn through(interval_s: f64, end_ms: i64) -> Self {
        let interval_ms = ((interval_s * 1000.0).round() as i64).max(1);
        let count = if end_ms < 0 { 0 } else { (end_ms / interval_ms) as u64 + 1 };
        let span_ms = (count.saturating_sub(1) as i64).saturating_mul(interval_ms);
        Schedule { interval_ms, count, span_ms }
    }

    /// `count` contiguous packets of `packet_ms` each. The span includes the last packet.
    pub fn packets(packet_ms: i64, count: u32) -> Self {
        Schedule { interval_ms: packet_ms, count: u64::from(count), span_ms: i64::from(count) * packet_ms }
    }
}

/// One sensor's series from a physics model: a lazy, deterministic iterator of [`Reading`]s
/// following the model's [`Schedule`] from `start`.
pub struct Series<P> {
    physics: P,
    spec: SensorSpec,
    start: Timestamp,
    schedule: Schedule,
    next_index: u64,
    rng: ChaCha8Rng,
}

impl<P: Physics> Series<P> {
    /// The sensor's series. Parameters that fail the model's `validate` are logged and
    /// replaced by their defaults, so a bad scenario file never makes a simulator panic or
    /// emit non-finite values; validate first to reject such a file instead.
    pub fn new(params: P::Params, spec: SensorSpec, start: Timestamp, seed: u64) -> Self {
        let mut params = params;
        let bad = params.repair();
        if !bad.is_empty() {
            tracing::warn!(
                sensor = %spec.sensor, fields = ?bad,
                "invalid {} parameters replaced by defaults", P::Params::WHAT
            );
        }
        let schedule = P::schedule(&params);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let physics = P::new(params, &schedule, &mut rng);
        Series { physics, spec, start, schedule, next_index: 0, rng }
    }

    /// The sensor's series as a [`Track`] (see [`Series::new`]).
    pub fn track(params: P::Params, spec: SensorSpec, start: Timestamp, seed: u64) -> Track {
        Self::new(params, spec, start, seed).into_track()
    }

    /// Wraps the remaining series as a [`Track`].
    pub fn into_track(self) -> Track {
        Track { spec: self.spec.clone(), start: self.start, span_ms: self.span_ms(), readings: Box::new(self) }
    }

    /// Event time the series covers, ms: from the first reading to the last, or to the end of
    /// the last packet for a model that publishes packets.
    pub fn span_ms(&self) -> i64 {
        self.schedule.span_ms
    }

    /// The physics being sampled.
    pub(crate) fn physics(&self) -> &P {
        &self.physics
    }

    /// Event time of the first reading.
    pub(crate) fn start(&self) -> Timestamp {
        self.start
    }
}

impl<P: Physics> Iterator for Series<P> {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        if self.next_index >= self.schedule.count {
            return None;
        }
        let offset_ms = (self.next_index as i64).saturating_mul(self.schedule.interval_ms);
        self.next_index += 1;
        let value = self.physics.reading_at(offset_ms, &mut self.rng);
        Some(Reading {
            sensor: self.spec.sensor.clone(),
            site: self.spec.site.clone(),
            kind: self.spec.kind.clone(),
            ts: Timestamp::from_millis(self.start.millis().saturating_add(offset_ms)),
            value,
            unit: self.spec.unit.clone(),
            quality: Quality::Good,
            exercise: false,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.schedule.count - self.next_index).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}
