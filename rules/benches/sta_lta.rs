//! STA/LTA throughput: samples per second on one core, streaming in 1-s packets of 100 samples
//! (how terminals publish) and in 10-s blocks, for the recursive and the classic filter, and
//! for the seismologist's chain: a 4-corner Butterworth band-pass (1–20 Hz, ObsPy `bandpass`
//! design) followed by the recursive STA/LTA, as the `sta_lta` measure runs it.
//!
//! Run: `cargo bench -p riskwatch-rules --bench sta_lta`. ObsPy's speed on the same data:
//! `python3 scripts/obspy_bench.py` (docs/benchmarks.md §3).

use riskwatch_rules::detectors::butterworth::{Band, SosFilter};
use riskwatch_rules::detectors::sta_lta::{ClassicStaLta, RecursiveStaLta};
use std::hint::black_box;
use std::time::Instant;

const SAMPLES: usize = 20_000_000;

fn signal() -> Vec<f64> {
    // Deterministic noise with a burst every 60 s, at 100 Hz.
    let mut seed: u64 = 42;
    (0..SAMPLES)
        .map(|i| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let n = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let burst = if i % 6000 < 300 { 20.0 } else { 1.0 };
            n * burst
        })
        .collect()
}

fn measure(name: &str, packet: usize, mut run: impl FnMut(&[f64], &mut Vec<f64>), x: &[f64]) {
    let mut out = Vec::with_capacity(packet);
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for chunk in x.chunks(packet) {
            out.clear();
            run(chunk, &mut out);
            black_box(out.last());
        }
        rates.push(x.len() as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<34} packet {packet:>5}: median {:>7.1} M samples/s, best {:>7.1} M samples/s",
        rates[2] / 1e6,
        rates[4] / 1e6
    );
}

/// Nanoseconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`), so a rate
/// per CPU-second can be told apart from a machine shared with other work.
fn cpu_ns() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Like [`measure`], for an in-place chain (filter, then ratio) on a copy of each packet; also
/// the rate per second of CPU time the thread was given.
fn measure_in_place(name: &str, packet: usize, mut run: impl FnMut(&mut [f64]), x: &[f64]) {
    let mut buf = vec![0.0; packet];
    let (mut rates, mut cpu_rates) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (t, cpu) = (Instant::now(), cpu_ns());
        for chunk in x.chunks(packet) {
            let b = &mut buf[..chunk.len()];
            b.copy_from_slice(chunk);
            run(b);
            black_box(b.last());
        }
        rates.push(x.len() as f64 / t.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu, cpu_ns()) {
            cpu_rates.push(x.len() as f64 / ((after - before) / 1e9));
        }
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    cpu_rates.sort_by(|a, b| a.total_cmp(b));
    let per_cpu = match cpu_rates.len() {
        5 => format!(", per CPU-second median {:>7.1} M", cpu_rates[2] / 1e6),
        _ => String::new(),
    };
    println!(
        "{name:<34} packet {packet:>5}: median {:>7.1} M samples/s, best {:>7.1} M samples/s{per_cpu}",
        rates[2] / 1e6,
        rates[4] / 1e6
    );
}

fn main() {
    let x = signal();
    for packet in [100, 1000] {
        let band = Band::Bandpass { freqmin: 1.0, freqmax: 20.0 };
        let mut pre = SosFilter::design(band, 4, 100.0).expect("valid band");
        let mut rec = RecursiveStaLta::new(50, 1000).expect("valid windows");
        measure_in_place("bandpass 1-20 Hz c4 + recursive", packet, |b| pre.process_with(b, rec.stepper()), &x);
        let mut pre = SosFilter::design(band, 4, 100.0).expect("valid band");
        measure_in_place("bandpass 1-20 Hz c4 alone", packet, |b| pre.process_in_place(b), &x);
        let mut rec = RecursiveStaLta::new(50, 1000).expect("valid windows");
        measure_in_place("recursive alone (in place)", packet, |b| rec.process_in_place(b), &x);
    }
    for packet in [100, 1000] {
        let mut rec = RecursiveStaLta::new(50, 1000).expect("valid windows");
        measure("recursive STA/LTA 0.5 s / 10 s", packet, |c, o| rec.process(c, o), &x);
        let mut cls = ClassicStaLta::new(500, 1000).expect("valid windows");
        measure("classic STA/LTA 5 s / 10 s", packet, |c, o| cls.process(c, o), &x);
    }
}
