//! The records riskwatch writes to Kafka (docs/operations.md, "Topics").
//!
//! | topic        | key                 | value                                   | headers |
//! |--------------|---------------------|-----------------------------------------|---------|
//! | readings     | site id (`_clock` on inputs) | that site's readings (binary, or a v1 wire batch: `riskwatch-format` header), an officer's command for an alert of that site, or a rules-host input (clock tick, reload) | source MQTT topic, arrival time; `riskwatch-record: command` on commands, `input` on inputs |
//! | alerts       | alert id            | the alert event JSON (wire-format.md)   | event id, level |
//! | dead letters | site id or `_unknown` | the original bytes, unchanged         | reason code, error text, MQTT topic, batch index, sensor, arrival time |
//! | rules state  | `{readings topic}/{partition}` | [`StateRecord`] JSON         | — |

use rdkafka::message::{Header, Headers, OwnedHeaders};
use riskwatch_core::wire::{binary, decode, encode_batch, topic, DecodeError, Limits};
use riskwatch_core::{AlertEvent, DeadLetter, Reading, Registry};
use serde::{Deserialize, Serialize};

/// Header names.
pub mod header {
    /// MQTT topic the data arrived on.
    pub const MQTT_TOPIC: &str = "riskwatch-mqtt-topic";
    /// Arrival time at ingest, epoch milliseconds.
    pub const RECEIVED_AT: &str = "riskwatch-received-at";
    /// Dead letters: machine-readable reason code.
    pub const REASON: &str = "riskwatch-reason";
    /// Dead letters: human-readable error naming the field.
    pub const ERROR: &str = "riskwatch-error";
    /// Dead letters: index of the rejected item in its batch.
    pub const INDEX: &str = "riskwatch-index";
    /// Dead letters: the sensor, when it could be read.
    pub const SENSOR: &str = "riskwatch-sensor";
    /// Alerts: the event id.
    pub const EVENT_ID: &str = "riskwatch-event-id";
    /// Alerts: the level name.
    pub const LEVEL: &str = "riskwatch-level";
    /// Readings records: `readings-bin-1` on a binary record ([`riskwatch_core::wire::binary`]);
    /// absent on a JSON one (a v1 wire batch).
    pub const FORMAT: &str = "riskwatch-format";
    /// Readings topic: `command` on an officer's lifecycle command routed to the partition of
    /// its alert's site, `input` on a rules-host input written by a rules worker (a clock tick,
    /// a reload); absent on readings.
    pub const RECORD: &str = "riskwatch-record";
    /// Dead letters written by a consumer (the sink): the record it could not use, as
    /// `{topic}/{partition}@{offset}`.
    pub const SOURCE: &str = "riskwatch-source";
    /// Dead letters written by a consumer: which component refused it (`sink`).
    pub const REFUSED_BY: &str = "riskwatch-refused-by";
}

/// Headers of a rules-host input (`riskwatch_rules::Input`, JSON) written into a readings
/// partition by the rules worker that owns it: clock ticks and reloads are recorded in the log
/// the worker consumes, before they take effect, so whoever replays the partition from a saved
/// state sees them at the same place (docs/architecture.md, "Exact recovery").
pub fn input_headers(at_ms: i64) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header { key: header::RECORD, value: Some("input") })
        .insert(Header { key: header::RECEIVED_AT, value: Some(&at_ms.to_string()) })
}

/// Is this readings-topic record a rules-host input?
pub fn is_input<H: Headers>(headers: Option<&H>) -> bool {
    header_str(headers, header::RECORD) == Some("input")
}

/// Is this readings-topic record something other than readings (a command or an input)?
pub fn is_control<H: Headers>(headers: Option<&H>) -> bool {
    header_str(headers, header::RECORD).is_some()
}

/// The arrival time a record carries (epoch ms), if any.
pub fn received_at<H: Headers>(headers: Option<&H>) -> Option<i64> {
    header_str(headers, header::RECEIVED_AT)?.parse().ok()
}

