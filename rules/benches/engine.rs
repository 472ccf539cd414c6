//! Rule-engine throughput and state size, on one core.
//!
//! `cargo bench -p riskwatch-rules --bench engine` builds a realistic deployment in code — 10 000
//! scalar sensors at 1 000 sites (per site five water-level gauges with warning / guaranteed /
//! record levels, three combustible-gas heads, two pressure tags), rules with four levels,
//! deadband, on/off-delays and a `rate(1h)` condition on water level — and feeds the engine
//! pre-generated readings: one per sensor per minute, round-robin, event time advancing, values
//! a slow sine wave plus noise (with rare glitches and stuck gauges) so alerts are raised,
//! escalated and cleared now and then. `now` is the reading's event time, as in a replay.
//! Generating readings is never timed.
//!
//! By default the readings go through [`Engine::replay_batch`] ten at a time — one gateway
//! message, a site's ten sensors — which is [`Engine::process`] per reading with the state of
//! the next readings prefetched; `--batch N` changes the batch size, `--batch 0` calls
//! [`Engine::process`] one reading at a time. Both give the same digest.
//!
//! Variants, reported separately:
//! - `hazard`: threshold + hysteresis + rate rules only (the figure the ≥ 5 M readings/s target
//!   is about);
//! - `hazard+quality`: plus a `[[quality]]` table per kind (gross range, spike, flat line);
//! - `full`: plus stale-sensor detection and a per-site composite roll-up.
//!
//! Each variant warms up on one hour of readings, then times five runs of [`READINGS_PER_RUN`]
//! readings and prints the median and best readings/s. A digest of every emitted event (ids,
//! levels, values, messages) and of the returned quality flags is printed too: the stream is
//! deterministic, so an optimisation that changes behaviour changes the digest.
//!
//! State size: a counting global allocator measures the heap the engine holds per sensor right
//! after [`Engine::new`] (registry and rules dropped, so sensor ids count against the engine)
//! and after one hour of readings (rate windows full, open alerts included), for 10 000 and
//! 100 000 sensors.
//!
//! Options after `--`: a variant name runs only that variant; `--sensors N` changes the sensor
//! count of the throughput runs; `--batch N` the readings per call (0: one at a time through
//! `process`); `--quick` shortens the runs (for profiling); `--no-size` skips the state-size
//! figures. Recorded results, with machine and date: `docs/benchmarks.md`.

use riskwatch_core::{AlertEvent, Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp, Value};
use riskwatch_rules::{Engine, RuleSet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts bytes currently allocated, so state size can be read off between two points.
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Sensors of the throughput runs (`--sensors N` to change).
const SENSORS: usize = 10_000;
/// Readings per timed run (`--quick`: a tenth, for profiling).
const READINGS_PER_RUN: usize = 2_000_000;
/// Timed runs per variant.
const RUNS: usize = 5;
/// Every sensor reports once per this interval.
const INTERVAL_MS: i64 = 60_000;
/// Rounds (one reading per sensor) in an hour.
const ROUNDS_PER_HOUR: u64 = (3_600_000 / INTERVAL_MS) as u64;
/// 2020-07-07T00:00:00Z, in the Yangtze flood season.
const T0: i64 = 1_594_080_000_000;
/// Readings per [`Engine::replay_batch`] call (`--batch N` to change, `--batch 0` for
/// [`Engine::process`] one reading at a time). Ten is one gateway message: a site's ten
/// sensors, which is what the round-robin stream has next to each other.
const BATCH: usize = 10;
/// The output vector is drained when it holds this many events.
const DRAIN_AT: usize = 1024;

/// Which parts of the rule set a run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Hazard,
    HazardQuality,
    Full,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Hazard => "hazard",
            Variant::HazardQuality => "hazard+quality",
            Variant::Full => "full",
        }
    }
}

/// SplitMix64: a deterministic stream of well-mixed numbers from a seed.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a seed.
fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// What a simulated sensor measures and how its signal moves.
enum Signal {
    /// Water level: slow sine (flood wave) around the warning level.
    Water { warning: f64, guaranteed: f64, record: f64, amplitude: f64 },
    /// Combustible gas: a low background with an occasional sharp plume.
    Gas { alarm_1: f64, alarm_2: f64, plume: f64 },
    /// Vessel pressure cycling below its maximum allowable working pressure.
    Pressure { mawp: f64, amplitude: f64 },
}

/// One simulated sensor.
struct SimSensor {
    id: SensorId,
    site: SiteId,
    kind: SensorKind,
    unit: Arc<str>,
    signal: Signal,
    period_ms: f64,
    phase: f64,
    /// Some gauges get stuck for an hour or two now and then.
    sticks: bool,
}

