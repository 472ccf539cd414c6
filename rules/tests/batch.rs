//! The batch entry points give exactly what one `process` call per reading gives: the same
//! events in the same order, the same quality flags, the same statistics and the same state.

use riskwatch_core::{AlertEvent, Quality, Reading, Registry, SensorId, SensorKind, Timestamp, Value};
use riskwatch_rules::{Engine, RuleSet};
use std::sync::Arc;

const T0: i64 = 1_594_080_000_000;

/// Sites of five water gauges, three gas heads and two pressure tags, as in the benchmark.
fn registry(sites: usize) -> String {
    let mut s = String::new();
    for site in 0..sites {
        s.push_str(&format!("[[sites]]\nid = \"site-{site}\"\n"));
    }
    for i in 0..sites * 10 {
        let site = i / 10;
        let (id, kind, unit, attrs) = match i % 10 {
            0..=4 => {
                let w = 5.0 + i as f64 * 0.1;
                (
                    format!("wl-{i}"),
                    "water_level",
                    "m",
                    format!("warning_level = {w:.2}, guaranteed_level = {:.2}, record_level = {:.2}", w + 1.0, w + 1.5),
                )
            }
            5..=7 => (format!("gas-{i}"), "gas_combustible", "%LEL", "alarm_1 = 20.0, alarm_2 = 40.0".to_string()),
            _ => (format!("p-{i}"), "pressure", "kPa", "mawp = 1000".to_string()),
        };
        s.push_str(&format!(
            "[[sensors]]\nid = \"{id}\"\nsite = \"site-{site}\"\nkind = \"{kind}\"\nunit = \"{unit}\"\ninterval_s = 60\nattributes = {{ {attrs} }}\n"
        ));
    }
    s
}

const RULES: &str = r#"
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

[[quality]]
applies_to = { kind = "water_level" }
stale = { intervals = 3 }
gross_range = { fail_min = 0.0, fail_max = 60.0 }
spike = { suspect = 0.5, fail = 1.5 }
flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }

[[quality]]
applies_to = { kind = "gas_combustible" }
stale = { intervals = 3 }
gross_range = { fail_min = -1.0, fail_max = 100.0 }
spike = { suspect = 25.0, fail = 45.0 }

[[composites]]
id = "site-rollup"
levels = { yellow = "count(>= yellow) >= 2", orange = "count(>= orange) >= 2", red = "any(>= red)" }
off_delay = { seconds = 600 }
"#;

fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stream with everything the per-reading path treats specially: alerts raised and
/// cleared, duplicates and late readings, readings the gateway flagged, sensors not in the
/// registry, ids that are not the registry's allocations, sensors falling silent.
fn stream(reg: &Registry, rounds: i64) -> Vec<Reading> {
    let sensors: Vec<_> = reg.sensors();
    let n = sensors.len() as i64;
    let mut out = Vec::new();
    for round in 0..rounds {
        for (i, s) in sensors.iter().enumerate() {
            let seed = mix((round as u64) << 20 | i as u64);
            // Sensor 3 falls silent for a while (stale alert, then recovery).
            if i == 3 && (40..60).contains(&round) {
                continue;
            }
            let ts = T0 + round * 60_000 + i as i64 * 60_000 / n;
            let wave = ((round as f64 / 30.0) + i as f64).sin();
            let noise = (seed % 1000) as f64 / 1000.0 - 0.5;
            let v = match s.kind {
                SensorKind::WaterLevel => {
                    let w = s.attributes.get("warning_level").copied().unwrap_or(5.0);
                    w - 0.5 + 1.6 * wave + 0.02 * noise + if seed % 97 == 0 { 3.0 } else { 0.0 }
                }
                SensorKind::GasCombustible => (5.0 + 30.0 * wave + noise).max(0.0),
                _ => 900.0 + 150.0 * wave + noise,
            };
            let quality = match seed % 211 {
                0 => Quality::Fail,
                1 => Quality::Missing,
                2 => Quality::Suspect,
                _ => Quality::NotEvaluated,
            };
            let fresh = seed % 5 == 0;
            let r = Reading {
                // Every fifth reading carries an id decoded into its own allocation.
                sensor: if fresh { SensorId::new(s.id.as_str()) } else { s.id.clone() },
                site: s.site.clone(),
                kind: s.kind.clone(),
                ts: Timestamp(ts),
                value: Value::Scalar(v),
                unit: Arc::clone(&s.unit),
                quality,
                exercise: false,
            };
            if seed % 53 == 0 {
                // A duplicate right away, and a late copy.
                out.push(r.clone());
                let mut late = r.clone();
                late.ts = Timestamp(ts - 120_000);
                out.push(late);
            }
            if seed % 61 == 0 {
                let mut unknown = r.clone();
                unknown.sensor = SensorId::new("not-registered");
                out.push(unknown);
            }
            out.push(r);
        }
    }
    out
}