/// Headers of a lifecycle command travelling on the readings topic.
pub fn command_headers(mqtt_topic: &str, received_at_ms: i64) -> OwnedHeaders {
    reading_headers(mqtt_topic, received_at_ms, RecordFormat::Json)
        .insert(Header { key: header::RECORD, value: Some("command") })
}

/// Value of the [`header::FORMAT`] header on forecast records: the forecast as validated by
/// ingest, in the v1 wire shape (wire-format.md §14, `riskwatch_core::wire::encode_forecast`).
pub const FORECAST_JSON: &str = "forecast-json-1";

/// Headers of a forecast record on the readings topic (wire-format.md §12): its MQTT topic and
/// arrival time, `riskwatch-record: forecast` and `riskwatch-format: forecast-json-1`.
pub fn forecast_headers(mqtt_topic: &str, received_at_ms: i64) -> OwnedHeaders {
    reading_headers(mqtt_topic, received_at_ms, RecordFormat::Json)
        .insert(Header { key: header::RECORD, value: Some("forecast") })
        .insert(Header { key: header::FORMAT, value: Some(FORECAST_JSON) })
}

/// Is this readings-topic record a forecast?
pub fn is_forecast<H: Headers>(headers: Option<&H>) -> bool {
    header_str(headers, header::RECORD) == Some("forecast")
}

/// Reads a forecast record back (its MQTT topic header names the sensor), checking the
/// format header and, as for JSON readings records, the registry.
pub fn decode_forecast_record<H: Headers>(
    value: &[u8],
    headers: Option<&H>,
    registry: &Registry,
) -> Result<riskwatch_core::Forecast, DecodeError> {
    match header_str(headers, header::FORMAT) {
        Some(FORECAST_JSON) => {}
        other => return Err(DecodeError::BadRecord { detail: format!("forecast record of format {other:?}") }),
    }
    let mqtt_topic = header_str(headers, header::MQTT_TOPIC).unwrap_or_default();
    riskwatch_core::wire::decode_forecast(mqtt_topic, value, registry, &Default::default())
}

/// Is this readings-topic record an officer's command?
pub fn is_command<H: Headers>(headers: Option<&H>) -> bool {
    header_str(headers, header::RECORD) == Some("command")
}

/// How ingest writes readings records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// Compact binary ([`riskwatch_core::wire::binary`], header `riskwatch-format:
    /// readings-bin-1`): validated once at ingest, read back without parsing or checking again.
    #[default]
    Binary,
    /// A v1 wire batch (JSON), for third-party consumers of the readings topic; riskwatch's
    /// own consumers validate it again against their registry.
    Json,
}

/// Value of the [`header::FORMAT`] header on binary readings records.
pub const BINARY_READINGS: &str = "readings-bin-1";

