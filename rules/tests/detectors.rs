//! Detector measures through the engine: a landslide's tangent angle walks up the ladder with
//! a failure forecast attached, and a strong-motion record raises a GB/T 17742 intensity
//! alert with its PGA and PGV.

use riskwatch_core::{
    AlertChange, Channel, Displacement, Level, Quality, Reading, Registry, SensorKind, Timestamp, Value, Waveform,
};
use riskwatch_rules::{Engine, RuleSet};

const REGISTRY: &str = r#"
[[sites]]
id = "slope"
[[sites]]
id = "eq"
[[sensors]]
id = "g1"
site = "slope"
kind = "gnss_displacement"
unit = "mm"
interval_s = 3600
[[sensors]]
id = "acc"
site = "eq"
kind = "seismic_acceleration"
unit = "m/s2"
"#;

const RULES: &str = r#"
[[rules]]
id = "tangent-angle"
applies_to = { kind = "gnss_displacement" }
measure = "tangent_angle"
gnss = { v_constant_mm_per_day = 2.0 }
deadband = 2.0
on_delay = { samples = 3 }
off_delay = { samples = 6 }
levels = { blue = 40, yellow = 50, orange = 80, red = 85 }
message.en = "{level} landslide alert: tangent angle {value} deg; predicted failure {forecast}"

[[rules]]
id = "intensity"
applies_to = { kind = "seismic_acceleration" }
measure = "intensity"
levels = { blue = 2.0, yellow = 3.0 }
precision = 1
"#;

const DAY_MS: f64 = 86_400_000.0;
const T0: i64 = 1_700_000_000_000;

/// Creep at 2 mm/day, accelerating from day 15 to failure at day 30.05 (Saito-type), with
/// ±0.5 mm deterministic pseudo-noise; hourly solutions until an hour before failure.
fn creep() -> Vec<Reading> {
    let (v0, ta, tf) = (2.0, 15.0, 30.05);
    let mut seed: u64 = 7;
    let mut noise = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 1.0
    };
    (0..)
        .map(|h| h as f64 / 24.0)
        .take_while(|t| *t < tf - 1.0 / 24.0)
        .map(|t| {
            let slip = if t <= ta { v0 * t } else { v0 * ta + v0 * (tf - ta) * ((tf - ta) / (tf - t)).ln() };
            Reading {
                sensor: "g1".into(),
                site: "slope".into(),
                kind: SensorKind::GnssDisplacement,
                ts: Timestamp(T0 + (t * DAY_MS).round() as i64),
                value: Value::Displacement(Displacement {
                    e: slip * 0.7 + noise(),
                    n: -slip * 0.7 + noise(),
                    u: -0.1 * slip + noise(),
                }),
                unit: "mm".into(),
                quality: Quality::Good,
                exercise: false,
            }
        })
        .collect()
}

#[test]
fn tangent_angle_escalates_in_order_with_a_failure_forecast() {
    let mut e = Engine::new(&RuleSet::from_toml(RULES).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap();
    let mut out = Vec::new();
    for r in creep() {
        e.process(&r, r.ts, &mut out);
    }
    let ups: Vec<(Level, f64)> = out
        .iter()
        .filter(|x| matches!(x.change, AlertChange::Raised | AlertChange::Escalated))
        .map(|x| (x.level, (x.ts.millis() - T0) as f64 / DAY_MS))
        .collect();
    let levels: Vec<Level> = ups.iter().map(|u| u.0).collect();
    assert_eq!(levels, vec![Level::Blue, Level::Yellow, Level::Orange, Level::Red], "{ups:?}");
    let (_, red_day) = ups[3];
    assert!(ups[1].1 > 15.0, "yellow only after acceleration starts on day 15: {ups:?}");
    assert!(red_day < 30.05, "red before failure: {ups:?}");
    let red = out.iter().find(|x| x.level == Level::Red).unwrap();
    let forecast = red.details.as_ref().and_then(|d| d["predicted_failure"].as_str()).expect("red carries a forecast");
    let predicted = Timestamp::parse_rfc3339(forecast).unwrap();
    let error_days = ((predicted.millis() - T0) as f64 / DAY_MS - 30.05).abs();
    assert!(error_days < 1.0, "forecast {forecast} is {error_days:.2} days off");
    assert!(red.message_en.contains("predicted failure 20"), "{}", red.message_en);
}

fn packet(second: i64, amp: f64) -> Reading {
    // 1-s packets at 100 Hz: a 2 Hz shake of amplitude `amp` on both horizontals.
    let s: Vec<f64> =
        (0..100).map(|i| amp * (2.0 * std::f64::consts::PI * 2.0 * (second as f64 + i as f64 / 100.0)).sin()).collect();
    Reading {
        sensor: "acc".into(),
        site: "eq".into(),
        kind: SensorKind::SeismicAcceleration,
        ts: Timestamp(T0 + second * 1000),
        value: Value::Waveform(Waveform {
            rate_hz: 100.0,
            channels: vec![
                Channel { name: "e".into(), samples: s.clone() },
                Channel { name: "n".into(), samples: s.iter().map(|x| x * 0.5).collect() },
                Channel { name: "z".into(), samples: vec![0.0; 100] },
            ],
        }),
        unit: "m/s2".into(),
        quality: Quality::Good,
        exercise: false,
    }
}

#[test]
fn strong_motion_raises_an_intensity_alert_with_pga_and_pgv() {
    let mut e = Engine::new(&RuleSet::from_toml(RULES).unwrap(), &Registry::from_toml(REGISTRY).unwrap()).unwrap();
    let mut out = Vec::new();
    for s in 0..20 {
        let r = packet(s, if (10..14).contains(&s) { 0.5 } else { 0.001 });
        e.process(&r, r.ts, &mut out);
    }
    let raised = out
        .iter()
        .find(|x| x.rule_id.as_ref() == "intensity" && x.change == AlertChange::Raised)
        .expect("an intensity alert");
    assert_eq!(raised.level, Level::Yellow);
    assert_eq!((raised.ts.millis() - T0) / 1000, 10);
    let d = raised.details.as_ref().unwrap();
    let pga = d["pga_m_s2"].as_f64().unwrap();
    assert!((0.45..0.6).contains(&pga), "vector PGA of 0.5 and 0.25 components ≈ 0.56: {pga}");
    assert!(d["pgv_m_s"].as_f64().unwrap() > 0.0);
}
