//! A hindcast: time-ordered readings through the production [`Engine`], in event time
//! (`Engine::replay_batch`: each reading's own time is the engine's clock), as fast as possible
//! or paced at a speed factor, with a progress line and per-sensor traces for the plots.

use crate::{Outcome, Trace, TracePoint};
use anyhow::{Context, Result};
use riskwatch_core::{AlertEvent, Reading, Registry, SensorId, Timestamp, Value};
use riskwatch_rules::{Engine, RuleSet};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Event time per wall time (3600 = an hour per second); `None` = as fast as possible.
    pub speed: Option<f64>,
    /// A progress bar on stderr (indicatif; drawn only when stderr is a terminal).
    pub progress: bool,
    /// Bucket of the traces kept for plots; `None` = no traces.
    pub trace_bucket: Option<Duration>,
    /// Engines to split the sites over (0 or 1 = one, on the calling thread).
    pub jobs: usize,
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
    run_with(readings, Vec::new(), rules, registry, opts)
}

/// [`run`] with forecasts, each run at its issue time ([`Hindcast::with_forecasts`]).
pub fn run_with(
    readings: &[Reading],
    forecasts: Vec<riskwatch_core::Forecast>,
    rules: &RuleSet,
    registry: &Registry,
    opts: &RunOptions,
) -> Result<Outcome> {
    let mut h = Hindcast::new(rules, registry, opts)?.with_forecasts(forecasts)?;
    h.total = Some(readings.len() as u64);
    for chunk in readings.chunks(4096) {
        h.feed(chunk.to_vec());
    }
    h.finish()
}

/// How often the progress bar's numbers are updated.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// `replay [#########---------]  36 %  at 2020-01-08T02:35:00+08:00  409600 readings  203998/s`,
/// in thousandths of the input.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(1000), indicatif::ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = indicatif::ProgressStyle::with_template("replay [{bar:30}] {percent:>3} %  {msg}") {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar
}

/// A hindcast fed batch by batch (so a large file can stream through it).
pub struct Hindcast<'a> {
    registry: &'a Registry,
    lanes: Lanes,
    traces: Traces,
    pacer: Option<Pacer>,
    began: Instant,
    last_progress: Instant,
    progress: Option<indicatif::ProgressBar>,
    readings: u64,
    span: Option<(Timestamp, Timestamp)>,
    /// Readings expected in all (for the progress bar), if known.
    pub total: Option<u64>,
    /// Fraction of the input done, if the reader knows it better than `total` (a streamed file).
    pub done: Option<f64>,
    /// Forecasts still to run, in issue-time order ([`Hindcast::with_forecasts`]).
    forecasts: std::collections::VecDeque<riskwatch_core::Forecast>,
}

/// One engine on this thread, or one per worker thread, each over the sites of its lane.
enum Lanes {
    One(Box<Engine>, Vec<AlertEvent>),
    Many(Vec<Lane>),
}

/// A worker thread's input and the events it returns when its input closes.
type Lane = (std::sync::mpsc::SyncSender<Vec<Reading>>, std::thread::JoinHandle<Vec<AlertEvent>>);

impl<'a> Hindcast<'a> {
    /// A hindcast with fresh engines. With `opts.jobs > 1` (and no pacing) the sites are split
    /// over that many engines on their own threads, as the Kafka path splits them over
    /// partitions: the same events, except for rules that combine sites (network-scope
    /// composites), which then only see the sites of their lane.
    pub fn new(rules: &RuleSet, registry: &'a Registry, opts: &RunOptions) -> Result<Self> {
        let pacer = opts.speed.filter(|s| s.is_finite() && *s > 0.0).map(Pacer::new);
        let jobs = if pacer.is_some() { 1 } else { opts.jobs.max(1) };
        let lanes = if jobs == 1 {
            Lanes::One(Box::new(Engine::new(rules, registry).context("the rules do not fit the registry")?), Vec::new())
        } else {
            let mut lanes = Vec::new();
            for lane in 0..jobs {
                let part = registry.retain_sites(|s| lane_of(s.as_str(), jobs) == lane);
                let mut engine = Engine::new(rules, &part).context("the rules do not fit the registry")?;
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Reading>>(4);
                let handle = std::thread::spawn(move || {
                    let mut events = Vec::new();
                    for mut batch in rx {
                        engine.replay_batch(&mut batch, &mut events);
                    }
                    events
                });
                lanes.push((tx, handle));
            }
            Lanes::Many(lanes)
        };
        Ok(Hindcast {
            registry,
            lanes,
            traces: Traces::new(opts.trace_bucket),
            pacer,
            began: Instant::now(),
            last_progress: Instant::now(),
            progress: opts.progress.then(progress_bar),
            readings: 0,
            span: None,
            total: None,
            done: None,
            forecasts: Default::default(),
        })
    }

