//! Decoding and validating v1 forecast messages (docs/wire-format.md §14).
//!
//! One message is one forecast of one sensor, on `riskwatch/v1/forecasts/{site}/{sensor}` (or
//! `riskwatch/v1/gateways/{gateway}/forecasts/{site}/{sensor}`):
//!
//! ```json
//! {"v": 1, "sensor": "hankou-wl", "kind": "water_level", "unit": "m",
//!  "issued": "2020-07-05T00:00:00Z",
//!  "valid": ["2020-07-05T06:00:00Z", "2020-07-05T12:00:00Z"],
//!  "values": [27.4, 27.9]}
//! ```
//!
//! An ensemble gives `"members": [[…], […], …]` instead of `"values"`. The sensor, site, kind
//! and unit are checked against the registry exactly as a reading's are; the series must fit
//! [`ForecastLimits`]. A forecast is accepted or refused whole (there are no items).

use super::error::DecodeError;
use super::WIRE_VERSION;
use crate::forecast::Forecast;
use crate::ids::is_valid_id;
use crate::kind::{canonical_unit, ValueShape};
use crate::registry::Registry;
use crate::time::{MAX_WIRE_MS, MIN_WIRE_MS};
use crate::Timestamp;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Caps on one forecast message.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastLimits {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Most ensemble members.
    pub max_members: usize,
    /// Most valid times.
    pub max_steps: usize,
    /// Furthest a valid time may lie after the issue time, ms.
    pub max_horizon_ms: i64,
    /// Longest id or unit string.
    pub max_string: usize,
}

impl Default for ForecastLimits {
    fn default() -> Self {
        ForecastLimits {
            max_payload_bytes: 256 * 1024,
            max_members: 100,
            max_steps: 1000,
            max_horizon_ms: 30 * 86_400_000,
            max_string: 64,
        }
    }
}

/// Subscription filter covering every forecast topic.
pub const FORECASTS_FILTER: &str = "riskwatch/v1/forecasts/#";
/// Subscription filter covering every gateway-named forecast topic.
pub const GATEWAY_FORECASTS_FILTER: &str = "riskwatch/v1/gateways/+/forecasts/#";

/// Topic a forecast of one sensor is published on.
pub fn forecast_topic(site: &str, sensor: &str) -> String {
    format!("{}/forecasts/{site}/{sensor}", super::topic::PREFIX)
}

/// Site, sensor and (optionally) gateway named by a forecast topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastTopic<'a> {
    /// The `{site}` level.
    pub site: &'a str,
    /// The `{sensor}` level.
    pub sensor: &'a str,
    /// The `{gateway}` level of a gateway-named topic.
    pub gateway: Option<&'a str>,
}

/// Whether a topic is meant as a forecast topic (then [`decode_forecast`] takes it, and any
/// error in it is a forecast's).
pub fn is_forecast_topic(topic: &str) -> bool {
    topic.starts_with("riskwatch/v1/forecasts/")
        || topic
            .strip_prefix("riskwatch/v1/gateways/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_, rest)| rest.starts_with("forecasts/"))
}

/// Splits a forecast topic, or says what is wrong with it.
pub fn parse_forecast_topic(topic: &str) -> Result<ForecastTopic<'_>, String> {
    let (gateway, rest) = match topic.strip_prefix("riskwatch/v1/gateways/") {
        Some(rest) => {
            let (gw, rest) = rest.split_once('/').ok_or("expected riskwatch/v1/gateways/{gateway}/forecasts/…")?;
            if !is_valid_id(gw) {
                return Err(format!("gateway level {gw:?} is not a valid id"));
            }
            (Some(gw), rest.strip_prefix("forecasts/").ok_or("expected …/{gateway}/forecasts/{site}/{sensor}")?)
        }
        None => (
            None,
            topic.strip_prefix("riskwatch/v1/forecasts/").ok_or("topic must start with riskwatch/v1/forecasts/")?,
        ),
    };
    let mut parts = rest.split('/');
    let (site, sensor) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if parts.next().is_some() {
        return Err("too many topic levels (expected forecasts/{site}/{sensor})".into());
    }
    for (what, id) in [("site", site), ("sensor", sensor)] {
        if !is_valid_id(id) {
            return Err(format!("{what} level {id:?} is not a valid id"));
        }
    }
    Ok(ForecastTopic { site, sensor, gateway })
}

