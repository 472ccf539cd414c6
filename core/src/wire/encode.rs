//! Encoding readings in the v1 wire format (used by simulators, replay drills and tests; the
//! inverse of [`super::decode`]).

use crate::reading::{Reading, Value};
use serde_json::{json, Map, Value as Json};

/// The JSON object for one reading, with `ts` as epoch milliseconds.
pub fn reading_json(r: &Reading) -> Json {
    let value = match &r.value {
        Value::Scalar(v) => json!(v),
        Value::Displacement(d) => json!({ "e": d.e, "n": d.n, "u": d.u }),
        Value::Waveform(w) => {
            let channels: Map<String, Json> = w.channels.iter().map(|c| (c.name.clone(), json!(c.samples))).collect();
            json!({ "rate_hz": w.rate_hz, "channels": channels })
        }
    };
    let mut j = json!({
        "sensor": r.sensor.as_str(),
        "site": r.site.as_str(),
        "kind": r.kind.as_str(),
        "ts": r.ts.millis(),
        "unit": &*r.unit,
        "value": value,
        "quality": r.quality.code(),
    });
    if r.exercise {
        j["exercise"] = json!(true);
    }
    j
}

/// A single-reading payload with the version field, for `riskwatch/v1/readings/{site}/{sensor}`.
pub fn encode_reading(r: &Reading) -> Vec<u8> {
    let mut j = reading_json(r);
    if let Json::Object(m) = &mut j {
        m.insert("v".into(), json!(super::WIRE_VERSION));
    }
    j.to_string().into_bytes()
}

/// A batch payload `{"v":1,"readings":[…]}` for `riskwatch/v1/readings/{site}`.
pub fn encode_batch<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> Vec<u8> {
    let items: Vec<Json> = readings.into_iter().map(reading_json).collect();
    json!({ "v": super::WIRE_VERSION, "readings": items }).to_string().into_bytes()
}
