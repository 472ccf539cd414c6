//! Decoding and validating v1 reading payloads.

use super::error::DecodeError;
use super::json::{Json, Key, Obj};
use super::topic::parse_reading_topic;
use super::WIRE_VERSION;
use crate::ids::is_valid_id;
use crate::kind::{canonical_unit, KindSpec, ValueShape};
use crate::reading::{Channel, Displacement, Quality, Reading, Value, Waveform};
use crate::registry::Registry;
use crate::time::{MAX_WIRE_MS, MIN_WIRE_MS};
use crate::{SensorKind, Timestamp};
use std::cell::Cell;
use std::sync::Arc;

/// Caps that keep one hostile or broken gateway from costing anyone else memory or time.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Most readings in one batch.
    pub max_batch: usize,
    /// Longest id or unit string.
    pub max_string: usize,
    /// Most waveform channels.
    pub max_channels: usize,
    /// Most samples per waveform channel.
    pub max_samples: usize,
    /// Highest waveform sample rate.
    pub max_rate_hz: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_batch: 1000,
            max_string: 64,
            max_channels: 6,
            max_samples: 10_000,
            max_rate_hz: 10_000.0,
        }
    }
}

/// One reading of a batch that was refused; the others in the message were still accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRejection {
    /// Position in `readings` (`None` for a single-reading message).
    pub index: Option<usize>,
    /// The sensor id, when it could be read.
    pub sensor: Option<String>,
    /// Why.
    pub error: DecodeError,
    /// The item's JSON text, for the dead-letter record.
    pub raw: String,
}

/// What one message yielded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Valid readings, in payload order.
    pub readings: Vec<Reading>,
    /// Refused items.
    pub rejected: Vec<ItemRejection>,
}

/// Decodes one MQTT message. `Err` means nothing in it could be used (the whole payload goes to
/// dead letter); otherwise each item is accepted or rejected on its own.
pub fn decode(topic: &str, payload: &[u8], registry: &Registry, limits: &Limits) -> Result<Decoded, DecodeError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(DecodeError::Oversized { size: payload.len(), limit: limits.max_payload_bytes });
    }
    let place =
        parse_reading_topic(topic).map_err(|reason| DecodeError::BadTopic { topic: topic.to_string(), reason })?;
    registry.authorise(place.gateway, place.site).map_err(|reason| DecodeError::NotAuthorised {
        gateway: place.gateway.map(str::to_string),
        site: place.site.to_string(),
        reason,
    })?;
    // One UTF-8 check of the whole payload is cheaper than serde_json checking string by
    // string; invalid UTF-8 goes through from_slice for its positioned error.
    let root: Json<'_> = match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    }
    .map_err(|e| json_error(payload, &e))?;
    let Json::Object(obj) = root else {
        return Err(wrong_type("(payload)", "a JSON object", &root));
    };
    if let Some(v) = obj.get(Key::V) {
        if v.as_u64() != Some(WIRE_VERSION) {
            return Err(DecodeError::UnsupportedVersion { version: v.to_string() });
        }
    }
    let exercise = flag(&obj, Key::Exercise, &|| "exercise".into())?.unwrap_or(false);
    let ctx = Ctx {
        registry,
        limits,
        topic_site: place.site,
        topic_sensor: place.sensor,
        exercise,
        last_spec: Cell::new(None),
    };
    let mut out = Decoded::default();
    match obj.get(Key::Readings) {
        None => {
            if place.sensor.is_none() {
                return Err(DecodeError::MissingField { field: "readings".into() });
            }
            push_item(&ctx, &obj, None, &mut out);
        }
        Some(Json::Array(items)) => {
            if items.is_empty() {
                return Err(DecodeError::EmptyBatch);
            }
            if items.len() > limits.max_batch {
                return Err(DecodeError::BatchTooLarge { len: items.len(), limit: limits.max_batch });
            }
            out.readings.reserve(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Json::Object(m) => push_item(&ctx, m, Some(i), &mut out),
                    other => out.rejected.push(ItemRejection {
                        index: Some(i),
                        sensor: None,
                        error: wrong_type(&format!("readings[{i}]"), "a JSON object", other),
                        raw: other.to_string(),
                    }),
                }
            }
        }
        Some(other) => return Err(wrong_type("readings", "an array of readings", other)),
    }
    Ok(out)
}

struct Ctx<'a> {
    registry: &'a Registry,
    limits: &'a Limits,
    topic_site: &'a str,
    topic_sensor: Option<&'a str>,
    /// The message's top-level `exercise` mark, which every reading in it inherits.
    exercise: bool,
    /// The kind spec of the previous reading: a batch is mostly of one kind.
    last_spec: Cell<Option<(&'a SensorKind, &'a KindSpec)>>,
}