fn fleet(n: usize) -> Vec<SimSensor> {
    (0..n)
        .map(|i| {
            let u = |k: u64| unit((i as u64) << 8 | k);
            let site = SiteId::new(format!("site-{:05}", i / 10));
            let (prefix, kind, unit_name, signal, period_h) = match i % 10 {
                0..=4 => {
                    let warning = 5.0 + 25.0 * u(0);
                    let guaranteed = warning + 1.0 + u(1);
                    let signal = Signal::Water {
                        warning,
                        guaranteed,
                        record: guaranteed + 0.5 + 0.5 * u(2),
                        amplitude: 0.4 + 1.6 * u(3),
                    };
                    ("wl", SensorKind::WaterLevel, "m", signal, 6.0 + 18.0 * u(4))
                }
                5..=7 => {
                    let signal = Signal::Gas {
                        alarm_1: 20.0 + 5.0 * u(0),
                        alarm_2: 40.0 + 10.0 * u(1),
                        plume: 70.0 * u(2).powi(3),
                    };
                    ("gas", SensorKind::GasCombustible, "%LEL", signal, 2.0 + 8.0 * u(4))
                }
                _ => (
                    "p",
                    SensorKind::Pressure,
                    "kPa",
                    Signal::Pressure { mawp: 1000.0 + 1000.0 * u(0), amplitude: 50.0 + 150.0 * u(3) },
                    1.0 + 5.0 * u(4),
                ),
            };
            SimSensor {
                id: SensorId::new(format!("{prefix}-{i:06}")),
                site,
                kind,
                unit: Arc::from(unit_name),
                signal,
                period_ms: period_h * 3_600_000.0,
                phase: std::f64::consts::TAU * u(5),
                sticks: i % 487 == 0,
            }
        })
        .collect()
}

fn registry_toml(fleet: &[SimSensor]) -> String {
    let mut s = String::with_capacity(fleet.len() * 200);
    for site in 0..fleet.len().div_ceil(10) {
        let _ = writeln!(s, "[[sites]]\nid = \"site-{site:05}\"");
    }
    for f in fleet {
        let attrs = match f.signal {
            Signal::Water { warning, guaranteed, record, .. } => {
                format!("warning_level = {warning:.2}, guaranteed_level = {guaranteed:.2}, record_level = {record:.2}")
            }
            Signal::Gas { alarm_1, alarm_2, .. } => format!("alarm_1 = {alarm_1:.1}, alarm_2 = {alarm_2:.1}"),
            Signal::Pressure { mawp, .. } => format!("mawp = {mawp:.0}"),
        };
        let _ = writeln!(
            s,
            "[[sensors]]\nid = \"{}\"\nsite = \"{}\"\nkind = \"{}\"\nunit = \"{}\"\ninterval_s = 60\nattributes = {{ {attrs} }}",
            f.id, f.site, f.kind, f.unit
        );
    }
    s
}

const HAZARD_RULES: &str = r#"
[[rules]]
id = "water-level-bands"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
off_delay = { seconds = 900 }
levels = { blue = "warning_level - 0.3", yellow = ["warning_level", "rate(1h) >= 0.3"], orange = "guaranteed_level", red = "record_level" }

[[rules]]
id = "combustible-gas"
applies_to = { kind = "gas_combustible" }
deadband = 5.0
on_delay = { samples = 3 }
off_delay = { seconds = 60 }
precision = 1
levels = { blue = 10, yellow = "alarm_1", orange = "alarm_2", red = 100 }

[[rules]]
id = "vessel-pressure"
applies_to = { kind = "pressure" }
deadband = 5.0
on_delay = { seconds = 120 }
off_delay = { samples = 2 }
precision = 0
levels = { blue = "mawp - 100", yellow = "mawp - 60", orange = "mawp - 30", red = "mawp" }
"#;

const QUALITY: &str = r#"
[[quality]]
applies_to = { kind = "water_level" }
gross_range = { fail_min = 0.0, fail_max = 60.0 }
spike = { suspect = 0.5, fail = 1.5 }
flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }

[[quality]]
applies_to = { kind = "gas_combustible" }
gross_range = { fail_min = -1.0, fail_max = 100.0 }
spike = { suspect = 25.0, fail = 45.0 }
flat_line = { tolerance = 0.01, suspect_s = 1800, fail_s = 3600 }