    /// Runs `forecasts` too, each at its issue time, before the readings of that time (one
    /// engine only: forecasts are not split over lanes).
    pub fn with_forecasts(mut self, mut forecasts: Vec<riskwatch_core::Forecast>) -> Result<Self> {
        if matches!(self.lanes, Lanes::Many(_)) && !forecasts.is_empty() {
            anyhow::bail!("forecasts run on one engine: leave out --jobs");
        }
        forecasts.sort_by_key(|f| f.issued);
        self.forecasts = forecasts.into();
        Ok(self)
    }

    /// Applies the forecasts issued at or before `until` (all with `None`).
    fn forecasts_until(&mut self, until: Option<Timestamp>) {
        let Lanes::One(engine, events) = &mut self.lanes else { return };
        while let Some(f) = self.forecasts.front().filter(|f| until.is_none_or(|u| f.issued <= u)) {
            engine.forecast(f, f.issued, events);
            self.forecasts.pop_front();
        }
    }

    /// Runs the next batch (event-time order continues from the previous one).
    pub fn feed(&mut self, mut batch: Vec<Reading>) {
        // Forecasts go in at their issue time: the batch is cut before each.
        while let Some(issued) = self.forecasts.front().map(|f| f.issued) {
            let cut = batch.partition_point(|r| r.ts < issued);
            if cut == batch.len() {
                break;
            }
            let rest = batch.split_off(cut);
            self.feed_readings(batch);
            self.forecasts_until(Some(issued));
            batch = rest;
        }
        self.feed_readings(batch);
    }

    fn feed_readings(&mut self, mut batch: Vec<Reading>) {
        let (Some(first), Some(last)) = (batch.first().map(|r| r.ts), batch.last().map(|r| r.ts)) else { return };
        self.span = Some(self.span.map_or((first, last), |(a, _)| (a, last)));
        self.readings += batch.len() as u64;
        self.traces.add(&batch);
        match &mut self.lanes {
            Lanes::One(engine, events) => match self.pacer.as_mut() {
                Some(p) => {
                    for r in batch.chunks_mut(1) {
                        p.wait_for(r[0].ts);
                        engine.replay_batch(r, events);
                    }
                }
                None => engine.replay_batch(&mut batch, events),
            },
            Lanes::Many(lanes) => {
                let n = lanes.len();
                let mut parts: Vec<Vec<Reading>> = (0..n).map(|_| Vec::with_capacity(batch.len() / n + 16)).collect();
                for r in batch {
                    parts[lane_of(r.site.as_str(), n)].push(r);
                }
                for ((tx, _), part) in lanes.iter().zip(parts) {
                    if !part.is_empty() {
                        // A lane only stops by panicking, which `finish` reports.
                        let _ = tx.send(part);
                    }
                }
            }
        }
        if let Some(bar) = self.progress.as_ref().filter(|_| self.last_progress.elapsed() >= PROGRESS_EVERY) {
            self.last_progress = Instant::now();
            let rate = self.readings as f64 / self.began.elapsed().as_secs_f64().max(1e-9);
            let done = self.done.or(self.total.map(|t| self.readings as f64 / t.max(1) as f64));
            if let Some(d) = done {
                bar.set_position((d.clamp(0.0, 1.0) * 1000.0).round() as u64);
            }
            bar.set_message(format!("at {}  {} readings  {rate:.0}/s", last.to_rfc3339_cst(), self.readings));
        }
    }

    /// Ends the run.
    pub fn finish(mut self) -> Result<Outcome> {
        self.forecasts_until(None);
        if let Some(bar) = &self.progress {
            bar.finish();
        }
        let events = match self.lanes {
            Lanes::One(_, events) => events,
            Lanes::Many(lanes) => {
                let mut all = Vec::new();
                for (tx, handle) in lanes {
                    drop(tx);
                    all.extend(handle.join().map_err(|_| anyhow::anyhow!("a replay engine thread panicked"))?);
                }
                // Each lane's events are in event-time order; merge them (stable).
                all.sort_by_key(|e| e.ts);
                all
            }
        };
        Ok(Outcome {
            events,
            traces: self.traces.finish(self.registry),
            readings: self.readings,
            rejected: Vec::new(),
            span: self.span,
            wall: self.began.elapsed(),
        })
    }
}

/// The lane of a site (FNV-1a of its id).
fn lane_of(site: &str, lanes: usize) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in site.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % lanes.max(1)
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