/// Decodes and validates one forecast message against the registry.
pub fn decode_forecast(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    limits: &ForecastLimits,
) -> Result<Forecast, DecodeError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(DecodeError::Oversized { size: payload.len(), limit: limits.max_payload_bytes });
    }
    let place =
        parse_forecast_topic(topic).map_err(|reason| DecodeError::BadTopic { topic: topic.to_string(), reason })?;
    registry.authorise(place.gateway, place.site).map_err(|reason| DecodeError::NotAuthorised {
        gateway: place.gateway.map(str::to_string),
        site: place.site.to_string(),
        reason,
    })?;
    let root: Value = serde_json::from_slice(payload).map_err(|e| {
        if e.to_string().contains("number out of range") {
            DecodeError::NonFinite { field: format!("(payload, line {} column {})", e.line(), e.column()) }
        } else {
            DecodeError::NotJson { detail: e.to_string() }
        }
    })?;
    let Value::Object(m) = root else {
        return Err(wrong_type("(payload)", "a JSON object", &root));
    };
    for key in m.keys() {
        if !matches!(
            key.as_str(),
            "v" | "sensor" | "site" | "kind" | "unit" | "issued" | "valid" | "values" | "members"
        ) {
            return Err(DecodeError::BadValue { field: key.clone(), reason: "unknown field of a forecast".into() });
        }
    }
    if let Some(v) = m.get("v") {
        if v.as_u64() != Some(WIRE_VERSION) {
            return Err(DecodeError::UnsupportedVersion { version: v.to_string() });
        }
    }
    let max = limits.max_string;
    if let Some(s) = opt_str(&m, "sensor", max)? {
        if s != place.sensor {
            return Err(DecodeError::Mismatch {
                field: "sensor".into(),
                sent: s.into(),
                expected: place.sensor.into(),
                source_of_truth: "topic",
            });
        }
    }
    let Some(sensor) = registry.sensor(place.sensor) else {
        return Err(DecodeError::UnknownSensor { field: "sensor".into(), sensor: place.sensor.into() });
    };
    if let Some(site) = opt_str(&m, "site", max)? {
        if site != place.site {
            return Err(DecodeError::Mismatch {
                field: "site".into(),
                sent: site.into(),
                expected: place.site.into(),
                source_of_truth: "topic",
            });
        }
    }
    if sensor.site.as_str() != place.site {
        return Err(DecodeError::Mismatch {
            field: "site".into(),
            sent: place.site.into(),
            expected: sensor.site.to_string(),
            source_of_truth: "registry",
        });
    }
    let kind_name = opt_str(&m, "kind", max)?.ok_or_else(|| DecodeError::MissingField { field: "kind".into() })?;
    let (kind, spec) = registry
        .catalog()
        .lookup(kind_name)
        .ok_or_else(|| DecodeError::UnknownKind { field: "kind".into(), kind: kind_name.into() })?;
    if kind != sensor.kind {
        return Err(DecodeError::KindMismatch {
            field: "kind".into(),
            sensor: place.sensor.into(),
            registered: sensor.kind.to_string(),
            sent: kind_name.into(),
        });
    }
    if spec.shape != ValueShape::Scalar {
        return Err(DecodeError::BadValue {
            field: "kind".into(),
            reason: format!("{kind_name} readings are {}; forecasts are of scalar kinds only", spec.shape.as_str()),
        });
    }
    let unit_sent = opt_str(&m, "unit", max)?.ok_or_else(|| DecodeError::MissingField { field: "unit".into() })?;
    if canonical_unit(unit_sent) != &*sensor.unit {
        return Err(DecodeError::UnitMismatch {
            field: "unit".into(),
            unit: unit_sent.into(),
            expected: sensor.unit.to_string(),
        });
    }
    let issued = timestamp(m.get("issued"), "issued")?;
    let valid = match m.get("valid") {
        None => return Err(DecodeError::MissingField { field: "valid".into() }),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(wrong_type("valid", "an array of times", other)),
    };
    if valid.is_empty() || valid.len() > limits.max_steps {
        return Err(DecodeError::BadValue {
            field: "valid".into(),
            reason: format!("must hold 1 to {} valid times", limits.max_steps),
        });
    }
    let mut times = Vec::with_capacity(valid.len());
    for (i, t) in valid.iter().enumerate() {
        let field = format!("valid[{i}]");
        let ts = timestamp(Some(t), &field)?;
        let bad = |reason: String| DecodeError::BadTimestamp { field: field.clone(), value: t.to_string(), reason };
        if ts <= issued {
            return Err(bad("must be after the issue time".into()));
        }
        if ts.millis() - issued.millis() > limits.max_horizon_ms {
            return Err(bad(format!("more than {} days after the issue time", limits.max_horizon_ms / 86_400_000)));
        }
        if times.last().is_some_and(|last| ts <= *last) {
            return Err(bad("valid times must be strictly increasing".into()));
        }
        times.push(ts);
    }
    let members = match (m.get("values"), m.get("members")) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::BadValue {
                field: "members".into(),
                reason: "give either values (one series) or members (an ensemble), not both".into(),
            })
        }
        (None, None) => return Err(DecodeError::MissingField { field: "values".into() }),
        (Some(v), None) => vec![series(v, "values", times.len())?],
        (None, Some(Value::Array(ms))) => {
            if ms.is_empty() || ms.len() > limits.max_members {
                return Err(DecodeError::BadValue {
                    field: "members".into(),
                    reason: format!("must hold 1 to {} members", limits.max_members),
                });
            }
            ms.iter()
                .enumerate()
                .map(|(i, s)| series(s, &format!("members[{i}]"), times.len()))
                .collect::<Result<_, _>>()?
        }
        (None, Some(other)) => return Err(wrong_type("members", "an array of value arrays", other)),
    };
    Ok(Forecast {
        sensor: sensor.id.clone(),
        site: sensor.site.clone(),
        kind,
        unit: Arc::clone(&sensor.unit),
        issued,
        valid: times,
        members,
    })
}