[[quality]]
applies_to = { kind = "pressure" }
gross_range = { fail_min = 0.0, fail_max = "mawp + 500" }
spike = { suspect = 50.0, fail = 150.0 }
flat_line = { tolerance = 0.01, suspect_s = 3600, fail_s = 7200 }
"#;

const COMPOSITE: &str = r#"
[[composites]]
id = "site-rollup"
levels = { yellow = "count(>= yellow) >= 2", orange = "count(>= orange) >= 2", red = "any(>= red)" }
off_delay = { seconds = 600 }
"#;

fn rules_toml(variant: Variant) -> String {
    match variant {
        Variant::Hazard => HAZARD_RULES.to_string(),
        Variant::HazardQuality => format!("{HAZARD_RULES}{QUALITY}"),
        Variant::Full => format!(
            "{HAZARD_RULES}{}{COMPOSITE}",
            QUALITY.replace("[[quality]]\n", "[[quality]]\nstale = { intervals = 3 }\n")
        ),
    }
}

/// The reading of sensor `i` in round `round` (event time `T0 + round × interval`, staggered
/// across the interval by sensor so event time advances reading by reading).
fn reading(f: &SimSensor, i: usize, n: usize, round: u64) -> Reading {
    let ts = T0 + round as i64 * INTERVAL_MS + (i as i64 * INTERVAL_MS) / n as i64;
    let seed = (round << 24) ^ i as u64 ^ 0x5eed_0000_0000_0000;
    let noise = unit(seed) - 0.5;
    let angle = std::f64::consts::TAU * (ts - T0) as f64 / f.period_ms + f.phase;
    let stuck_round = f.sticks && (round / 90) % 3 == 1;
    let glitch = mix(seed ^ 0x0911_7c40) % 50_000 == 0;
    let v = match f.signal {
        Signal::Water { warning, amplitude, .. } => {
            if stuck_round {
                warning - 1.0
            } else {
                warning - 0.8 + amplitude * angle.sin() + 0.02 * noise + if glitch { 3.0 } else { 0.0 }
            }
        }
        Signal::Gas { plume, .. } => {
            (2.0 + noise + plume * angle.sin().max(0.0).powi(16)).max(0.0) + if glitch { 50.0 } else { 0.0 }
        }
        Signal::Pressure { mawp, amplitude } => {
            if stuck_round {
                mawp - 300.0
            } else {
                mawp - 150.0 + amplitude * angle.sin() + 2.0 * noise + if glitch { 400.0 } else { 0.0 }
            }
        }
    };
    Reading {
        sensor: f.id.clone(),
        site: f.site.clone(),
        kind: f.kind.clone(),
        ts: Timestamp(ts),
        value: Value::Scalar(v),
        unit: Arc::clone(&f.unit),
        quality: Quality::NotEvaluated,
        exercise: false,
    }
}

/// Refills `out` with rounds `from..from + rounds` of every sensor.
fn fill(out: &mut Vec<Reading>, fleet: &[SimSensor], from: u64, rounds: u64) {
    out.clear();
    for round in from..from + rounds {
        out.extend(fleet.iter().enumerate().map(|(i, f)| reading(f, i, fleet.len(), round)));
    }
}

/// FNV-1a over everything a sink would see of the events, plus the returned flags.
#[derive(Default)]
struct Digest {
    hash: u64,
    events: u64,
    flags: [u64; 5],
    /// Readings during which the heap was touched although no event was emitted.
    quiet_allocating: u64,
}

impl Digest {
    fn feed(&mut self, bytes: &[u8]) {
        let mut h = if self.hash == 0 { 0xcbf2_9ce4_8422_2325 } else { self.hash };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.hash = h;
    }

    fn events(&mut self, out: &mut Vec<AlertEvent>) {
        for e in out.drain(..) {
            self.events += 1;
            for s in [
                e.event_id.as_str(),
                &e.rule_id,
                e.subject.as_str(),
                e.site.as_str(),
                e.change.as_str(),
                e.level.as_str(),
                &e.unit,
                &e.message_zh,
                &e.message_en,
            ] {
                self.feed(s.as_bytes());
            }
            for x in [
                e.ts.millis(),
                e.first_ts.millis(),
                e.value.to_bits() as i64,
                e.threshold.to_bits() as i64,
                i64::from(e.seq),
            ] {
                self.feed(&x.to_le_bytes());
            }
        }
    }

    fn flag(&mut self, q: Quality) {
        let i = match q {
            Quality::Good => 0,
            Quality::NotEvaluated => 1,
            Quality::Suspect => 2,
            Quality::Fail => 3,
            Quality::Missing => 4,
        };
        self.flags[i] += 1;
    }
}

