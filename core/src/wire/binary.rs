//! Compact binary readings, for what riskwatch processes hand each other: the rules host's
//! input journal and, on the production path, the Kafka readings records ingest writes after
//! it has validated them once (docs/wire-format.md, "Between riskwatch processes").
//!
//! Layout (little-endian): a table of the site/kind/unit texts the readings use, then per
//! reading the sensor id, three table indices, event time (i64 ms), quality, exercise flag and
//! value (tagged: scalar f64; displacement e/n/u; waveform rate, channels of samples). A
//! standalone record ([`encode_readings`]) starts with [`MAGIC`] and [`VERSION`]. Reading never
//! panics: truncated or foreign bytes are an error naming what was wrong.

use crate::reading::{Channel, Displacement, Value, Waveform};
use crate::{Quality, Reading, SensorId, SensorKind, SiteId, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;

/// First byte of a standalone readings record.
pub const MAGIC: u8 = b'R';
/// Its format version (second byte).
pub const VERSION: u8 = 1;

const SCALAR: u8 = 0;
const DISPLACEMENT: u8 = 1;
const WAVEFORM: u8 = 2;

/// Why bytes could not be read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BinaryError(pub String);

/// A standalone readings record: magic, version, readings.
pub fn encode_readings(readings: &[Reading]) -> Vec<u8> {
    let mut w = Vec::with_capacity(16 + readings.len() * 48);
    w.push(MAGIC);
    w.push(VERSION);
    put_readings(&mut w, readings);
    w
}

/// Reads a record written by [`encode_readings`].
pub fn decode_readings(bytes: &[u8]) -> Result<Vec<Reading>, BinaryError> {
    let mut r = Reader::new(bytes);
    let (magic, version) = (r.u8("magic")?, r.u8("version")?);
    if magic != MAGIC || version != VERSION {
        return Err(BinaryError(format!("not a version-{VERSION} readings record (starts {magic:#04x} {version})")));
    }
    let readings = r.readings()?;
    r.finish()?;
    Ok(readings)
}

/// Appends readings (without magic and version).
pub fn put_readings(w: &mut Vec<u8>, readings: &[Reading]) {
    let mut table: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u16> = HashMap::new();
    let mut refs = Vec::with_capacity(readings.len());
    for r in readings {
        let mut entry = [0u16; 3];
        for (slot, text) in entry.iter_mut().zip([r.site.as_str(), r.kind.as_str(), &*r.unit]) {
            *slot = *index.entry(text).or_insert_with(|| {
                table.push(text);
                (table.len() - 1) as u16
            });
        }
        refs.push(entry);
    }
    put_u32(w, table.len() as u32);
    for t in &table {
        put_str(w, t);
    }
    put_u32(w, readings.len() as u32);
    for (r, [site, kind, unit]) in readings.iter().zip(refs) {
        put_str(w, r.sensor.as_str());
        for i in [site, kind, unit] {
            w.extend_from_slice(&i.to_le_bytes());
        }
        put_i64(w, r.ts.millis());
        w.push(r.quality.code());
        w.push(u8::from(r.exercise));
        match &r.value {
            Value::Scalar(v) => {
                w.push(SCALAR);
                put_f64(w, *v);
            }
            Value::Displacement(d) => {
                w.push(DISPLACEMENT);
                for v in [d.e, d.n, d.u] {
                    put_f64(w, v);
                }
            }
            Value::Waveform(wf) => {
                w.push(WAVEFORM);
                put_f64(w, wf.rate_hz);
                put_u32(w, wf.channels.len() as u32);
                for c in &wf.channels {
                    put_str(w, &c.name);
                    put_u32(w, c.samples.len() as u32);
                    for v in &c.samples {
                        put_f64(w, *v);
                    }
                }
            }
        }
    }
}

/// Appends an i64.
pub fn put_i64(w: &mut Vec<u8>, v: i64) {
    w.extend_from_slice(&v.to_le_bytes());
}

/// Appends an f64 (its bits).
pub fn put_f64(w: &mut Vec<u8>, v: f64) {
    w.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// Appends a u32.
pub fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}

/// Appends bytes, length first.
pub fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend_from_slice(b);
}

/// Appends a string, length first.
pub fn put_str(w: &mut Vec<u8>, s: &str) {
    put_bytes(w, s.as_bytes());
}

