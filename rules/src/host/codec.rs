//! The journal encoding of an [`Input`]: compact binary, versioned, and safe on any bytes.
//!
//! An input is journaled for every MQTT message on the embedded wiring's hot path, so its
//! encoding is a few memory copies rather than JSON: a readings input of 50 gas readings takes
//! ~1.6 KB instead of ~6 KB. Layout (little-endian): format byte, input tag, `at` (i64 ms),
//! then per tag — readings: as [`riskwatch_core::wire::binary`] writes them; command: the
//! bytes; reload: a flag byte and the texts present. Decoding never panics: truncated or
//! foreign bytes are an error naming what was wrong.

use super::Input;
use crate::MemberLevel;
use riskwatch_core::wire::binary::{self, put_bytes, put_f64, put_i64, put_str, put_u32, BinaryError, Reader};
use riskwatch_core::{Forecast, Level, SensorId, SensorKind, SiteId, Timestamp};
use std::sync::Arc;

/// First byte of every encoded input.
const FORMAT: u8 = 1;

const READINGS: u8 = 0;
const COMMAND: u8 = 1;
const TICK: u8 = 2;
const RESUME: u8 = 3;
const RELOAD: u8 = 4;
const MEMBERS: u8 = 5;
const FORECAST: u8 = 6;

/// Why journal bytes could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("journal entry: {0}")]
pub struct CodecError(String);

impl From<BinaryError> for CodecError {
    fn from(e: BinaryError) -> Self {
        CodecError(e.0)
    }
}

pub(super) fn encode(input: &Input) -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    w.push(FORMAT);
    match input {
        Input::Readings { at, readings } => {
            w.push(READINGS);
            put_i64(&mut w, at.millis());
            binary::put_readings(&mut w, readings);
        }
        Input::Command { at, raw } => {
            w.push(COMMAND);
            put_i64(&mut w, at.millis());
            put_bytes(&mut w, raw);
        }
        Input::Tick { at } => {
            w.push(TICK);
            put_i64(&mut w, at.millis());
        }
        Input::Resume { at } => {
            w.push(RESUME);
            put_i64(&mut w, at.millis());
        }
        Input::Members { at, members } => {
            w.push(MEMBERS);
            put_i64(&mut w, at.millis());
            put_u32(&mut w, members.len() as u32);
            for m in members {
                put_str(&mut w, &m.rule);
                put_str(&mut w, m.sensor.as_str());
                w.push(m.level.map_or(0, |l| l.index() as u8 + 1));
                put_f64(&mut w, m.value);
                put_i64(&mut w, m.ts.millis());
                put_i64(&mut w, m.first_ts.millis());
                put_u32(&mut w, m.seq);
            }
        }
        Input::Forecast { at, forecast } => {
            w.push(FORECAST);
            put_i64(&mut w, at.millis());
            put_forecast(&mut w, forecast);
        }
        Input::Reload { at, rules, registry } => {
            w.push(RELOAD);
            put_i64(&mut w, at.millis());
            w.push(u8::from(rules.is_some()) | (u8::from(registry.is_some()) << 1));
            for text in [rules, registry].into_iter().flatten() {
                put_str(&mut w, text);
            }
        }
    }
    w
}

pub(super) fn decode(bytes: &[u8]) -> Result<Input, CodecError> {
    let mut r = Reader::new(bytes);
    let format = r.u8("format")?;
    if format != FORMAT {
        return Err(CodecError(format!("format {format} is not {FORMAT}")));
    }
    let tag = r.u8("tag")?;
    let at = Timestamp(r.i64("at")?);
    let input = match tag {
        READINGS => Input::Readings { at, readings: r.readings()? },
        COMMAND => Input::Command { at, raw: r.bytes("command")?.to_vec() },
        TICK => Input::Tick { at },
        RESUME => Input::Resume { at },
        MEMBERS => {
            let n = r.len("members", 37)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let rule: Arc<str> = Arc::from(r.str("rule")?);
                let sensor = SensorId::new(r.str("sensor")?);
                let level = match r.u8("level")? {
                    0 => None,
                    l => Some(
                        Level::ALL.get(usize::from(l) - 1).copied().ok_or_else(|| CodecError(format!("level {l}")))?,
                    ),
                };
                members.push(MemberLevel {
                    rule,
                    sensor,
                    level,
                    value: r.f64("value")?,
                    ts: Timestamp(r.i64("ts")?),
                    first_ts: Timestamp(r.i64("first_ts")?),
                    seq: r.u32("seq")?,
                });
            }
            Input::Members { at, members }
        }
        FORECAST => Input::Forecast { at, forecast: Box::new(read_forecast(&mut r)?) },
        RELOAD => {
            let flags = r.u8("flags")?;
            let rules = if flags & 1 != 0 { Some(r.str("rules")?.to_string()) } else { None };
            let registry = if flags & 2 != 0 { Some(r.str("registry")?.to_string()) } else { None };
            Input::Reload { at, rules, registry }
        }
        other => return Err(CodecError(format!("input tag {other}"))),
    };
    r.finish()?;
    Ok(input)
}

/// Sensor, site, kind, unit, issue time, the valid times, then each member's values.
fn put_forecast(w: &mut Vec<u8>, f: &Forecast) {
    put_str(w, f.sensor.as_str());
    put_str(w, f.site.as_str());
    put_str(w, f.kind.as_str());
    put_str(w, &f.unit);
    put_i64(w, f.issued.millis());
    put_u32(w, f.valid.len() as u32);
    for t in &f.valid {
        put_i64(w, t.millis());
    }
    put_u32(w, f.members.len() as u32);
    for m in &f.members {
        put_u32(w, m.len() as u32);
        for v in m {
            put_f64(w, *v);
        }
    }
}

fn read_forecast(r: &mut Reader<'_>) -> Result<Forecast, CodecError> {
    let sensor = SensorId::new(r.str("sensor")?);
    let site = SiteId::new(r.str("site")?);
    let kind_name = r.str("kind")?;
    let kind = SensorKind::builtin(kind_name).unwrap_or_else(|| SensorKind::Custom(Arc::from(kind_name)));
    let unit: Arc<str> = Arc::from(r.str("unit")?);
    let issued = Timestamp(r.i64("issued")?);
    let n = r.len("valid", 8)?;
    let mut valid = Vec::with_capacity(n);
    for _ in 0..n {
        valid.push(Timestamp(r.i64("valid")?));
    }
    let m = r.len("members", 4)?;
    let mut members = Vec::with_capacity(m);
    for _ in 0..m {
        let k = r.len("values", 8)?;
        let mut values = Vec::with_capacity(k);
        for _ in 0..k {
            values.push(r.f64("value")?);
        }
        members.push(values);
    }
    Ok(Forecast { sensor, site, kind, unit, issued, valid, members })
}
