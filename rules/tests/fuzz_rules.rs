//! Fuzzing the rules-file parser and what follows it: mutated rules files (line, token and
//! character mutations of the shipped rules files and every rules example in docs/rules.md)
//! through `RuleSet::from_toml`; those that parse are bound to the demo registry with
//! `Engine::new`, and those that bind get a burst of readings, snapshot and restore. Zero
//! panics: a broken file must come back as a clear error, never a crash.
//!
//! Deterministic; `RISKWATCH_FUZZ_RULES_CASES=N` and `RISKWATCH_FUZZ_SEED=S` for longer or
//! other campaigns (docs/security.md).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::wire::{decode, Limits};
use riskwatch_core::{Registry, SensorKind, Timestamp};
use riskwatch_rules::{Engine, RuleSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The shipped rules files and the docs' rules examples that parse.
fn seeds() -> Vec<String> {
    let mut out = vec![
        std::fs::read_to_string(repo("config/demo/rules.toml")).unwrap(),
        std::fs::read_to_string(repo("tests/data/replay/rules.toml")).unwrap(),
    ];
    let doc = std::fs::read_to_string(repo("docs/rules.md")).unwrap();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let Some(end) = body.find("```") else { break };
        let block = &body[..end];
        if RuleSet::from_toml(block).is_ok()
            && (block.contains("[[rules]]") || block.contains("[[quality]]") || block.contains("[[composites]]"))
        {
            out.push(block.to_string());
        }
        rest = &body[end..];
    }
    out
}

const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e999",
    "-1e999",
    "inf",
    "-inf",
    "nan",
    "1.7976931348623157e308",
    "5e-324",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "\"warning_level + 0.5\"",
    "\"rate(1h) >= 0.3\"",
    "\"rate(0s) >= 1\"",
    "\"rate(999999999h) >= 1\"",
    "\"sum(0h) >= 1\"",
    "\"sum(3h) >= -inf\"",
    "\"warning_level - - 1\"",
    "\"(((\"",
    "\"alarm_1 * 1e308\"",
    "\"red\"",
    "\"purple\"",
    "4294967296",
    "-9223372036854775808",
    "\"1h\"",
    "\"0s\"",
    "\"99999999999d\"",
    "\"-5m\"",
    "{ kind = \"water_level\" }",
    "{ tag = \"\" }",
    "\"水位\"",
    "[[rules]]",
    "[[quality]]",
    "[[composites]]",
];

fn mutate(rng: &mut ChaCha8Rng, text: &str, other: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.gen_range(1..4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.gen_range(0..lines.len());
        match rng.gen_range(0..7) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                // Replace a value: whatever follows `=` on a line.
                if let Some(eq) = lines[i].find('=') {
                    let tok = TOKENS[rng.gen_range(0..TOKENS.len())];
                    lines[i] = format!("{}= {tok}", &lines[i][..eq]);
                }
            }
            3 => {
                let tok = TOKENS[rng.gen_range(0..TOKENS.len())];
                let pos = rng.gen_range(0..=lines[i].chars().count());
                let at = lines[i].char_indices().nth(pos).map_or(lines[i].len(), |(b, _)| b);
                lines[i].insert_str(at, tok);
            }
            4 => {
                // Drop a character.
                let n = lines[i].chars().count();
                if n > 0 {
                    let k = rng.gen_range(0..n);
                    lines[i] = lines[i].chars().enumerate().filter(|(j, _)| *j != k).map(|(_, c)| c).collect();
                }
            }
            5 => {
                let others: Vec<&str> = other.lines().collect();
                if !others.is_empty() {
                    lines.insert(i, others[rng.gen_range(0..others.len())].to_string());
                }
            }
            _ => {
                let j = rng.gen_range(0..lines.len());
                lines.swap(i, j);
            }
        }
    }
    lines.join("\n")
}

/// Parses, binds and runs; panics only if riskwatch does.
fn exercise(text: &str, registry: &Registry, readings: &[riskwatch_core::Reading]) -> (bool, bool) {
    let Ok(rules) = RuleSet::from_toml(text) else { return (false, false) };
    let _ = rules.warnings_against(registry);
    let Ok(mut engine) = Engine::new(&rules, registry) else { return (true, false) };
    let mut out = Vec::new();
    let mut batch = readings.to_vec();
    for r in batch.iter_mut() {
        let now = r.ts;
        r.quality = engine.process(r, now, &mut out);
    }
    let snap = engine.snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let mut fresh = Engine::new(&rules, registry).unwrap();
    let _ = fresh.restore(
        serde_json::from_str(&json).unwrap(),
        Timestamp(readings.last().map_or(0, |r| r.ts.millis())),
        &mut out,
    );
    (true, true)
}

fn demo_readings(registry: &Registry) -> Vec<riskwatch_core::Reading> {
    let t0 = 1_700_000_000_000_i64;
    let mut out = Vec::new();
    for step in 0..12_i64 {
        for s in registry.sensors() {
            let v = 10.0 * (step as f64 * 0.9).sin() + 5.0 * step as f64;
            let value = match s.kind {
                SensorKind::GnssDisplacement => serde_json::json!({"e": v, "n": -v, "u": 0.0}),
                SensorKind::SeismicAcceleration => continue,
                _ => serde_json::json!(v),
            };
            let payload = serde_json::json!({"kind": s.kind.as_str(), "ts": t0 + step * 60_000, "unit": &*s.unit, "value": value});
            let topic = format!("riskwatch/v1/readings/{}/{}", s.site, s.id);
            if let Ok(d) = decode(&topic, payload.to_string().as_bytes(), registry, &Limits::default()) {
                out.extend(d.readings);
            }
        }
    }
    out
}

#[test]
fn mutated_rules_files_never_panic_the_parser_or_the_engine() {
    let cases: u64 = std::env::var("RISKWATCH_FUZZ_RULES_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seed: u64 = std::env::var("RISKWATCH_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(2020);
    let registry = Registry::from_toml(&std::fs::read_to_string(repo("config/demo/registry.toml")).unwrap()).unwrap();
    let readings = demo_readings(&registry);
    assert!(readings.len() > 50);
    let seeds = seeds();
    assert!(seeds.len() >= 5, "seed corpus: {} files", seeds.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut parsed, mut bound) = (0u64, 0u64);
    for case in 0..cases {
        let k = rng.gen_range(0..seeds.len());
        let other = &seeds[rng.gen_range(0..seeds.len())];
        let text = mutate(&mut rng, &seeds[k], other);
        match catch_unwind(AssertUnwindSafe(|| exercise(&text, &registry, &readings))) {
            Ok((p, b)) => {
                parsed += u64::from(p);
                bound += u64::from(b);
            }
            Err(panic) => {
                let dir = repo("target/fuzz-failures");
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("rules-{seed}-{case}.toml"));
                let _ = std::fs::write(&file, &text);
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("case {case} (seed {seed}) panicked: {msg:?}\nsaved to {}\n{text}", file.display());
            }
        }
    }
    // Both the refusing and the accepting paths were exercised.
    assert!(parsed > cases / 20 && parsed < cases, "{parsed} of {cases} parsed");
    assert!(bound > 0, "none bound to the registry");
    println!("{cases} rules files: {parsed} parsed, {bound} bound and run, no panic");
}