/// Reads what the `put_*` functions wrote, checking every length against what is left.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// An error unless every byte was read.
    pub fn finish(&self) -> Result<(), BinaryError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(BinaryError(format!("{n} bytes left over"))),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BinaryError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| BinaryError(format!("truncated at {what} (byte {})", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], BinaryError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, BinaryError> {
        Ok(self.take(1, what)?[0])
    }

    /// A u16.
    pub fn u16(&mut self, what: &str) -> Result<u16, BinaryError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A u32.
    pub fn u32(&mut self, what: &str) -> Result<u32, BinaryError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// An i64.
    pub fn i64(&mut self, what: &str) -> Result<i64, BinaryError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// An f64.
    pub fn f64(&mut self, what: &str) -> Result<f64, BinaryError> {
        Ok(f64::from_bits(u64::from_le_bytes(self.array(what)?)))
    }

    /// A count of items each at least `min_bytes` long, checked against what is left (so a
    /// corrupt count cannot ask for a huge allocation).
    pub fn len(&mut self, what: &str, min_bytes: usize) -> Result<usize, BinaryError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_bytes) > self.bytes.len() - self.at {
            return Err(BinaryError(format!("{what}: count {n} exceeds the entry")));
        }
        Ok(n)
    }

    /// Bytes written by [`put_bytes`].
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], BinaryError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    /// A string written by [`put_str`].
    pub fn str(&mut self, what: &str) -> Result<&'a str, BinaryError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| BinaryError(format!("{what}: not UTF-8")))
    }

    /// Readings written by [`put_readings`].
    pub fn readings(&mut self) -> Result<Vec<Reading>, BinaryError> {
        let n = self.len("text table", 4)?;
        let mut table: Vec<Arc<str>> = Vec::with_capacity(n);
        for _ in 0..n {
            table.push(Arc::from(self.str("text")?));
        }
        let text = |i: u16| {
            table.get(usize::from(i)).cloned().ok_or_else(|| BinaryError(format!("text index {i} out of range")))
        };
        let n = self.len("readings", 24)?;
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            let sensor = SensorId::new(self.str("sensor")?);
            let site = SiteId::new(&*text(self.u16("site")?)?);
            let kind_text = text(self.u16("kind")?)?;
            let kind = SensorKind::builtin(&kind_text).unwrap_or(SensorKind::Custom(kind_text));
            let unit = text(self.u16("unit")?)?;
            let ts = Timestamp(self.i64("ts")?);
            let quality = Quality::try_from(self.u8("quality")?).map_err(BinaryError)?;
            let exercise = self.u8("exercise")? != 0;
            let value = match self.u8("value tag")? {
                SCALAR => Value::Scalar(self.f64("value")?),
                DISPLACEMENT => {
                    Value::Displacement(Displacement { e: self.f64("e")?, n: self.f64("n")?, u: self.f64("u")? })
                }
                WAVEFORM => {
                    let rate_hz = self.f64("rate")?;
                    let channels = self.len("channels", 8)?;
                    let mut out = Vec::with_capacity(channels);
                    for _ in 0..channels {
                        let name = self.str("channel")?.to_string();
                        let samples = self.len("samples", 8)?;
                        let mut s = Vec::with_capacity(samples);
                        for _ in 0..samples {
                            s.push(self.f64("sample")?);
                        }
                        out.push(Channel { name, samples: s });
                    }
                    Value::Waveform(Waveform { rate_hz, channels: out })
                }
                other => return Err(BinaryError(format!("value tag {other}"))),
            };
            readings.push(Reading { sensor, site, kind, ts, value, unit, quality, exercise });
        }
        Ok(readings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: &str, value: Value) -> Reading {
        Reading {
            sensor: SensorId::new(sensor),
            site: SiteId::new("plant-a"),
            kind: SensorKind::GasCombustible,
            ts: Timestamp::from_millis(1_700_000_000_123),
            value,
            unit: Arc::from("%LEL"),
            quality: Quality::Good,
            exercise: true,
        }
    }

    #[test]
    fn readings_survive_a_round_trip_and_damage_is_an_error_not_a_panic() {
        let readings = vec![
            reading("lel-1", Value::Scalar(23.25)),
            reading("gnss-1", Value::Displacement(Displacement { e: 1.5, n: -2.0, u: 0.25 })),
            reading(
                "seis-1",
                Value::Waveform(Waveform {
                    rate_hz: 100.0,
                    channels: vec![Channel { name: "Z".into(), samples: vec![0.1, -0.2] }],
                }),
            ),
        ];
        let bytes = encode_readings(&readings);
        assert_eq!(decode_readings(&bytes).unwrap(), readings);
        // Every truncation, and every single-byte change, is read without panicking; the
        // truncations are all errors.
        for n in 0..bytes.len() {
            assert!(decode_readings(&bytes[..n]).is_err(), "truncated to {n} bytes read as readings");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode_readings(&b);
        }
        assert!(decode_readings(br#"{"v":1,"readings":[]}"#).is_err(), "JSON is not a binary record");
    }
}
