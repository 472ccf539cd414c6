//! Fuzzing the wire decoder: one million generated payloads (structure-aware and byte-level
//! mutations of the seed corpus in `tests/corpus/decode/`, each file a topic line and a
//! payload) through `wire::decode`. Zero panics, and every reading it accepts satisfies the
//! wire format's promises (finite values, event time in bounds, a registered sensor of the
//! topic's site, the registered kind and unit, caps respected).
//!
//! Topics are fuzzed too: plain reading topics and gateway topics
//! (`riskwatch/v1/gateways/{gateway}/readings/…`) against a registry with gateways, whole and
//! byte-mutated; an accepted reading on a gateway topic must be one that gateway may publish.
//!
//! Each run draws a new seed and prints it (`fuzz seed S`), so CI explores a new campaign every
//! time; `RISKWATCH_FUZZ_SEED=S` repeats one, `RISKWATCH_FUZZ_CASES=N` runs longer
//! (docs/security.md). A failing input is written to `target/fuzz-failures/` and printed, ready
//! to add to the corpus.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::time::{MAX_WIRE_MS, MIN_WIRE_MS};
use riskwatch_core::wire::{decode, Limits};
use riskwatch_core::{Registry, Value};
use serde_json::Value as Json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

const REGISTRY: &str = r#"
[[gateways]]
id = "gw-river"
sites = ["hankou"]
[[gateways]]
id = "gw-plant"
sites = ["plant-a"]

[[sites]]
id = "hankou"
[[sites]]
id = "plant-a"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
[[sensors]]
id = "hankou-seis"
site = "hankou"
kind = "seismic_acceleration"
unit = "gal"
[[sensors]]
id = "plant-a-h2s"
site = "plant-a"
kind = "gas_toxic"
unit = "mg/m3"
[[sensors]]
id = "plant-a-gnss"
site = "plant-a"
kind = "gnss_displacement"
unit = "mm"
"#;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/decode");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read(&p).unwrap();
            let nl = text.iter().position(|b| *b == b'\n').expect("topic line");
            let topic = String::from_utf8(text[..nl].to_vec()).unwrap();
            let mut payload = text[nl + 1..].to_vec();
            while payload.last() == Some(&b'\n') {
                payload.pop();
            }
            (topic, payload)
        })
        .collect()
}

const TOPICS: &[&str] = &[
    "riskwatch/v1/readings/hankou/hankou-wl",
    "riskwatch/v1/readings/hankou/hankou-seis",
    "riskwatch/v1/readings/hankou",
    "riskwatch/v1/readings/plant-a",
    "riskwatch/v1/readings/plant-a/plant-a-h2s",
    "riskwatch/v1/readings/plant-a/plant-a-gnss",
    "riskwatch/v1/readings/plant-a/hankou-wl",
    "riskwatch/v1/readings/nowhere/x",
    "riskwatch/v1/readings/",
    "riskwatch/v1/readings/hankou/hankou-wl/extra",
    "riskwatch/v2/readings/hankou",
    "riskwatch/v1/readings/han kou/+",
    "riskwatch/v1/gateways/gw-river/readings/hankou/hankou-wl",
    "riskwatch/v1/gateways/gw-river/readings/hankou",
    "riskwatch/v1/gateways/gw-plant/readings/plant-a",
    "riskwatch/v1/gateways/gw-plant/readings/plant-a/plant-a-h2s",
    "riskwatch/v1/gateways/gw-plant/readings/hankou/hankou-wl",
    "riskwatch/v1/gateways/gw-river/readings/plant-a",
    "riskwatch/v1/gateways/nobody/readings/hankou",
    "riskwatch/v1/gateways/gw-river/readings",
    "riskwatch/v1/gateways//readings/hankou",
    "riskwatch/v1/gateways/gw river/readings/hankou",
    "riskwatch/v1/gateways/gw-river/hankou/hankou-wl",
];

