//! The SQLite store's writer on one thread: `cargo bench -p riskwatch-sinks --bench store`.
//!
//! What `riskwatch run` writes under single-reading load (docs/benchmarks.md, part 2b): 10 000
//! water-level gauges in 100 sites; commits of `COMMIT` readings, each with its input-journal
//! entry (the readings as the rules host encodes them) — the items the embedded pipeline hands
//! the store. Two arrival orders:
//! - **live**: two gateways, each stamping its own round of readings (`riskwatch bench load`),
//!   their messages interleaved;
//! - **timed reports**: every gauge stamped on the same instant (RTUs reporting on the minute),
//!   the 100 sites' messages interleaved in a scrambled order.
//!
//! The store is on a fresh file in the system's temporary directory with the defaults of
//! `riskwatch run` (`synchronous = FULL`, 16 KiB pages). Prints the writer thread's CPU time per
//! reading (insert, journal, commit and its sync) and wall time, median of five runs of
//! `READINGS` readings each; building the readings is not timed. Recorded results with machine
//! and date: docs/benchmarks.md.

use riskwatch_core::{Quality, Reading, Registry, Timestamp, Value};
use riskwatch_rules::Input;
use riskwatch_sinks::sqlite::{SqliteStore, StoreItem, Synchronous};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

const SITES: usize = 100;
const PER_SITE: usize = 100;
const READINGS: usize = 310_000;
/// Readings per commit: what the store groups under 100 000 single-reading messages/s.
const COMMIT: usize = 270;

fn registry() -> Registry {
    let mut t = String::new();
    for s in 0..SITES {
        let _ = writeln!(t, "[[sites]]\nid = \"site-{s:03}\"");
        for g in 0..PER_SITE {
            let _ = writeln!(
                t,
                "[[sensors]]\nid = \"site-{s:03}-wl-{g:03}\"\nsite = \"site-{s:03}\"\nkind = \"water_level\"\nunit = \"m\""
            );
        }
    }
    Registry::from_toml(&t).expect("bench registry")
}

#[derive(Clone, Copy)]
enum Order {
    Live,
    Timed,
}

/// Readings in the order the pipeline receives them (see the module).
fn arrivals(registry: &Registry, order: Order) -> Vec<Reading> {
    let mut out = Vec::with_capacity(READINGS);
    let ts0 = 1_796_000_000_000i64;
    let mut round = 0i64;
    while out.len() < READINGS {
        // (site, stamp) of each message slot of the round, in arrival order per gauge index.
        let sites: Vec<(usize, i64)> = match order {
            Order::Live => (0..SITES).map(|s| (s, ts0 + round * 10 + (s % 2) as i64)).collect(),
            // A fixed scramble of the sites (multiplying by a number prime to 100).
            Order::Timed => (0..SITES).map(|k| ((k * 37 + round as usize) % SITES, ts0 + round * 60_000)).collect(),
        };
        for g in 0..PER_SITE {
            for &(s, ts) in &sites {
                let id = format!("site-{s:03}-wl-{g:03}");
                let sensor = registry.sensor(&id).expect("registered");
                out.push(Reading {
                    sensor: sensor.id.clone(),
                    site: sensor.site.clone(),
                    kind: sensor.kind.clone(),
                    ts: Timestamp(ts),
                    value: Value::Scalar(20.0 + ((round as usize + g) % 7) as f64 * 0.1),
                    unit: Arc::clone(&sensor.unit),
                    quality: Quality::Good,
                    exercise: false,
                });
            }
        }
        round += 1;
    }
    out.truncate(READINGS);
    out
}

fn thread_cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn main() {
    let registry = registry();
    for (name, order) in [("live", Order::Live), ("timed reports", Order::Timed)] {
        let readings = arrivals(&registry, order);
        let (cpu, wall) = measure(&readings);
        println!(
            "store writer, {name}: {READINGS} readings in commits of {COMMIT} with their journal entries: median {:.3} µs CPU per reading (best {:.3}), {:.3} µs wall",
            cpu[2], cpu[0], wall[2]
        );
    }
}

/// Five runs on fresh stores: CPU and wall µs per reading, each sorted.
fn measure(readings: &[Reading]) -> (Vec<f64>, Vec<f64>) {
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut store = SqliteStore::open_with(&dir.path().join("store.db"), Synchronous::Full).expect("store");
        // The commits, built before the clock starts.
        let commits: Vec<Vec<StoreItem>> = readings
            .chunks(COMMIT)
            .enumerate()
            .map(|(i, chunk)| {
                let input = Input::Readings { at: Timestamp(1_796_000_000_000), readings: chunk.to_vec() };
                vec![
                    StoreItem::Input { position: i as u64 + 1, body: input.to_bytes() },
                    StoreItem::Readings(chunk.to_vec()),
                ]
            })
            .collect();
        let (c0, w0) = (thread_cpu(), Instant::now());
        for items in &commits {
            store.write(items).expect("commit");
        }
        let (c, w) = (thread_cpu() - c0, w0.elapsed().as_secs_f64());
        let n = readings.len() as f64;
        cpu.push(c / n * 1e6);
        wall.push(w / n * 1e6);
    }
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    (cpu, wall)
}
