//! A hindcast: time-ordered readings through the production [`Engine`], in event time
//! (`Engine::replay_batch`: each reading's own time is the engine's clock), as fast as possible
//! or paced at a speed factor, with a progress line and per-sensor traces for the plots.

use crate::{Outcome, Trace, TracePoint};
use anyhow::{Context, Result};
use riskwatch_core::{Reading, Registry, SensorId, Timestamp, Value};
use riskwatch_rules::{Engine, RuleSet};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Event time per wall time (3600 = an hour per second); `None` = as fast as possible.
    pub speed: Option<f64>,
    /// A progress line on stderr, refreshed about once a second.
    pub progress: bool,
    /// Bucket of the traces kept for plots; `None` = no traces.
    pub trace_bucket: Option<Duration>,
}

/// Maps event time to wall time at a speed factor.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    speed: f64,
    start: Instant,
    first: Option<Timestamp>,
}

impl Pacer {
    /// A pacer starting now; `speed` event ms per wall ms.
    pub fn new(speed: f64) -> Self {
        Pacer { speed, start: Instant::now(), first: None }
    }

    /// Blocks until event time `ts` is due (the first call sets the origin).
    pub fn wait_for(&mut self, ts: Timestamp) {
        let first = *self.first.get_or_insert(ts);
        let due =
            Duration::from_secs_f64(((ts.millis() - first.millis()).max(0) as f64 / self.speed / 1000.0).min(1e9));
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// Runs `readings` (in event-time order) through a fresh engine for `rules` and `registry`.
/// The readings are not changed (each run gets its own copies, so two runs over one history
/// see the same gateway quality flags).
pub fn run(readings: &[Reading], rules: &RuleSet, registry: &Registry, opts: &RunOptions) -> Result<Outcome> {
    let mut engine = Engine::new(rules, registry).context("the rules do not fit the registry")?;
    let began = Instant::now();
    let mut out = Outcome::default();
    let mut traces = Traces::new(opts.trace_bucket);
    let mut pacer = opts.speed.filter(|s| s.is_finite() && *s > 0.0).map(Pacer::new);
    let mut last_progress = Instant::now();
    let mut buf: Vec<Reading> = Vec::with_capacity(1024);
    let total = readings.len();
    for (i, chunk) in readings.chunks(1024).enumerate() {
        if let Some(p) = pacer.as_mut() {
            // Paced: one reading at a time, each at its due time.
            for r in chunk {
                p.wait_for(r.ts);
                buf.clear();
                buf.push(r.clone());
                engine.replay_batch(&mut buf, &mut out.events);
            }
        } else {
            buf.clear();
            buf.extend_from_slice(chunk);
            engine.replay_batch(&mut buf, &mut out.events);
        }
        traces.add(chunk);
        if opts.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let done = (i * 1024 + chunk.len()).min(total);
            let at = chunk.last().map(|r| r.ts.to_rfc3339_cst()).unwrap_or_default();
            let rate = done as f64 / began.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\rreplay: {at}  {done}/{total} readings ({:.0} %)  {rate:.0} readings/s   ",
                100.0 * done as f64 / total.max(1) as f64
            );
            let _ = std::io::stderr().flush();
        }
    }
    if opts.progress && began.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
    out.readings = total as u64;
    out.span = readings.first().zip(readings.last()).map(|(a, b)| (a.ts, b.ts));
    out.traces = traces.finish(registry);
    out.wall = began.elapsed();
    Ok(out)
}

/// Per-sensor min / max / last per bucket.
struct Traces {
    bucket_ms: Option<i64>,
    by_sensor: HashMap<SensorId, Vec<TracePoint>>,
}

impl Traces {
    fn new(bucket: Option<Duration>) -> Self {
        Traces { bucket_ms: bucket.map(|b| (b.as_millis() as i64).max(1)), by_sensor: HashMap::new() }
    }

    fn add(&mut self, readings: &[Reading]) {
        let Some(b) = self.bucket_ms else { return };
        for r in readings {
            let Value::Scalar(v) = r.value else { continue };
            if !r.quality.usable_for_hazard() {
                continue;
            }
            let start = Timestamp(r.ts.millis().div_euclid(b) * b);
            let points = self.by_sensor.entry(r.sensor.clone()).or_default();
            match points.last_mut() {
                Some(p) if p.start == start => {
                    p.min = p.min.min(v);
                    p.max = p.max.max(v);
                    p.last = v;
                }
                _ => points.push(TracePoint { start, min: v, max: v, last: v }),
            }
        }
    }

    fn finish(self, registry: &Registry) -> Vec<Trace> {
        let bucket = Duration::from_millis(self.bucket_ms.unwrap_or(0) as u64);
        let mut out: Vec<Trace> = self
            .by_sensor
            .into_iter()
            .filter_map(|(id, points)| {
                let s = registry.sensor(id.as_str())?;
                Some(Trace {
                    sensor: s.id.clone(),
                    site: s.site.clone(),
                    kind: s.kind.clone(),
                    unit: s.unit.clone(),
                    bucket,
                    points,
                })
            })
            .collect();
        out.sort_by(|a, b| a.sensor.cmp(&b.sensor));
        out
    }
}