/// How readings are handed to the engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// [`Engine::process`], one reading at a time.
    PerReading,
    /// [`Engine::replay_batch`] on consecutive slices of this many readings.
    Batch(usize),
}

impl Mode {
    fn describe(self) -> String {
        match self {
            Mode::PerReading => "Engine::process, one reading at a time".into(),
            Mode::Batch(n) => format!("Engine::replay_batch, {n} readings per call"),
        }
    }
}

/// Feeds a slice of readings, draining events into the digest; returns the elapsed seconds.
/// The batch calls store each reading's flag in its `quality`, which is read back from there.
fn feed(
    engine: &mut Engine,
    readings: &mut [Reading],
    out: &mut Vec<AlertEvent>,
    digest: &mut Digest,
    mode: Mode,
) -> f64 {
    let start = Instant::now();
    match mode {
        Mode::PerReading => {
            for r in readings.iter() {
                let (events_before, allocations_before) = (out.len(), ALLOCATIONS.load(Ordering::Relaxed));
                let q = engine.process(black_box(r), r.ts, out);
                if out.len() == events_before && ALLOCATIONS.load(Ordering::Relaxed) != allocations_before {
                    digest.quiet_allocating += 1;
                }
                digest.flag(q);
                if out.len() >= DRAIN_AT {
                    digest.events(out);
                }
            }
        }
        Mode::Batch(n) => {
            for batch in readings.chunks_mut(n) {
                let (events_before, allocations_before) = (out.len(), ALLOCATIONS.load(Ordering::Relaxed));
                engine.replay_batch(black_box(batch), out);
                if out.len() == events_before && ALLOCATIONS.load(Ordering::Relaxed) != allocations_before {
                    digest.quiet_allocating += 1;
                }
                for r in batch.iter() {
                    digest.flag(r.quality);
                }
                if out.len() >= DRAIN_AT {
                    digest.events(out);
                }
            }
        }
    }
    digest.events(out);
    start.elapsed().as_secs_f64()
}

