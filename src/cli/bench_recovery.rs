//! `riskwatch bench recovery`: how long the embedded wiring takes to come back after a crash,
//! and how long saving the rules host's state pauses the rules stage (docs/benchmarks.md,
//! "Exact recovery").
//!
//! On a registry of `--sensors` water-level gauges (a banded rule, a rate-of-rise rule and
//! quality checks with a stale test, so every sensor carries the state a real one does), it
//! drives the production [`RulesHost`] the way the rules stage does — site batches of 100
//! readings at `--rate` readings per (simulated) second, a clock tick every second — and:
//!
//! 1. **pause**: saves whenever [`RulesHost::snapshot_due`] says so, as the stage does, and
//!    reports the longest and median copy (`snapshot_changes`), against a whole copy;
//! 2. **recovery**: saves the state into a real state file, journals `--tail` of inputs into a
//!    real store without saving again (a crash after a long tail), then times what start-up
//!    does: open both files, load and assemble the state, restore the host, replay the journal.

use crate::embedded::recovery;
use anyhow::{Context, Result};
use clap::Args;
use riskwatch_core::{Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp, Value};
use riskwatch_rules::host::text_digest;
use riskwatch_rules::{Input, RulesHost};
use riskwatch_sinks::rule_state::{state_path, StateFile};
use riskwatch_sinks::sqlite::{SqliteStore, StoreItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `bench recovery`.
#[derive(Args)]
pub struct RecoveryArgs {
    /// Gauges in the registry.
    #[arg(long, default_value_t = 100_000)]
    sensors: usize,
    /// Readings per (simulated) second.
    #[arg(long, default_value_t = 100_000)]
    rate: usize,
    /// Length of the journal tail replayed at start-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    tail: Duration,
    /// A save is due once this many sensors changed (the pipeline's default if not given).
    #[arg(long)]
    max_changed: Option<usize>,
    /// Directory for the store and state files (a temporary one if not given).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
levels = { blue = "warning_level - 1.0", yellow = "warning_level", orange = "warning_level + 1.0", red = "warning_level + 2.0" }

[[rules]]
id = "water-level-rise"
applies_to = { kind = "water_level" }
levels = { yellow = "rate(1h) >= 0.5" }

[[quality]]
applies_to = { kind = "water_level" }
gross_range = { fail_min = 0.0, fail_max = 50.0 }
spike = { suspect = 0.3, fail = 1.0 }
stale = { intervals = 6 }
"#;

const PER_SITE: usize = 100;

fn registry_text(sensors: usize) -> String {
    let mut reg = String::with_capacity(sensors * 130);
    for s in 0..sensors.div_ceil(PER_SITE) {
        reg.push_str(&format!("[[sites]]\nid = \"site-{s}\"\n"));
    }
    for i in 0..sensors {
        reg.push_str(&format!(
            "[[sensors]]\nid = \"wl-{i}\"\nsite = \"site-{}\"\nkind = \"water_level\"\nunit = \"m\"\ninterval_s = 60\n\
             attributes = {{ warning_level = 10.0 }}\n",
            i / PER_SITE
        ));
    }
    reg
}

/// Feeds the host one simulated second: `rate` readings in site batches, then a tick.
struct Feed {
    sensors: usize,
    next: usize,
    /// Simulated processing time.
    clock: i64,
    ids: Vec<(SensorId, SiteId)>,
    unit: Arc<str>,
}

impl Feed {
    fn second(&mut self, rate: usize, mut each: impl FnMut(Input)) {
        let mut left = rate;
        while left > 0 {
            let n = left.min(PER_SITE);
            let mut readings = Vec::with_capacity(n);
            for _ in 0..n {
                let i = self.next % self.sensors;
                self.next += 1;
                let round = (self.next / self.sensors) as f64;
                let (sensor, site) = self.ids[i].clone();
                readings.push(Reading {
                    sensor,
                    site,
                    kind: SensorKind::WaterLevel,
                    ts: Timestamp(self.clock - 1_000 + (self.next % 1_000) as i64),
                    value: Value::Scalar(5.0 + 0.01 * (round % 7.0) + (i % 10) as f64 * 0.001),
                    unit: Arc::clone(&self.unit),
                    quality: Quality::Good,
                    exercise: false,
                });
            }
            each(Input::Readings { at: Timestamp(self.clock), readings });
            left -= n;
        }
        each(Input::Tick { at: Timestamp(self.clock) });
        self.clock += 1_000;
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: RecoveryArgs) -> Result<()> {
    let tmp = tempfile_dir(&args.dir)?;
    let dir = tmp.as_path();
    let registry_text = registry_text(args.sensors);
    let began = Instant::now();
    let registry = Arc::new(Registry::from_toml(&registry_text)?);
    let parse = began.elapsed();
    let digest = text_digest(&registry_text);
    let mut host = RulesHost::new(RULES, Arc::clone(&registry), &digest, None)?;
    if let Some(n) = args.max_changed {
        host.set_snapshot_policy(riskwatch_rules::host::DEFAULT_SNAPSHOT_EVERY_MS, n);
    }
    let ids: Vec<(SensorId, SiteId)> = (0..args.sensors)
        .map(|i| (SensorId::new(format!("wl-{i}")), SiteId::new(format!("site-{}", i / PER_SITE))))
        .collect();
    let mut feed = Feed { sensors: args.sensors, next: 0, clock: 1_780_000_000_000, ids, unit: Arc::from("m") };
    let mut out = Vec::new();
    // Every sensor gets history first (a few readings each), so each carries real state.
    let warm_seconds = (args.sensors * 4).div_ceil(args.rate.max(1));
    for _ in 0..warm_seconds {
        feed.second(args.rate, |mut i| {
            host.apply(&mut i, &mut out);
        });
    }
    host.snapshot_changes();
    let whole = {
        let t = Instant::now();
        let s = host.snapshot();
        let took = t.elapsed();
        drop(s);
        took
    };
    println!(
        "bench recovery: {} sensors, {} readings/s in site batches of {PER_SITE}, tail {}",
        args.sensors,
        args.rate,
        humantime::format_duration(args.tail)
    );
    println!("  registry parse {:.2} s; a whole copy of the state {:.1} ms", parse.as_secs_f64(), ms(whole));

    // 1. Pauses while running, saving as the rules stage does.
    let mut pauses: Vec<Duration> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    for _ in 0..60 {
        feed.second(args.rate, |mut i| {
            host.apply(&mut i, &mut out);
            if host.snapshot_due() {
                changed.push(host.engine().changed_sensors());
                let t = Instant::now();
                let delta = host.snapshot_changes();
                pauses.push(t.elapsed());
                drop(delta);
            }
        });
        out.clear();
    }
    pauses.sort();
    changed.sort();
    let median = pauses.get(pauses.len() / 2).copied().unwrap_or_default();
    println!(
        "  saves over 60 s: {}; copy pause median {:.2} ms, longest {:.2} ms; sensors per save median {}, most {}",
        pauses.len(),
        ms(median),
        ms(pauses.last().copied().unwrap_or_default()),
        changed.get(changed.len() / 2).copied().unwrap_or(0),
        changed.last().copied().unwrap_or(0)
    );

    // 2. A saved state, then a tail of journaled inputs with no save after it.
    let db = dir.join("store.db");
    let mut store = SqliteStore::open(&db)?;
    let mut state = StateFile::open(&state_path(&db))?;
    // A new state file: the first save writes every sensor.
    host.mark_all_changed();
    let saved_sensors = host.engine().changed_sensors();
    let delta = host.snapshot_changes();
    anyhow::ensure!(delta.full, "the first save into a new state file must be whole");
    let position = delta.snapshot.position;
    let rows = crate::embedded::rules_stage::state_rows(delta).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    state.save(position, rows)?;
    let saved_in = t.elapsed();
    let mut items = Vec::new();
    let mut journaled = 0usize;
    for _ in 0..args.tail.as_secs() {
        feed.second(args.rate, |mut i| {
            journaled += match &i {
                Input::Readings { readings, .. } => readings.len(),
                _ => 0,
            };
            items.push(StoreItem::Input { position: host.position() + 1, body: i.to_bytes() });
            host.apply(&mut i, &mut out);
        });
        out.clear();
        store.write(&items)?;
        items.clear();
    }
    let expected_open = host.engine().open_alerts().count();
    let expected_position = host.position();
    drop(host);
    drop(store);
    drop(state);
    let journal_mb = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
        + std::fs::metadata(dir.join("store.db-wal")).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "  saved state: {saved_sensors} sensors serialised and written in {:.2} s; journal tail: {journaled} readings, {journal_mb:.0} MB",
        saved_in.as_secs_f64()
    );

    // Where start-up's time goes (the same steps, apart).
    if std::env::var_os("BENCH_BREAKDOWN").is_some() {
        let t = Instant::now();
        let loaded = StateFile::open(&state_path(&db))?.load()?.context("saved state")?;
        let load = t.elapsed();
        let t = Instant::now();
        let meta: riskwatch_rules::HostSnapshot = serde_json::from_str(&loaded.meta)?;
        let sensors: Vec<riskwatch_rules::SensorState> =
            loaded.sensors.iter().map(|j| serde_json::from_str(j)).collect::<Result<_, _>>()?;
        let parse = t.elapsed();
        let t = Instant::now();
        let snap = riskwatch_rules::HostSnapshot { engine: meta.engine.with_sensors(sensors), ..meta };
        let assemble = t.elapsed();
        let t = Instant::now();
        let rec = RulesHost::recover(snap, Arc::clone(&registry), &digest, None)?;
        let restore = t.elapsed();
        drop(rec);
        println!(
            "  breakdown: load rows {:.2} s, parse {:.2} s, assemble {:.2} s, restore {:.2} s",
            load.as_secs_f64(),
            parse.as_secs_f64(),
            assemble.as_secs_f64(),
            restore.as_secs_f64()
        );
    }
    // What start-up does, timed.
    let t = Instant::now();
    let mut store = SqliteStore::open(&db)?;
    let state = StateFile::open(&state_path(&db))?;
    let recovered =
        recovery::recover(&mut store, &state, RULES, Arc::clone(&registry), &digest, Timestamp(feed.clock))?;
    let took = t.elapsed();
    anyhow::ensure!(
        recovered.host.position() == expected_position + 1,
        "recovered to position {} instead of {} (+ the restart's resume)",
        recovered.host.position(),
        expected_position
    );
    anyhow::ensure!(
        recovered.host.engine().open_alerts().count() == expected_open,
        "open alerts differ after recovery"
    );
    println!(
        "  recovery: {:.2} s (saved state + {journaled} journaled readings replayed; + {:.2} s to parse the registry)",
        took.as_secs_f64(),
        parse.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `dir`, or a new temporary directory (removed when the returned guard is dropped).
fn tempfile_dir(dir: &Option<PathBuf>) -> Result<TempDir> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            Ok(TempDir { path: d.clone(), remove: false })
        }
        None => {
            let path = std::env::temp_dir().join(format!("riskwatch-bench-recovery-{}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir { path, remove: true })
        }
    }
}

struct TempDir {
    path: PathBuf,
    remove: bool,
}

impl TempDir {
    fn as_path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
