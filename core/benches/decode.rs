//! Wire-decoder throughput on one core: `cargo bench -p riskwatch-core --bench decode`.
//!
//! Payloads as gateways send them: site batches of 100 readings (one per water-level gauge of
//! the site, epoch-millisecond timestamps, the shape `riskwatch bench load` publishes), plus
//! single readings on a sensor topic, GNSS displacement batches and a 3-channel 100 Hz seismic
//! packet. Each case decodes a pre-built set of payloads against a 10 000-sensor registry for
//! five timed runs and prints the median and best readings/s (payloads/s for waveforms).
//! Building payloads is never timed; every run checks that each payload decoded completely.
//! Recorded results, with machine and date: `docs/benchmarks.md`.

use riskwatch_core::wire::{decode, Limits};
use riskwatch_core::Registry;
use std::fmt::Write;
use std::time::Instant;

const SITES: usize = 100;
const PER_SITE: usize = 100;

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
        let _ = writeln!(
            t,
            "[[sensors]]\nid = \"site-{s:03}-gnss\"\nsite = \"site-{s:03}\"\nkind = \"gnss_displacement\"\nunit = \"mm\""
        );
        let _ = writeln!(
            t,
            "[[sensors]]\nid = \"site-{s:03}-seis\"\nsite = \"site-{s:03}\"\nkind = \"seismic_acceleration\"\nunit = \"gal\""
        );
    }
    Registry::from_toml(&t).expect("bench registry")
}

struct Case {
    name: &'static str,
    unit: &'static str,
    /// (topic, payload, readings it holds)
    payloads: Vec<(String, Vec<u8>, usize)>,
}

fn cases() -> Vec<Case> {
    let ts0: i64 = 1_780_000_000_000;
    let mut batches = Vec::new();
    let mut singles = Vec::new();
    let mut gnss = Vec::new();
    let mut seis = Vec::new();
    for round in 0..10 {
        for s in 0..SITES {
            let ts = ts0 + round * 1000 + s as i64;
            let mut body = String::from("{\"v\":1,\"readings\":[");
            for g in 0..PER_SITE {
                if g > 0 {
                    body.push(',');
                }
                let value = 20.0 + (g as f64) * 0.013 + (round as f64) * 0.001;
                let _ = write!(
                    body,
                    "{{\"sensor\":\"site-{s:03}-wl-{g:03}\",\"kind\":\"water_level\",\"ts\":{ts},\"unit\":\"m\",\"value\":{value:.3}}}"
                );
            }
            body.push_str("]}");
            batches.push((format!("riskwatch/v1/readings/site-{s:03}"), body.into_bytes(), PER_SITE));
            let single = format!(
                "{{\"v\":1,\"kind\":\"water_level\",\"ts\":\"2026-06-01T08:00:{:02}.000+08:00\",\"unit\":\"m\",\"value\":27.{s:02},\"quality\":1}}",
                round
            );
            singles.push((format!("riskwatch/v1/readings/site-{s:03}/site-{s:03}-wl-007"), single.into_bytes(), 1));
            let mut body = String::from("{\"v\":1,\"readings\":[");
            for k in 0..10 {
                if k > 0 {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    "{{\"sensor\":\"site-{s:03}-gnss\",\"kind\":\"gnss_displacement\",\"ts\":{},\"unit\":\"mm\",\"value\":{{\"e\":1.{k},\"n\":-2.{k},\"u\":0.{k}}}}}",
                    ts + k
                );
            }
            body.push_str("]}");
            gnss.push((format!("riskwatch/v1/readings/site-{s:03}"), body.into_bytes(), 10));
            if s % 10 == 0 {
                let mut body =
                    format!("{{\"v\":1,\"kind\":\"seismic_acceleration\",\"ts\":{ts},\"unit\":\"gal\",\"value\":{{\"rate_hz\":100,\"channels\":{{");
                for (c, ch) in ["e", "n", "z"].iter().enumerate() {
                    if c > 0 {
                        body.push(',');
                    }
                    let _ = write!(body, "\"{ch}\":[");
                    for i in 0..100 {
                        if i > 0 {
                            body.push(',');
                        }
                        let _ = write!(body, "{:.4}", ((i * (c + 1)) as f64 * 0.37).sin() * 0.02);
                    }
                    body.push(']');
                }
                body.push_str("}}}");
                seis.push((format!("riskwatch/v1/readings/site-{s:03}/site-{s:03}-seis"), body.into_bytes(), 1));
            }
        }
    }
    vec![
        Case { name: "site batches of 100 scalars", unit: "readings/s", payloads: batches },
        Case { name: "single readings (sensor topic, RFC 3339 time)", unit: "readings/s", payloads: singles },
        Case { name: "GNSS batches of 10", unit: "readings/s", payloads: gnss },
        Case { name: "seismic packets (3 × 100 samples)", unit: "packets/s", payloads: seis },
    ]
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let registry = registry();
    let limits = Limits::default();
    for case in cases() {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let per_pass: usize = case.payloads.iter().map(|p| p.2).sum();
        let bytes: usize = case.payloads.iter().map(|p| p.1.len()).sum();
        // Aim each timed run at ~0.5 s: calibrate on one pass.
        let t = Instant::now();
        run(&case, &registry, &limits);
        let passes = ((0.5 / t.elapsed().as_secs_f64()).ceil() as usize).max(1);
        let mut rates: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..passes {
                    run(&case, &registry, &limits);
                }
                (per_pass * passes) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{:<48} median {:>10.0} {} (best {:.0}; {:.0} MB/s of payload)",
            case.name,
            rates[2],
            case.unit,
            rates[4],
            rates[2] / per_pass as f64 * bytes as f64 / 1e6
        );
    }
}

fn run(case: &Case, registry: &Registry, limits: &Limits) {
    for (topic, payload, n) in &case.payloads {
        let d = decode(topic, payload, registry, limits).expect("bench payload decodes");
        assert!(d.rejected.is_empty() && d.readings.len() == *n, "{}: {:?}", case.name, d.rejected.first());
        std::hint::black_box(d);
    }
}