/// The wire JSON of a forecast (§14): `values` for one member, `members` for an ensemble;
/// times as epoch milliseconds.
pub fn encode_forecast(f: &Forecast) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("v".into(), WIRE_VERSION.into());
    m.insert("sensor".into(), f.sensor.as_str().into());
    m.insert("site".into(), f.site.as_str().into());
    m.insert("kind".into(), f.kind.as_str().into());
    m.insert("unit".into(), (*f.unit).into());
    m.insert("issued".into(), f.issued.millis().into());
    m.insert("valid".into(), f.valid.iter().map(|t| Value::from(t.millis())).collect());
    match f.members.as_slice() {
        [one] => m.insert("values".into(), one.iter().map(|v| Value::from(*v)).collect()),
        all => m.insert(
            "members".into(),
            all.iter().map(|s| s.iter().map(|v| Value::from(*v)).collect::<Value>()).collect(),
        ),
    };
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

fn series(v: &Value, field: &str, len: usize) -> Result<Vec<f64>, DecodeError> {
    let Value::Array(a) = v else {
        return Err(wrong_type(field, "an array of numbers", v));
    };
    if a.len() != len {
        return Err(DecodeError::BadValue {
            field: field.into(),
            reason: format!("has {} values for {len} valid times", a.len()),
        });
    }
    a.iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::Number(n) => n
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| DecodeError::NonFinite { field: format!("{field}[{i}]") }),
            other => Err(wrong_type(&format!("{field}[{i}]"), "a number", other)),
        })
        .collect()
}

