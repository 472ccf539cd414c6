//! Encoding readings in the v1 wire format (the inverse of [`super::decode`]): ingest's Kafka
//! records, simulators, replay drills and tests.
//!
//! Written straight from the readings through serde (no intermediate `serde_json::Value`), with
//! members in name order, so the bytes are those `serde_json::Value` would print.

use crate::reading::{Channel, Reading, Value};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// One reading as a JSON object, with `ts` as epoch milliseconds; `v` adds the version member
/// of a single-reading payload.
struct Item<'a> {
    reading: &'a Reading,
    v: bool,
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.reading;
        let mut m = s.serialize_map(None)?;
        if r.exercise {
            m.serialize_entry("exercise", &true)?;
        }
        m.serialize_entry("kind", r.kind.as_str())?;
        m.serialize_entry("quality", &r.quality.code())?;
        m.serialize_entry("sensor", r.sensor.as_str())?;
        m.serialize_entry("site", r.site.as_str())?;
        m.serialize_entry("ts", &r.ts.millis())?;
        m.serialize_entry("unit", &*r.unit)?;
        if self.v {
            m.serialize_entry("v", &super::WIRE_VERSION)?;
        }
        m.serialize_entry("value", &ValueOut(&r.value))?;
        m.end()
    }
}

struct ValueOut<'a>(&'a Value);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Scalar(v) => v.serialize(s),
            Value::Displacement(d) => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("e", &d.e)?;
                m.serialize_entry("n", &d.n)?;
                m.serialize_entry("u", &d.u)?;
                m.end()
            }
            Value::Waveform(w) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("channels", &Channels(&w.channels))?;
                m.serialize_entry("rate_hz", &w.rate_hz)?;
                m.end()
            }
        }
    }
}

struct Channels<'a>(&'a [Channel]);

impl Serialize for Channels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<&Channel> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.dedup_by(|b, a| a.name == b.name);
        let mut m = s.serialize_map(Some(sorted.len()))?;
        for c in sorted {
            m.serialize_entry(&c.name, &c.samples)?;
        }
        m.end()
    }
}

struct Batch<'a>(Vec<Item<'a>>);

impl Serialize for Batch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("readings", &self.0)?;
        m.serialize_entry("v", &super::WIRE_VERSION)?;
        m.end()
    }
}

fn to_vec(v: &impl Serialize) -> Vec<u8> {
    // Serialising strings and finite or non-finite numbers into memory cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The JSON text of a reading's value (`27.1`, `{"e":…,"n":…,"u":…}`, a waveform packet).
pub fn value_json(value: &Value) -> String {
    String::from_utf8(to_vec(&ValueOut(value))).unwrap_or_default()
}

/// A single-reading payload with the version field, for `riskwatch/v1/readings/{site}/{sensor}`.
pub fn encode_reading(r: &Reading) -> Vec<u8> {
    to_vec(&Item { reading: r, v: true })
}

/// A batch payload `{"readings":[…],"v":1}` for `riskwatch/v1/readings/{site}`.
pub fn encode_batch<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> Vec<u8> {
    to_vec(&Batch(readings.into_iter().map(|reading| Item { reading, v: false }).collect()))
}