/// Readings grouped by site, each group as `(site, record value)`.
pub fn reading_records(readings: &[Reading], format: RecordFormat) -> Vec<(String, Vec<u8>)> {
    let mut sites: Vec<&str> = readings.iter().map(|r| r.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    sites
        .into_iter()
        .map(|site| {
            let mine = readings.iter().filter(|r| r.site.as_str() == site);
            let value = match format {
                RecordFormat::Binary => binary::encode_readings(&mine.cloned().collect::<Vec<_>>()),
                RecordFormat::Json => encode_batch(mine),
            };
            (site.to_string(), value)
        })
        .collect()
}

/// Decodes a readings record back into readings: a binary one as ingest validated it; a JSON
/// one validated again against this process's registry (a consumer with an older registry
/// dead-letters instead of guessing).
pub fn decode_reading_record<H: Headers>(
    site: &str,
    value: &[u8],
    headers: Option<&H>,
    registry: &Registry,
    limits: &Limits,
) -> Result<riskwatch_core::wire::Decoded, DecodeError> {
    match header_str(headers, header::FORMAT) {
        Some(BINARY_READINGS) => binary::decode_readings(value)
            .map(|readings| riskwatch_core::wire::Decoded { readings, rejected: Vec::new() })
            .map_err(|e| DecodeError::BadRecord { detail: e.0 }),
        Some(other) => Err(DecodeError::BadRecord { detail: format!("unknown record format {other:?}") }),
        None => decode(&topic::batch_topic(site), value, registry, limits),
    }
}

/// Headers for a readings record.
pub fn reading_headers(mqtt_topic: &str, received_at_ms: i64, format: RecordFormat) -> OwnedHeaders {
    let h = OwnedHeaders::new()
        .insert(Header { key: header::MQTT_TOPIC, value: Some(mqtt_topic) })
        .insert(Header { key: header::RECEIVED_AT, value: Some(&received_at_ms.to_string()) });
    match format {
        RecordFormat::Binary => h.insert(Header { key: header::FORMAT, value: Some(BINARY_READINGS) }),
        RecordFormat::Json => h,
    }
}

/// Key and headers of a dead letter (the value is `d.raw`, unchanged).
pub fn dead_letter_record(d: &DeadLetter) -> (String, OwnedHeaders) {
    let key = topic::parse_reading_topic(&d.topic).map(|t| t.site.to_string()).unwrap_or_else(|_| "_unknown".into());
    let mut h = OwnedHeaders::new()
        .insert(Header { key: header::REASON, value: Some(d.reason) })
        .insert(Header { key: header::ERROR, value: Some(&d.error) })
        .insert(Header { key: header::MQTT_TOPIC, value: Some(&d.topic) })
        .insert(Header { key: header::RECEIVED_AT, value: Some(&d.received_at.millis().to_string()) });
    if let Some(i) = d.index {
        h = h.insert(Header { key: header::INDEX, value: Some(&i.to_string()) });
    }
    if let Some(s) = &d.sensor {
        h = h.insert(Header { key: header::SENSOR, value: Some(s) });
    }
    (key, h)
}

/// Key and headers of a dead letter for a whole Kafka record a consumer (`by`, e.g. `sink`)
/// could not use: `reason` code, `error` text and where the record was (`{topic}/{partition}@{offset}`).
/// The value is the record's own bytes, unchanged; the key is the record's key.
pub fn refused_record(key: &str, reason: &str, error: &str, source: &str, by: &str) -> (String, OwnedHeaders) {
    let h = OwnedHeaders::new()
        .insert(Header { key: header::REASON, value: Some(reason) })
        .insert(Header { key: header::ERROR, value: Some(error) })
        .insert(Header { key: header::SOURCE, value: Some(source) })
        .insert(Header { key: header::REFUSED_BY, value: Some(by) });
    (if key.is_empty() { "_unknown".to_string() } else { key.to_string() }, h)
}

/// Value and headers of an alert record (the key is the alert id).
pub fn alert_record(e: &AlertEvent) -> (Vec<u8>, OwnedHeaders) {
    let value = serde_json::to_vec(e).unwrap_or_default();
    let h = OwnedHeaders::new()
        .insert(Header { key: header::EVENT_ID, value: Some(&e.event_id) })
        .insert(Header { key: header::LEVEL, value: Some(e.level.as_str()) });
    (value, h)
}

/// A header's value as text.
pub fn header_str<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a str> {
    let h = headers?;
    h.iter().find(|x| x.key == name).and_then(|x| x.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// Key of a partition's state record.
pub fn state_key(readings_topic: &str, partition: i32) -> String {
    format!("{readings_topic}/{partition}")
}

/// What a rules worker saves for one readings partition: the engine's state after consuming
/// every record before `next_offset`. A worker taking the partition over restores it and skips
/// records below `next_offset`, so nothing is applied twice to the state.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StateRecord<S> {
    /// First offset not yet reflected in `engine`.
    pub next_offset: i64,
    /// Partition count of the readings topic when saved (the site mapping depends on it).
    pub partitions: i32,
    /// The engine snapshot.
    pub engine: S,
}
