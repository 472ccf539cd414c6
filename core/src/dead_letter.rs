//! Dead letters: input that could not be used, kept with the reason and the original bytes so
//! nothing a gateway sent is ever silently lost.

use crate::time::rfc3339;
use crate::wire::DecodeError;
use crate::Timestamp;
use serde::Serialize;

/// One rejected message or batch item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Arrival time at riskwatch (wall clock).
    #[serde(with = "rfc3339")]
    pub received_at: Timestamp,
    /// The MQTT topic it arrived on.
    pub topic: String,
    /// Machine-readable reason code (see [`DecodeError::code`]).
    pub reason: &'static str,
    /// Human-readable reason naming the field.
    pub error: String,
    /// Index in the batch, when one item of a batch was rejected.
    pub index: Option<usize>,
    /// The sensor, when it could be read.
    pub sensor: Option<String>,
    /// The original bytes (the whole payload, or the one batch item as JSON).
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl DeadLetter {
    /// A dead letter for an error, with its raw bytes.
    pub fn new(
        received_at: Timestamp,
        topic: &str,
        err: &DecodeError,
        index: Option<usize>,
        sensor: Option<String>,
        raw: Vec<u8>,
    ) -> Self {
        DeadLetter {
            received_at,
            topic: topic.to_string(),
            reason: err.code(),
            error: err.to_string(),
            index,
            sensor,
            raw,
        }
    }
}
