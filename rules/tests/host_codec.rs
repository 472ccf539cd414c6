//! The journal encoding of rules-host inputs: every kind of input and value reads back exactly
//! (bit for bit, floats included), and damaged bytes — truncated, flipped, random — come back
//! as an error, never a panic or a different input passed off as valid.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::reading::{Channel, Displacement, Waveform};
use riskwatch_core::{Quality, Reading, SensorId, SensorKind, SiteId, Timestamp, Value};
use riskwatch_rules::Input;
use std::sync::Arc;

fn reading(sensor: &str, kind: SensorKind, unit: &str, value: Value) -> Reading {
    Reading {
        sensor: SensorId::new(sensor),
        site: SiteId::new("site-1"),
        kind,
        ts: Timestamp(1_780_000_000_123),
        value,
        unit: Arc::from(unit),
        quality: Quality::Suspect,
        exercise: false,
    }
}

fn samples() -> Vec<Input> {
    let mut drill = reading("wl-2", SensorKind::WaterLevel, "m", Value::Scalar(-0.0));
    drill.exercise = true;
    drill.quality = Quality::NotEvaluated;
    vec![
        Input::Readings {
            at: Timestamp(1_780_000_000_500),
            readings: vec![
                reading("wl-1", SensorKind::WaterLevel, "m", Value::Scalar(0.1 + 0.2)),
                drill,
                reading(
                    "gnss-1",
                    SensorKind::GnssDisplacement,
                    "mm",
                    Value::Displacement(Displacement { e: 1.5e-300, n: -3.25, u: 1e300 }),
                ),
                reading(
                    "acc-1",
                    SensorKind::SeismicAcceleration,
                    "gal",
                    Value::Waveform(Waveform {
                        rate_hz: 100.0,
                        channels: vec![
                            Channel { name: "E".into(), samples: vec![0.1, -0.2, 0.3] },
                            Channel { name: "N".into(), samples: vec![0.0, 5e-324, -7.0] },
                        ],
                    }),
                ),
                reading("pump-7", SensorKind::Custom(Arc::from("vibration")), "mm/s", Value::Scalar(4.5)),
            ],
        },
        Input::Readings { at: Timestamp(0), readings: vec![] },
        Input::Command { at: Timestamp(-5), raw: b"{\"alert_id\":\"x\",\"action\":\"acknowledge\"}".to_vec() },
        Input::Command { at: Timestamp(7), raw: vec![0xff, 0x00, 0xfe] },
        Input::Tick { at: Timestamp(i64::MAX) },
        Input::Resume { at: Timestamp(i64::MIN) },
        Input::Reload { at: Timestamp(1), rules: Some("[[rules]]\nid = \"水位\"\n".into()), registry: None },
        Input::Reload { at: Timestamp(2), rules: None, registry: Some(String::new()) },
        Input::Reload { at: Timestamp(3), rules: None, registry: None },
    ]
}

#[test]
fn every_input_reads_back_exactly() {
    for input in samples() {
        let bytes = input.to_bytes();
        let back = Input::from_bytes(&bytes).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(back, input);
        // Bit for bit, not just ==: -0.0 and 0.0 compare equal.
        assert_eq!(back.to_bytes(), bytes);
    }
}

#[test]
fn damaged_entries_are_errors_not_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let originals: Vec<Vec<u8>> = samples().iter().map(Input::to_bytes).collect();
    let mut errors = 0;
    for _ in 0..200_000 {
        let mut b = originals[rng.gen_range(0..originals.len())].clone();
        match rng.gen_range(0..3) {
            0 => b.truncate(rng.gen_range(0..b.len())),
            1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..b.len());
                    b[i] ^= 1 << rng.gen_range(0..8);
                }
            }
            _ => b = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        }
        if Input::from_bytes(&b).is_err() {
            errors += 1;
        }
    }
    // Truncations and random bytes are nearly all refused (a flipped float bit is still valid).
    assert!(errors > 100_000, "only {errors} of 200 000 damaged entries refused");
    assert!(Input::from_bytes(&[]).is_err());
    let truncated = &originals[0][..originals[0].len() - 1];
    assert!(Input::from_bytes(truncated).unwrap_err().to_string().contains("truncated"));
}