fn engine(reg: &Registry) -> Engine {
    Engine::new(&RuleSet::from_toml(RULES).unwrap(), reg).unwrap()
}

type Outcome = (Vec<AlertEvent>, Vec<Quality>, riskwatch_rules::EngineStats, riskwatch_rules::Snapshot);

fn one_by_one(reg: &Registry, readings: &[Reading], batch: usize, replay: bool) -> Outcome {
    let mut e = engine(reg);
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for (b, chunk) in readings.chunks(batch).enumerate() {
        let now = Timestamp(T0 + b as i64 * 7_000);
        for r in chunk {
            flags.push(e.process(r, if replay { r.ts } else { now }, &mut out));
        }
    }
    (out, flags, e.stats(), e.snapshot())
}

fn batched(reg: &Registry, readings: &[Reading], batch: usize, replay: bool) -> Outcome {
    let mut e = engine(reg);
    let mut out = Vec::new();
    let mut readings = readings.to_vec();
    for (b, chunk) in readings.chunks_mut(batch).enumerate() {
        let now = Timestamp(T0 + b as i64 * 7_000);
        if replay {
            e.replay_batch(chunk, &mut out);
        } else {
            e.process_batch(chunk, now, &mut out);
        }
    }
    let flags = readings.iter().map(|r| r.quality).collect();
    (out, flags, e.stats(), e.snapshot())
}

#[test]
fn batches_give_exactly_the_events_flags_and_state_of_one_reading_at_a_time() {
    let reg = Registry::from_toml(&registry(6)).unwrap();
    let readings = stream(&reg, 240);
    for replay in [true, false] {
        for batch in [1, 3, 10, 31, 32, 33, 100, readings.len()] {
            let expected = one_by_one(&reg, &readings, batch, replay);
            let got = batched(&reg, &readings, batch, replay);
            assert!(expected.0.len() > 50, "the stream raises and clears alerts: {}", expected.0.len());
            assert_eq!(got.0.len(), expected.0.len(), "batch {batch}, replay {replay}: event count");
            for (i, (g, x)) in got.0.iter().zip(&expected.0).enumerate() {
                assert_eq!(g, x, "batch {batch}, replay {replay}: event {i}");
            }
            assert_eq!(got.1, expected.1, "batch {batch}, replay {replay}: flags");
            assert_eq!(got.2, expected.2, "batch {batch}, replay {replay}: stats");
            assert_eq!(got.3, expected.3, "batch {batch}, replay {replay}: state");
        }
    }
    let (events, flags, stats, _) = one_by_one(&reg, &readings, 10, true);
    for kind in ["dq.stale", "site-rollup", "dq.sensor_fault", "water-level-bands", "combustible-gas"] {
        assert!(events.iter().any(|e| &*e.rule_id == kind), "the stream exercises {kind}");
    }
    assert!(flags.contains(&Quality::Fail) && flags.contains(&Quality::Good));
    assert!(stats.unmatched > 0 && stats.out_of_order > 0 && stats.bad_quality > 0, "{stats:?}");
}