/// A topic with a few random bytes changed, inserted or removed (lossily kept UTF-8, as MQTT
/// requires of topic names).
fn mutate_topic(rng: &mut ChaCha8Rng, topic: &str) -> String {
    let mut b = topic.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..=b.len());
        match rng.gen_range(0..3) {
            0 if at < b.len() => b[at] = b"/+#-_. a0\x00\xff"[rng.gen_range(0..11)],
            1 => b.insert(at, b"/+#-_. a0"[rng.gen_range(0..9)]),
            _ if at < b.len() => {
                b.remove(at);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

const KEYS: &[&str] = &[
    "sensor", "site", "kind", "ts", "unit", "value", "quality", "v", "readings", "exercise", "rate_hz", "channels",
    "e", "n", "u", "z",
];

/// A random JSON value, nested at most `depth` deep.
fn random_json(rng: &mut ChaCha8Rng, depth: u32) -> Json {
    match rng.gen_range(0..if depth == 0 { 7 } else { 9 }) {
        0 => Json::Null,
        1 => Json::Bool(rng.gen()),
        2 => Json::from(rng.gen::<i64>()),
        3 => serde_json::Number::from_f64(
            [0.0, -0.0, 1e308, -1e308, 5e-324, 27.5, 1e15, 4_102_444_800_000.0, 946_684_800_000.0][rng.gen_range(0..9)],
        )
        .map_or(Json::Null, Json::Number),
        4 => Json::from(rng.gen_range(MIN_WIRE_MS - 5..MIN_WIRE_MS + 5).max(0) as u64 * rng.gen_range(0..3)),
        5 => Json::String(
            [
                "",
                "m",
                "water_level",
                "gas_toxic",
                "NaN",
                "Infinity",
                "-inf",
                "2020-07-12T23:00:00+08:00",
                "9999-99-99",
                "水位",
                "hankou-wl",
                "plant-a",
            ][rng.gen_range(0..12)]
            .to_string(),
        ),
        6 => Json::String("x".repeat(rng.gen_range(0..200))),
        7 => Json::Array((0..rng.gen_range(0..5)).map(|_| random_json(rng, depth - 1)).collect()),
        _ => Json::Object(
            (0..rng.gen_range(0..6))
                .map(|_| (KEYS[rng.gen_range(0..KEYS.len())].to_string(), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Replaces or inserts a random node somewhere in `v`.
fn mutate_json(rng: &mut ChaCha8Rng, v: &mut Json) {
    match v {
        Json::Object(m) if !m.is_empty() && rng.gen_bool(0.7) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.gen_range(0..keys.len())];
            match rng.gen_range(0..4) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    let new = random_json(rng, 2);
                    m.insert(k.clone(), new);
                }
                2 => {
                    let new = random_json(rng, 2);
                    m.insert(KEYS[rng.gen_range(0..KEYS.len())].to_string(), new);
                }
                _ => mutate_json(rng, m.get_mut(k).unwrap()),
            }
        }
        Json::Array(a) if !a.is_empty() && rng.gen_bool(0.7) => {
            let i = rng.gen_range(0..a.len());
            match rng.gen_range(0..3) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let dup = a[i].clone();
                    let n = rng.gen_range(1..2000);
                    a.extend(std::iter::repeat_n(dup, n));
                }
                _ => mutate_json(rng, &mut a[i]),
            }
        }
        _ => *v = random_json(rng, 3),
    }
}

fn mutate_bytes(rng: &mut ChaCha8Rng, b: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.gen_range(1..5) {
        let len = b.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..=len);
                let bytes: &[u8] = [
                    &b"NaN"[..],
                    b"-Infinity",
                    b"1e999",
                    b"\"",
                    b"\\u0000",
                    b"{",
                    b"[",
                    b"}",
                    b"]",
                    b",",
                    b":",
                    b"\xff\xfe",
                    "水".as_bytes(),
                ][rng.gen_range(0..13)];
                b.splice(i..i, bytes.iter().copied());
            }
            2 if len > 1 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..len);
                b.drain(i..j);
            }
            3 if len > 1 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..len.min(i + 64));
                let piece = b[i..j].to_vec();
                b.splice(j..j, piece);
            }
            4 if !other.is_empty() => {
                let i = rng.gen_range(0..=len);
                let j = rng.gen_range(0..other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            5 => {
                let depth = rng.gen_range(1..3000);
                let mut nest = vec![b'['; depth];
                nest.extend(std::iter::repeat_n(b']', rng.gen_range(0..=depth)));
                let i = rng.gen_range(0..=len);
                b.splice(i..i, nest);
            }
            _ => b.push(rng.gen()),
        }
    }
}

