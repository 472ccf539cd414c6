//! Every way a wire message can be wrong, each with the field it concerns.

/// Why a message, or one reading in it, was rejected. `field` is a path into the payload such
/// as `readings[3].value.channels.z[17]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the configured cap; not parsed at all.
    #[error("payload is {size} bytes, over the {limit}-byte limit")]
    Oversized {
        /// Payload size in bytes.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Not parseable as JSON (or not UTF-8).
    #[error("payload is not valid JSON: {detail}")]
    NotJson {
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// A number is NaN or infinite (JSON has no such numbers; some gateways send them anyway).
    #[error("{field}: NaN or infinite number; send a finite value (a sensor that cannot measure sends a placeholder value with quality 4 or 9)")]
    NonFinite {
        /// Where.
        field: String,
    },
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    MissingField {
        /// Which field.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// Which field.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// `kind` names no known kind.
    #[error("{field}: unknown kind {kind:?}")]
    UnknownKind {
        /// Which field.
        field: String,
        /// The name sent.
        kind: String,
    },
    /// `kind` is known but differs from the kind the sensor is registered with.
    #[error("{field}: sensor {sensor} is registered as {registered}, not {sent}")]
    KindMismatch {
        /// Which field.
        field: String,
        /// The sensor.
        sensor: String,
        /// Kind in the registry.
        registered: String,
        /// Kind sent.
        sent: String,
    },
    /// `unit` is not a unit of the kind, or not the sensor's registered unit.
    #[error("{field}: unit {unit:?} does not match; expected {expected:?}")]
    UnitMismatch {
        /// Which field.
        field: String,
        /// Unit sent.
        unit: String,
        /// Unit expected.
        expected: String,
    },
    /// `ts` cannot be read or is out of range.
    #[error("{field}: bad timestamp {value}: {reason}")]
    BadTimestamp {
        /// Which field.
        field: String,
        /// What was sent (as JSON text).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The value's shape does not fit the kind (e.g. a number for a GNSS point).
    #[error("{field}: {reason}")]
    BadValue {
        /// Which field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `quality` is not one of 1, 2, 3, 4, 9.
    #[error("{field}: quality flag {value} is not one of 1, 2, 3, 4, 9")]
    BadQuality {
        /// Which field.
        field: String,
        /// What was sent.
        value: String,
    },
    /// A string field is longer than the cap.
    #[error("{field}: longer than {limit} characters")]
    TooLong {
        /// Which field.
        field: String,
        /// The cap.
        limit: usize,
    },
    /// The publishing gateway may not publish this (unknown gateway, a site not its own, or
    /// no gateway named where the registry requires one).
    #[error("{reason}")]
    NotAuthorised {
        /// The gateway named by the topic, if any.
        gateway: Option<String>,
        /// The site the message is for.
        site: String,
        /// Why, in words.
        reason: String,
    },
    /// The topic is not a v1 reading topic.
    #[error("topic {topic:?}: {reason}")]
    BadTopic {
        /// The topic.
        topic: String,
        /// What is wrong.
        reason: String,
    },
    /// A sensor or site in the payload contradicts the topic or the registry.
    #[error("{field}: {sent:?} contradicts {expected:?} ({source_of_truth})")]
    Mismatch {
        /// Which field.
        field: String,
        /// Value in the payload.
        sent: String,
        /// Value from the topic or registry.
        expected: String,
        /// `topic` or `registry`.
        source_of_truth: &'static str,
    },
    /// The sensor is not in the registry.
    #[error("{field}: sensor {sensor:?} is not registered")]
    UnknownSensor {
        /// Which field.
        field: String,
        /// The id sent.
        sensor: String,
    },
    /// `v` names a version this code does not speak.
    #[error("v: unsupported wire version {version} (this endpoint speaks 1)")]
    UnsupportedVersion {
        /// What was sent.
        version: String,
    },
    /// A batch holds more readings than the cap.
    #[error("readings: batch of {len} readings is over the limit of {limit}")]
    BatchTooLarge {
        /// Batch length.
        len: usize,
        /// The cap.
        limit: usize,
    },
    /// A batch holds no readings.
    #[error("readings: batch is empty")]
    EmptyBatch,
    /// A binary readings record between riskwatch processes could not be read
    /// ([`crate::wire::binary`]).
    #[error("binary readings record: {detail}")]
    BadRecord {
        /// What was wrong.
        detail: String,
    },
}

impl DecodeError {
    /// A short machine-readable reason code, stable across releases (used in dead-letter
    /// records, rejection messages and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::NonFinite { .. } => "non_finite",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnknownKind { .. } => "unknown_kind",
            DecodeError::KindMismatch { .. } => "kind_mismatch",
            DecodeError::UnitMismatch { .. } => "unit_mismatch",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::BadQuality { .. } => "bad_quality",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::BadTopic { .. } => "bad_topic",
            DecodeError::NotAuthorised { .. } => "not_authorised",
            DecodeError::Mismatch { .. } => "mismatch",
            DecodeError::UnknownSensor { .. } => "unknown_sensor",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::BatchTooLarge { .. } => "batch_too_large",
            DecodeError::EmptyBatch => "empty_batch",
            DecodeError::BadRecord { .. } => "bad_record",
        }
    }
}