impl<'a> Ctx<'a> {
    /// The spec of a registered sensor's kind (always in the catalog).
    fn spec_of(&self, kind: &'a SensorKind) -> Option<&'a KindSpec> {
        if let Some((k, spec)) = self.last_spec.get() {
            if k == kind {
                return Some(spec);
            }
        }
        let (_, spec) = self.registry.catalog().lookup(kind.as_str())?;
        self.last_spec.set(Some((kind, spec)));
        Some(spec)
    }
}

/// A field's name for error messages (`readings[3].unit`), built only when an error needs it:
/// accepted readings cost no formatting.
type Name<'n> = &'n dyn Fn() -> String;

/// Where a reading sits in its message: `readings[i].` in a batch, nothing in a single-reading
/// message.
#[derive(Clone, Copy)]
struct Item(Option<usize>);

impl Item {
    fn field(self, name: &str) -> String {
        match self.0 {
            Some(i) => format!("readings[{i}].{name}"),
            None => name.to_string(),
        }
    }
}

/// An optional boolean (`null` = absent).
fn flag(m: &Obj<'_>, key: Key, field: Name<'_>) -> Result<Option<bool>, DecodeError> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(&field(), "true or false", other)),
    }
}

fn push_item(ctx: &Ctx<'_>, m: &Obj<'_>, index: Option<usize>, out: &mut Decoded) {
    match reading(ctx, m, Item(index)) {
        Ok(r) => out.readings.push(r),
        Err(error) => out.rejected.push(ItemRejection {
            index,
            sensor: m
                .get(Key::Sensor)
                .and_then(Json::as_str)
                .map(str::to_string)
                .or_else(|| ctx.topic_sensor.map(str::to_string)),
            error,
            raw: m.to_string(),
        }),
    }
}

fn reading(ctx: &Ctx<'_>, m: &Obj<'_>, p: Item) -> Result<Reading, DecodeError> {
    let max = ctx.limits.max_string;
    // sensor: from the payload or the topic; both present must agree.
    let sent_sensor = opt_str(m, Key::Sensor, &|| p.field("sensor"), max)?;
    let sensor_id = match (sent_sensor, ctx.topic_sensor) {
        (Some(s), Some(t)) if s != t => {
            return Err(DecodeError::Mismatch {
                field: p.field("sensor"),
                sent: s.into(),
                expected: t.into(),
                source_of_truth: "topic",
            })
        }
        (Some(s), _) => s,
        (None, Some(t)) => t,
        (None, None) => return Err(DecodeError::MissingField { field: p.field("sensor") }),
    };
    // Registered ids are valid ids, so only an unknown one needs checking.
    let Some(sensor) = ctx.registry.sensor(sensor_id) else {
        if !is_valid_id(sensor_id) {
            return Err(DecodeError::BadValue {
                field: p.field("sensor"),
                reason: format!("{sensor_id:?} is not a valid id (letters, digits, - _ .)"),
            });
        }
        return Err(DecodeError::UnknownSensor { field: p.field("sensor"), sensor: sensor_id.into() });
    };
    if let Some(site) = opt_str(m, Key::Site, &|| p.field("site"), max)? {
        if site != ctx.topic_site {
            return Err(DecodeError::Mismatch {
                field: p.field("site"),
                sent: site.into(),
                expected: ctx.topic_site.into(),
                source_of_truth: "topic",
            });
        }
    }
    if sensor.site.as_str() != ctx.topic_site {
        return Err(DecodeError::Mismatch {
            field: p.field("site"),
            sent: ctx.topic_site.into(),
            expected: sensor.site.to_string(),
            source_of_truth: "registry",
        });
    }
    let kind_name = req_str(m, Key::Kind, &|| p.field("kind"), max)?;
    let registered = (kind_name == sensor.kind.as_str()).then(|| ctx.spec_of(&sensor.kind)).flatten();
    let (kind, spec) = match registered {
        Some(spec) => (sensor.kind.clone(), spec),
        None => {
            let (kind, spec) = ctx
                .registry
                .catalog()
                .lookup(kind_name)
                .ok_or_else(|| DecodeError::UnknownKind { field: p.field("kind"), kind: kind_name.into() })?;
            if kind != sensor.kind {
                return Err(DecodeError::KindMismatch {
                    field: p.field("kind"),
                    sensor: sensor_id.into(),
                    registered: sensor.kind.to_string(),
                    sent: kind_name.into(),
                });
            }
            (kind, spec)
        }
    };
    let ts = timestamp(m.get(Key::Ts), &|| p.field("ts"))?;
    let unit_sent = req_str(m, Key::Unit, &|| p.field("unit"), max)?;
    let unit = canonical_unit(unit_sent);
    // The registry holds only units of the sensor's kind, so matching the registered unit is
    // matching one of the kind's.
    if unit != &*sensor.unit {
        return Err(DecodeError::UnitMismatch {
            field: p.field("unit"),
            unit: unit_sent.into(),
            expected: sensor.unit.to_string(),
        });
    }
    let value_json = m.get(Key::Value).ok_or_else(|| DecodeError::MissingField { field: p.field("value") })?;
    let value_field = || p.field("value");
    let value = match spec.shape {
        ValueShape::Scalar => Value::Scalar(number(value_json, &value_field)?),
        ValueShape::Displacement => Value::Displacement(displacement(value_json, &value_field)?),
        ValueShape::Waveform => Value::Waveform(waveform(value_json, &value_field, ctx.limits)?),
    };
    let quality = match m.get(Key::Quality) {
        None | Some(Json::Null) => Quality::NotEvaluated,
        Some(q) => q
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| Quality::try_from(n).ok())
            .ok_or_else(|| DecodeError::BadQuality { field: p.field("quality"), value: q.to_string() })?,
    };
    let exercise = match flag(m, Key::Exercise, &|| p.field("exercise"))? {
        // A batch marked as an exercise cannot contain live readings: a drill must never be
        // able to pass for real data, item by item.
        Some(false) if ctx.exercise => {
            return Err(DecodeError::BadValue {
                field: p.field("exercise"),
                reason: "false inside a message marked \"exercise\": true".into(),
            })
        }
        Some(b) => b || ctx.exercise,
        None => ctx.exercise,
    };
    Ok(Reading {
        sensor: sensor.id.clone(),
        site: sensor.site.clone(),
        kind,
        ts,
        value,
        unit: Arc::clone(&sensor.unit),
        quality,
        exercise,
    })
}