fn timestamp(v: Option<&Value>, field: &str) -> Result<Timestamp, DecodeError> {
    let bad =
        |v: &Value, reason: String| DecodeError::BadTimestamp { field: field.into(), value: v.to_string(), reason };
    let (ts, v) = match v {
        None => return Err(DecodeError::MissingField { field: field.into() }),
        Some(v @ Value::String(s)) => (Timestamp::parse_rfc3339(s).map_err(|r| bad(v, r))?, v),
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(ms) => (Timestamp(ms), v),
            None => return Err(bad(v, "epoch time must be an integer number of milliseconds".into())),
        },
        Some(other) => return Err(wrong_type(field, "RFC 3339 text or integer epoch milliseconds", other)),
    };
    if !(MIN_WIRE_MS..MAX_WIRE_MS).contains(&ts.millis()) {
        return Err(bad(v, "outside 2000-01-01..2100-01-01".into()));
    }
    Ok(ts)
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str, limit: usize) -> Result<Option<&'a str>, DecodeError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > limit => Err(DecodeError::TooLong { field: key.into(), limit }),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> DecodeError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    DecodeError::WrongType { field: field.into(), expected, found }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
[[sites]]
id = "hankou"
[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
[[sensors]]
id = "g1"
site = "hankou"
kind = "gnss_displacement"
unit = "mm"
"#;

    fn decode(payload: &str) -> Result<Forecast, DecodeError> {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        decode_forecast(&forecast_topic("hankou", "hankou-wl"), payload.as_bytes(), &reg, &ForecastLimits::default())
    }

    #[test]
    fn a_deterministic_and_an_ensemble_forecast_decode() {
        let f = decode(
            r#"{"v":1,"kind":"water_level","unit":"m","issued":"2020-07-05T00:00:00Z",
               "valid":["2020-07-05T06:00:00Z",1593945000000],"values":[27.4,27.9]}"#,
        )
        .unwrap();
        assert_eq!(f.members, vec![vec![27.4, 27.9]]);
        assert_eq!(f.valid[1].millis() - f.issued.millis(), 10 * 3_600_000 + 30 * 60_000);
        let e = decode(
            r#"{"kind":"water_level","unit":"m","issued":1593907200000,"valid":[1593928800000],
               "members":[[1.0],[2.0],[4.0]]}"#,
        )
        .unwrap();
        assert_eq!(e.members.len(), 3);
        assert_eq!(e.median(), vec![2.0]);
    }

    #[test]
    fn refusals_name_the_field_and_reason() {
        let base = r#""kind":"water_level","unit":"m","issued":"2020-07-05T00:00:00Z""#;
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"kind":"water_level","unit":"m","issued":"2020-07-05T00:00:00Z","valid":["2020-07-04T06:00:00Z"],"values":[1]}"#,
                "bad_timestamp",
                "valid[0]",
            ),
            (
                &format!(r#"{{{base},"valid":[1593928800000,1593928800000],"values":[1,2]}}"#),
                "bad_timestamp",
                "valid[1]",
            ),
            (&format!(r#"{{{base},"valid":[1593928800000],"values":[1,2]}}"#), "bad_value", "values"),
            (&format!(r#"{{{base},"valid":[1593928800000],"members":[]}}"#), "bad_value", "members"),
            (&format!(r#"{{{base},"valid":[1593928800000]}}"#), "missing_field", "values"),
            (&format!(r#"{{{base},"valid":[1593928800000],"values":["x"]}}"#), "wrong_type", "values[0]"),
            (
                r#"{"kind":"water_level","unit":"cm","issued":1593907200000,"valid":[1593928800000],"values":[1]}"#,
                "unit_mismatch",
                "unit",
            ),
            (
                r#"{"kind":"rainfall","unit":"m","issued":1593907200000,"valid":[1593928800000],"values":[1]}"#,
                "kind_mismatch",
                "kind",
            ),
            (r#"{"v":2,"kind":"water_level"}"#, "unsupported_version", ""),
            (&format!(r#"{{{base},"valid":[1593928800000],"values":[1],"exercise":true}}"#), "bad_value", "exercise"),
        ];
        for (payload, code, field) in cases {
            let e = decode(payload).expect_err(payload);
            assert_eq!(e.code(), *code, "{payload}: {e}");
            assert!(e.to_string().starts_with(field), "{payload}: {e}");
        }
        let members: Vec<String> = (0..101).map(|_| "[1]".to_string()).collect();
        let e =
            decode(&format!(r#"{{{base},"valid":[1593928800000],"members":[{}]}}"#, members.join(","))).unwrap_err();
        assert!(e.to_string().contains("1 to 100 members"), "{e}");
    }

    #[test]
    fn encoded_forecasts_decode_to_themselves() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        for members in [vec![vec![27.125, 28.0]], vec![vec![1.5, 2.0], vec![0.1, -3.25], vec![7.0, 8.0]]] {
            let f = Forecast {
                sensor: crate::SensorId::new("hankou-wl"),
                site: crate::SiteId::new("hankou"),
                kind: crate::SensorKind::WaterLevel,
                unit: Arc::from("m"),
                issued: Timestamp(1_593_907_200_000),
                valid: vec![Timestamp(1_593_910_800_000), Timestamp(1_593_914_400_000)],
                members,
            };
            let topic = forecast_topic("hankou", "hankou-wl");
            assert_eq!(decode_forecast(&topic, &encode_forecast(&f), &reg, &ForecastLimits::default()), Ok(f));
        }
    }

    #[test]
    fn topics_and_registry_are_checked_like_readings() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        let p = br#"{"kind":"water_level","unit":"m","issued":1593907200000,"valid":[1593928800000],"values":[1]}"#;
        let l = ForecastLimits::default();
        assert_eq!(
            decode_forecast("riskwatch/v1/forecasts/hankou/nope", p, &reg, &l).unwrap_err().code(),
            "unknown_sensor"
        );
        assert_eq!(
            decode_forecast("riskwatch/v1/forecasts/other/hankou-wl", p, &reg, &l).unwrap_err().code(),
            "mismatch"
        );
        assert_eq!(decode_forecast("riskwatch/v1/forecasts/hankou", p, &reg, &l).unwrap_err().code(), "bad_topic");
        let g =
            br#"{"kind":"gnss_displacement","unit":"mm","issued":1593907200000,"valid":[1593928800000],"values":[1]}"#;
        assert_eq!(decode_forecast("riskwatch/v1/forecasts/hankou/g1", g, &reg, &l).unwrap_err().code(), "bad_value");
        assert!(is_forecast_topic("riskwatch/v1/gateways/gw/forecasts/hankou/hankou-wl"));
        assert!(!is_forecast_topic("riskwatch/v1/readings/hankou/hankou-wl"));
        assert!(decode_forecast("riskwatch/v1/gateways/gw/forecasts/hankou/hankou-wl", p, &reg, &l).is_err());
    }
}
