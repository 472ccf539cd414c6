//! Timelines through the rules host on a virtual clock, for the alarm-management tests: inputs
//! by the minute, and the check that a timeline cut after any input — the host's state saved
//! as JSON, recovered and finished — gives the very events of the uninterrupted run.
#![allow(dead_code)] // each test file uses its own part of the kit

use riskwatch_core::{AlertEvent, Quality, Reading, Registry, SensorKind, Timestamp, Value};
use riskwatch_rules::host::text_digest;
use riskwatch_rules::{HostSnapshot, Input, Outcome, RulesHost};
use std::sync::Arc;

/// One minute in milliseconds.
pub const MIN: i64 = 60_000;

/// Three water-level gauges reporting every 5 minutes (flood levels of Hankou): `wl` and
/// `wl-2` at site `hankou`, `d1` at site `dam`.
pub const THREE_GAUGES: &str = r#"
[[sites]]
id = "hankou"
[[sites]]
id = "dam"

[[sensors]]
id = "wl"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "wl-2"
site = "hankou"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }

[[sensors]]
id = "d1"
site = "dam"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
"#;

/// A registry, rules and the time of minute 0.
pub struct Kit {
    pub t0: i64,
    pub registry: &'static str,
    pub rules: &'static str,
}

impl Kit {
    pub fn at(&self, minute: i64) -> Timestamp {
        Timestamp(self.t0 + minute * MIN)
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::new(Registry::from_toml(self.registry).unwrap())
    }

    pub fn host(&self) -> RulesHost {
        RulesHost::new(self.rules, self.registry(), &text_digest(self.registry), None).unwrap()
    }

    /// A good water-level reading (metres) of a registered gauge at `minute`, at its site.
    pub fn reading(&self, sensor: &str, minute: i64, v: f64) -> Input {
        let site = self.registry().sensor(sensor).expect("a gauge of the kit's registry").site.clone();
        Input::Readings {
            at: self.at(minute),
            readings: vec![Reading {
                sensor: sensor.into(),
                site,
                kind: SensorKind::WaterLevel,
                ts: self.at(minute),
                value: Value::Scalar(v),
                unit: "m".into(),
                quality: Quality::Good,
                exercise: false,
            }],
        }
    }

    /// An officer's command (JSON) at `minute`.
    pub fn command(&self, minute: i64, json: serde_json::Value) -> Input {
        Input::Command { at: self.at(minute), raw: json.to_string().into_bytes() }
    }

    /// A clock tick every minute from `from` to `to`, both included.
    pub fn ticks(&self, from: i64, to: i64) -> Vec<Input> {
        (from..=to).map(|m| Input::Tick { at: self.at(m) }).collect()
    }

    /// The minute of an event.
    pub fn minute(&self, e: &AlertEvent) -> i64 {
        (e.ts.millis() - self.t0) / MIN
    }

    /// Runs `inputs` whole, then cut after every input (snapshot as JSON, recover, finish):
    /// every cut must give the very events of the whole run.
    pub fn survives_every_cut(&self, inputs: &[Input]) -> Vec<AlertEvent> {
        let want = run(&mut self.host(), inputs);
        for cut in 1..inputs.len() {
            let mut first = self.host();
            let mut got = run(&mut first, &inputs[..cut]);
            let json = serde_json::to_string(&first.snapshot()).unwrap();
            drop(first);
            let snap: HostSnapshot = serde_json::from_str(&json).unwrap();
            let rec = RulesHost::recover(snap, self.registry(), &text_digest(self.registry), None).unwrap();
            assert!(rec.exact && rec.events.is_empty());
            let mut second = rec.host;
            got.extend(run(&mut second, &inputs[cut..]));
            assert_eq!(got, want, "cut after input {cut}: the restored host went another way");
        }
        want
    }
}

/// Applies inputs; every one must be applied.
pub fn run(host: &mut RulesHost, inputs: &[Input]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for input in inputs {
        let outcome = host.apply(&mut input.clone(), &mut out);
        assert!(matches!(outcome, Outcome::Applied), "{input:?}: {outcome:?}");
    }
    out
}