fn throughput(variant: Variant, sensors: usize, per_run: usize, mode: Mode) {
    let mut fleet = fleet(sensors);
    let registry = Registry::from_toml(&registry_toml(&fleet)).expect("generated registry is valid");
    let rules = RuleSet::from_toml(&rules_toml(variant)).expect("bench rules are valid");
    let mut engine = Engine::new(&rules, &registry).expect("bench rules fit the registry");
    // Readings carry the registry's ids, site ids and units, as the wire decoder's do.
    for f in &mut fleet {
        let s = registry.sensor(f.id.as_str()).expect("every simulated sensor is registered");
        (f.id, f.site, f.unit) = (s.id.clone(), s.site.clone(), Arc::clone(&s.unit));
    }
    let mut readings = Vec::new();
    let mut out = Vec::with_capacity(DRAIN_AT + 64);
    let mut digest = Digest::default();
    // Warm-up: one hour, so rate windows are full and caches warm.
    fill(&mut readings, &fleet, 0, ROUNDS_PER_HOUR);
    feed(&mut engine, &mut readings, &mut out, &mut digest, mode);
    let rounds = (per_run / sensors) as u64;
    let mut next = ROUNDS_PER_HOUR;
    let mut rates = Vec::new();
    let warm = std::mem::take(&mut digest.quiet_allocating);
    for _ in 0..RUNS {
        fill(&mut readings, &fleet, next, rounds);
        next += rounds;
        let secs = feed(&mut engine, &mut readings, &mut out, &mut digest, mode);
        rates.push(readings.len() as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    let stats = engine.stats();
    println!(
        "{:<15} median {:>6.3} M readings/s   best {:>6.3} M readings/s   runs [{}] M/s",
        variant.name(),
        rates[RUNS / 2] / 1e6,
        rates[RUNS - 1] / 1e6,
        rates.iter().map(|r| format!("{:.3}", r / 1e6)).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<15} {} readings, {} events (digest {:016x}), flags good/not-evaluated/suspect/fail/missing {:?}, bindings {}",
        "",
        stats.readings,
        digest.events,
        digest.hash,
        digest.flags,
        engine.binding_count()
    );
    println!(
        "{:<15} {} that allocated without emitting an event: {warm} in the warm-up hour, {} in the timed runs",
        "",
        if mode == Mode::PerReading { "readings" } else { "batches" },
        digest.quiet_allocating
    );
}

fn state_size(n: usize, variant: Variant) {
    let fleet = fleet(n);
    let registry_text = registry_toml(&fleet);
    // Here the registry is dropped once the engine is built, so the ids the engine keeps are
    // counted against it.
    let rules_text = rules_toml(variant);
    let base = live_bytes();
    let registry_bytes;
    let mut engine = {
        let registry = Registry::from_toml(&registry_text).expect("generated registry is valid");
        registry_bytes = live_bytes() - base;
        let rules = RuleSet::from_toml(&rules_text).expect("bench rules are valid");
        Engine::new(&rules, &registry).expect("bench rules fit the registry")
    };
    let built = live_bytes() - base;
    let mut digest = Digest::default();
    // One hour in ten-minute chunks, so the readings buffer stays small.
    let mut readings = Vec::new();
    let mut out = Vec::new();
    for chunk in 0..6 {
        fill(&mut readings, &fleet, chunk * ROUNDS_PER_HOUR / 6, ROUNDS_PER_HOUR / 6);
        feed(&mut engine, &mut readings, &mut out, &mut digest, Mode::PerReading);
    }
    drop(readings);
    drop(out);
    let filled = live_bytes() - base;
    let open = engine.open_alerts().count();
    println!(
        "{:<15} {n:>7} sensors: {:>5.0} B/sensor after build, {:>5.0} B/sensor after 1 h ({open} open alerts; Engine itself {} B); the registry itself {:.0} B/sensor",
        variant.name(),
        built as f64 / n as f64,
        filled as f64 / n as f64,
        std::mem::size_of::<Engine>(),
        registry_bytes as f64 / n as f64
    );
    // Saving the state (what the embedded pipeline does every few seconds and a Kafka-path
    // rules worker at every commit point): the copy (`Engine::snapshot`, taken where readings
    // wait), its serialisation to JSON (the embedded store does that on its own thread), the
    // bytes written, and the heap the copy holds.
    let (mut copy_ms, mut json_ms) = (Vec::new(), Vec::new());
    let (mut size, mut copy_bytes) = (0, 0);
    for _ in 0..5 {
        let before = live_bytes();
        let t = Instant::now();
        let copy = engine.snapshot();
        copy_ms.push(t.elapsed().as_secs_f64() * 1e3);
        copy_bytes = live_bytes() - before;
        let t = Instant::now();
        let text = serde_json::to_vec(&copy).expect("state serialises");
        json_ms.push(t.elapsed().as_secs_f64() * 1e3);
        size = text.len();
        black_box((copy, text));
    }
    copy_ms.sort_by(f64::total_cmp);
    json_ms.sort_by(f64::total_cmp);
    println!(
        "{:<15} {n:>7} sensors: saving the state: copy {:.1} ms ({:.0} ns per sensor, {:.0} B per sensor), to JSON {:.1} ms, {:.0} B per sensor (medians of 5)",
        variant.name(),
        copy_ms[2],
        copy_ms[2] * 1e6 / n as f64,
        copy_bytes as f64 / n as f64,
        json_ms[2],
        size as f64 / n as f64,
    );
    drop(engine);
}

fn main() {
    // `cargo bench` passes `--bench`. `-- --quick` shortens the runs and skips 100 000 sensors;
    // `-- hazard` (or another variant name) runs only that variant; `-- --sensors N` changes
    // the throughput runs' sensor count; `-- --no-size` skips the state-size figures.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> =
        args.iter().filter(|a| !a.starts_with("--") && a.parse::<usize>().is_err()).map(String::as_str).collect();
    let variants: Vec<Variant> = [Variant::Hazard, Variant::HazardQuality, Variant::Full]
        .into_iter()
        .filter(|v| only.is_empty() || only.contains(&v.name()))
        .collect();
    let per_run = if quick { READINGS_PER_RUN / 10 } else { READINGS_PER_RUN };
    let sensors =
        args.iter().position(|a| a == "--sensors").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(SENSORS);
    let mode = match args.iter().position(|a| a == "--batch").and_then(|i| args.get(i + 1)?.parse::<usize>().ok()) {
        Some(0) => Mode::PerReading,
        Some(n) => Mode::Batch(n),
        None => Mode::Batch(BATCH),
    };
    println!(
        "riskwatch-rules engine benchmark: {sensors} sensors, {RUNS} runs of {per_run} readings after a 1 h warm-up, one thread, {}",
        mode.describe()
    );
    for variant in &variants {
        throughput(*variant, sensors, per_run, mode);
    }
    if args.iter().any(|a| a == "--no-size") {
        return;
    }
    println!("state per sensor (heap held by the engine, counted by the global allocator):");
    for n in if quick { &[10_000][..] } else { &[10_000, 100_000][..] } {
        for variant in &variants {
            state_size(*n, *variant);
        }
    }
}