/// Decodes; checks every accepted reading; returns how many there were.
fn check_accepted(topic: &str, payload: &[u8], registry: &Registry, limits: &Limits) -> usize {
    let Ok(d) = decode(topic, payload, registry, limits) else { return 0 };
    let (gateway, rest) = match topic.strip_prefix("riskwatch/v1/gateways/") {
        Some(r) => {
            let (gw, rest) = r.split_once('/').expect("an accepted gateway topic has levels");
            (Some(gw), rest.strip_prefix("readings/").expect("an accepted gateway topic has readings/"))
        }
        None => (None, topic.strip_prefix("riskwatch/v1/readings/").expect("an accepted topic is a reading topic")),
    };
    let site = rest.split('/').next().unwrap_or_default();
    if let Some(gw) = gateway {
        let g = registry.gateway(gw).expect("accepted readings on a gateway topic come from a registered gateway");
        assert!(g.sites.iter().any(|s| s.as_str() == site), "gateway {gw} may not publish for {site}");
    }
    assert!(d.readings.len() <= limits.max_batch);
    for r in &d.readings {
        let s = registry.sensor(r.sensor.as_str()).expect("accepted readings are of registered sensors");
        assert_eq!(s.site.as_str(), site, "accepted reading of another site than the topic's");
        assert_eq!(r.site, s.site);
        assert_eq!(r.kind, s.kind);
        assert_eq!(&*r.unit, &*s.unit, "the unit is the registered one");
        assert!((MIN_WIRE_MS..=MAX_WIRE_MS).contains(&r.ts.millis()), "event time out of bounds: {}", r.ts.millis());
        match &r.value {
            Value::Scalar(v) => assert!(v.is_finite()),
            Value::Displacement(d) => assert!(d.e.is_finite() && d.n.is_finite() && d.u.is_finite()),
            Value::Waveform(w) => {
                assert!(w.rate_hz.is_finite() && w.rate_hz > 0.0 && w.rate_hz <= limits.max_rate_hz);
                assert!(w.channels.len() <= limits.max_channels);
                for c in &w.channels {
                    assert!(c.samples.len() <= limits.max_samples && c.samples.iter().all(|x| x.is_finite()));
                }
            }
        }
    }
    d.readings.len()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn a_million_generated_payloads_never_panic_the_decoder() {
    let cases = env_num("RISKWATCH_FUZZ_CASES", 1_000_000);
    // A new campaign each run unless one is asked for; printed so a failure can be repeated.
    let fresh =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(2020, |d| d.as_nanos() as u64);
    let seed = env_num("RISKWATCH_FUZZ_SEED", fresh);
    println!("fuzz seed {seed} (RISKWATCH_FUZZ_SEED={seed} repeats this campaign)");
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let limits = Limits::default();
    let seeds = corpus();
    assert!(seeds.len() >= 10, "corpus present");
    let parsed: Vec<Option<Json>> = seeds.iter().map(|(_, p)| serde_json::from_slice(p).ok()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut accepted = 0u64;
    let mut on_gateway_topics = 0u64;
    for case in 0..cases {
        let k = rng.gen_range(0..seeds.len());
        let topic = match rng.gen_range(0..20) {
            0..=14 => seeds[k].0.clone(),
            15..=17 => TOPICS[rng.gen_range(0..TOPICS.len())].to_string(),
            _ => {
                let base = TOPICS[rng.gen_range(0..TOPICS.len())];
                mutate_topic(&mut rng, base)
            }
        };
        let payload = match (rng.gen_range(0..3), &parsed[k]) {
            (0, _) => seeds[k].1.clone(),
            (1, Some(json)) => {
                let mut j = json.clone();
                for _ in 0..rng.gen_range(1..4) {
                    mutate_json(&mut rng, &mut j);
                }
                serde_json::to_vec(&j).unwrap()
            }
            _ => {
                let mut b = seeds[k].1.clone();
                let other = &seeds[rng.gen_range(0..seeds.len())].1;
                mutate_bytes(&mut rng, &mut b, other);
                b
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| check_accepted(&topic, &payload, &registry, &limits)));
        let n = match result {
            Ok(n) => n,
            Err(panic) => {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("decode-{seed}-{case}.txt"));
                let mut text = topic.clone().into_bytes();
                text.push(b'\n');
                text.extend_from_slice(&payload);
                let _ = std::fs::write(&file, &text);
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!(
                    "case {case} (seed {seed}) panicked: {msg:?}\ntopic: {topic}\npayload: {}\nsaved to {}",
                    String::from_utf8_lossy(&payload),
                    file.display()
                );
            }
        };
        if n > 0 {
            accepted += 1;
            on_gateway_topics += u64::from(topic.starts_with("riskwatch/v1/gateways/"));
        }
    }
    // The campaign must exercise the accepting paths too, not only rejections.
    assert!(accepted > cases / 20, "only {accepted} of {cases} payloads yielded readings");
    assert!(
        cases < 10_000 || on_gateway_topics > 0,
        "no gateway topic was ever accepted: the authorisation check went unexercised"
    );
    println!("{cases} payloads, {accepted} with accepted readings ({on_gateway_topics} on gateway topics), no panic");
}
