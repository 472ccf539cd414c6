//! Readings and alert events to QuestDB over its line protocol (questdb-rs, ILP over HTTP).
//!
//! Rows are buffered and written by [`IlpWriter::flush`]; a failed flush keeps the buffer so the
//! caller can retry (and must not commit its Kafka offsets until a flush succeeds). Table and
//! column names match deploy/questdb/schema.sql; QuestDB's `DEDUP UPSERT KEYS` make a row
//! written twice (at-least-once delivery) land once.

use questdb::ingress::{Buffer, Sender, TimestampMicros};
use riskwatch_core::{AlertEvent, Reading, Value};

/// Every table the sink writes (each created by deploy/questdb/schema.sql).
pub const TABLES: &[&str] = &[
    "readings",
    "gnss_readings",
    "waveform_packets",
    "exercise_readings",
    "exercise_gnss_readings",
    "exercise_waveform_packets",
    "alert_events",
];

/// Why a row or a flush failed.
#[derive(Debug, thiserror::Error)]
#[error("QuestDB: {0}")]
pub struct IlpError(#[from] questdb::Error);

/// A buffered line-protocol writer.
pub struct IlpWriter {
    conf: String,
    sender: Option<Sender>,
    buffer: Buffer,
    rows: usize,
}

impl IlpWriter {
    /// A writer for a questdb-rs configuration string such as `http::addr=HOST:9000;`. The
    /// connection is made on the first flush (and again after a failure).
    pub fn new(conf: &str) -> Result<Self, IlpError> {
        let sender = Sender::from_conf(conf)?;
        let buffer = sender.new_buffer();
        Ok(IlpWriter { conf: conf.to_string(), sender: Some(sender), buffer, rows: 0 })
    }

    /// Rows buffered since the last successful flush.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Buffers one reading: scalars to `readings`, GNSS solutions to `gnss_readings`, waveform
    /// packets (as their peak) to `waveform_packets`. A drill's readings go to the same tables
    /// prefixed `exercise_`, so a replayed flood never mixes with the station's real history.
    pub fn add_reading(&mut self, r: &Reading) -> Result<(), IlpError> {
        let table = match (&r.value, r.exercise) {
            (Value::Scalar(_), false) => "readings",
            (Value::Displacement(_), false) => "gnss_readings",
            (Value::Waveform(_), false) => "waveform_packets",
            (Value::Scalar(_), true) => "exercise_readings",
            (Value::Displacement(_), true) => "exercise_gnss_readings",
            (Value::Waveform(_), true) => "exercise_waveform_packets",
        };
        let row = self
            .buffer
            .table(table)?
            .symbol("site", r.site.as_str())?
            .symbol("sensor", r.sensor.as_str())?
            .symbol("kind", r.kind.as_str())?
            .symbol("unit", &*r.unit)?;
        let row = match &r.value {
            Value::Scalar(v) => row.column_f64("value", *v)?,
            Value::Displacement(d) => row.column_f64("e", d.e)?.column_f64("n", d.n)?.column_f64("u", d.u)?,
            Value::Waveform(w) => row
                .column_f64("peak", w.peak_vector())?
                .column_i64("samples", w.channels.first().map_or(0, |c| c.samples.len()) as i64)?
                .column_f64("rate_hz", w.rate_hz)?,
        };
        row.column_i64("quality", i64::from(r.quality.code()))?.at(TimestampMicros::new(r.ts.millis() * 1000))?;
        self.rows += 1;
        Ok(())
    }

    /// Buffers one alert event in `alert_events`. The `exercise` column is only sent for a
    /// drill's events; in the table deploy/questdb/schema.sql creates, live rows read false.
    pub fn add_event(&mut self, e: &AlertEvent) -> Result<(), IlpError> {
        let row = self
            .buffer
            .table("alert_events")?
            .symbol("alert_id", &e.alert_id)?
            .symbol("rule_id", &*e.rule_id)?
            .symbol("site", e.site.as_str())?
            .symbol("subject", e.subject.as_str())?
            .symbol("kind", e.kind.as_str())?
            .symbol("change", e.change.as_str())?
            .symbol("level", e.level.as_str())?
            .symbol("highest_level", e.highest_level.as_str())?
            .symbol("unit", &*e.unit)?
            .column_i64("seq", i64::from(e.seq))?
            .column_f64("value", e.value)?
            .column_f64("threshold", e.threshold)?
            .column_str("event_id", &e.event_id)?
            .column_str("message_zh", &e.message_zh)?
            .column_str("message_en", &e.message_en)?;
        let row = if e.exercise { row.column_bool("exercise", true)? } else { row };
        row.at(TimestampMicros::new(e.ts.millis() * 1000))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes everything buffered. On success the buffer is empty; on failure it is kept (and
    /// the connection re-made on the next attempt), so retrying never loses a row.
    pub fn flush(&mut self) -> Result<(), IlpError> {
        if self.rows == 0 {
            return Ok(());
        }
        let sender = match self.sender.as_mut() {
            Some(s) if !s.must_close() => s,
            _ => self.sender.insert(Sender::from_conf(&self.conf)?),
        };
        match sender.flush_and_keep(&self.buffer) {
            Ok(()) => {
                self.buffer.clear();
                self.rows = 0;
                Ok(())
            }
            Err(e) => {
                self.sender = None;
                Err(e.into())
            }
        }
    }
}