fn timestamp(v: Option<&Json<'_>>, field: Name<'_>) -> Result<Timestamp, DecodeError> {
    let bad = |value: &Json<'_>, reason: String| DecodeError::BadTimestamp {
        field: field(),
        value: value.to_string(),
        reason,
    };
    let ts = match v {
        None => return Err(DecodeError::MissingField { field: field() }),
        Some(j @ Json::Str(s)) => {
            if is_non_finite_text(s) {
                return Err(DecodeError::NonFinite { field: field() });
            }
            Timestamp::parse_rfc3339(s).map_err(|r| bad(j, r))?
        }
        Some(j @ Json::Num(n)) => match n.as_i64() {
            Some(ms) => Timestamp(ms),
            None => return Err(bad(j, "epoch time must be an integer number of milliseconds".into())),
        },
        Some(other) => return Err(wrong_type(&field(), "RFC 3339 text or integer epoch milliseconds", other)),
    };
    if !(MIN_WIRE_MS..MAX_WIRE_MS).contains(&ts.millis()) {
        let value = v.map(Json::to_string).unwrap_or_default();
        let hint = if (MIN_WIRE_MS / 1000..MAX_WIRE_MS / 1000).contains(&ts.millis()) {
            " (looks like epoch seconds; send milliseconds)"
        } else {
            ""
        };
        return Err(DecodeError::BadTimestamp {
            field: field(),
            value,
            reason: format!("outside 2000-01-01..2100-01-01{hint}"),
        });
    }
    Ok(ts)
}

fn number(v: &Json<'_>, field: Name<'_>) -> Result<f64, DecodeError> {
    match v {
        Json::Num(n) => n.as_f64().filter(|x| x.is_finite()).ok_or_else(|| DecodeError::NonFinite { field: field() }),
        Json::Str(s) if is_non_finite_text(s) => Err(DecodeError::NonFinite { field: field() }),
        other => Err(wrong_type(&field(), "a number", other)),
    }
}

fn displacement(v: &Json<'_>, field: Name<'_>) -> Result<Displacement, DecodeError> {
    let Json::Object(m) = v else {
        return Err(shape_error(&field(), "an object {\"e\", \"n\", \"u\"} (GNSS displacement)", v));
    };
    let comp = |key: Key| {
        let f = || format!("{}.{}", field(), key.name());
        m.get(key).ok_or_else(|| DecodeError::MissingField { field: f() }).and_then(|x| number(x, &f))
    };
    Ok(Displacement { e: comp(Key::E)?, n: comp(Key::N)?, u: comp(Key::U)? })
}

fn waveform(v: &Json<'_>, field: Name<'_>, limits: &Limits) -> Result<Waveform, DecodeError> {
    let Json::Object(m) = v else {
        return Err(shape_error(&field(), "an object {\"rate_hz\", \"channels\"} (waveform packet)", v));
    };
    let rate_field = || format!("{}.rate_hz", field());
    let rate_hz =
        number(m.get(Key::RateHz).ok_or_else(|| DecodeError::MissingField { field: rate_field() })?, &rate_field)?;
    if !(rate_hz > 0.0 && rate_hz <= limits.max_rate_hz) {
        return Err(DecodeError::BadValue {
            field: rate_field(),
            reason: format!("sample rate must be in (0, {}] Hz", limits.max_rate_hz),
        });
    }
    let ch_field = || format!("{}.channels", field());
    let chans = match m.get(Key::Channels) {
        None => return Err(DecodeError::MissingField { field: ch_field() }),
        Some(Json::Object(c)) => c.members(),
        Some(other) => return Err(wrong_type(&ch_field(), "an object of channel name → sample array", other)),
    };
    if chans.is_empty() || chans.len() > limits.max_channels {
        return Err(DecodeError::BadValue {
            field: ch_field(),
            reason: format!("must hold 1 to {} channels", limits.max_channels),
        });
    }
    let mut channels = Vec::with_capacity(chans.len());
    for (name, samples) in chans {
        let cf = || format!("{}.{name}", ch_field());
        if name.len() > limits.max_string {
            return Err(DecodeError::TooLong { field: cf(), limit: limits.max_string });
        }
        let Json::Array(arr) = samples else {
            return Err(wrong_type(&cf(), "an array of numbers", samples));
        };
        if arr.is_empty() || arr.len() > limits.max_samples {
            return Err(DecodeError::BadValue {
                field: cf(),
                reason: format!("must hold 1 to {} samples", limits.max_samples),
            });
        }
        let mut out = Vec::with_capacity(arr.len());
        for (i, s) in arr.iter().enumerate() {
            out.push(number(s, &|| format!("{}[{i}]", cf()))?);
        }
        channels.push(Channel { name: name.to_string(), samples: out });
    }
    let n = channels[0].samples.len();
    if let Some(c) = channels.iter().find(|c| c.samples.len() != n) {
        return Err(DecodeError::BadValue {
            field: format!("{}.{}", ch_field(), c.name),
            reason: format!(
                "has {} samples but channel {} has {n}; all channels must be equally long",
                c.samples.len(),
                channels[0].name
            ),
        });
    }
    Ok(Waveform { rate_hz, channels })
}

fn opt_str<'a>(m: &'a Obj<'_>, key: Key, field: Name<'_>, limit: usize) -> Result<Option<&'a str>, DecodeError> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        // Bytes bound characters from above: most strings are judged without counting.
        Some(Json::Str(s)) if s.len() > limit && s.chars().count() > limit => {
            Err(DecodeError::TooLong { field: field(), limit })
        }
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(&field(), "a string", other)),
    }
}

fn req_str<'a>(m: &'a Obj<'_>, key: Key, field: Name<'_>, limit: usize) -> Result<&'a str, DecodeError> {
    opt_str(m, key, field, limit)?.ok_or_else(|| DecodeError::MissingField { field: field() })
}

fn wrong_type(field: &str, expected: &'static str, found: &Json<'_>) -> DecodeError {
    DecodeError::WrongType { field: field.into(), expected, found: found.type_name() }
}

/// A `value` that is not the shape its kind takes (a number for a GNSS point) is a bad value,
/// as [`DecodeError::BadValue`] documents, rather than a wrong type.
fn shape_error(field: &str, expected: &'static str, found: &Json<'_>) -> DecodeError {
    DecodeError::BadValue {
        field: field.into(),
        reason: format!("this kind takes {expected}, found {}", found.type_name()),
    }
}

fn is_non_finite_text(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "nan" | "-nan" | "inf" | "-inf" | "+inf" | "infinity" | "-infinity" | "+infinity"
    )
}

/// Turns a serde_json syntax error into `NonFinite` when the offending token is a bare
/// `NaN`/`Infinity` (a common gateway bug) or a number beyond f64, and `NotJson` otherwise.
fn json_error(payload: &[u8], e: &serde_json::Error) -> DecodeError {
    if e.to_string().contains("number out of range") {
        return DecodeError::NonFinite { field: format!("(payload, line {} column {})", e.line(), e.column()) };
    }
    let line_start: usize = payload.split(|b| *b == b'\n').take(e.line().saturating_sub(1)).map(|l| l.len() + 1).sum();
    let at = (line_start + e.column()).saturating_sub(1).min(payload.len());
    let from = at.saturating_sub(1);
    let tail = &payload[from..payload.len().min(from + 10)];
    let text = String::from_utf8_lossy(tail);
    let t =
        text.trim_start_matches(|c: char| c == ':' || c == ',' || c == '[' || c.is_whitespace()).to_ascii_lowercase();
    let t = t.trim_start_matches(['-', '+']);
    if t.starts_with("nan") || t.starts_with("inf") {
        return DecodeError::NonFinite { field: format!("(payload, line {} column {})", e.line(), e.column()) };
    }
    DecodeError::NotJson { detail: e.to_string() }
}
