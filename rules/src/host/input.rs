//! What changes a rules host's state: one ordered log of inputs.
//!
//! Everything that moves rule state — readings, officers' commands, the passing of the
//! processing clock, a restart, a new rules file or registry — is an [`Input`] carrying the
//! processing time it happened at. A wiring records each input durably (the embedded store's
//! input journal, a Kafka partition) before the events it causes are published; replaying the
//! recorded inputs after a snapshot gives back exactly the events of the uninterrupted run.

use riskwatch_core::{Forecast, Reading, Timestamp};
use serde::{Deserialize, Serialize};

/// One thing that happened to the rules host, at processing time `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// Validated readings of one message, as received (quality flags as the gateway sent them).
    Readings {
        /// Processing time.
        at: Timestamp,
        /// The readings, in payload order.
        readings: Vec<Reading>,
    },
    /// An officer's lifecycle command, as received (JSON, wire-format.md §9).
    Command {
        /// Processing time.
        at: Timestamp,
        /// The command's bytes (decoded by the host; a malformed one is refused, not lost).
        raw: Vec<u8>,
    },
    /// The processing clock reached `at`: reminders, stale sensors, time-based delays.
    Tick {
        /// Processing time.
        at: Timestamp,
    },
    /// The host runs again after a stop: sensors count their silence from `at`, so readings
    /// still queued at the broker do not all look stale at the first tick.
    Resume {
        /// Processing time.
        at: Timestamp,
    },
    /// Level changes of hazard bindings that network composites combine, as one readings
    /// partition's host reported them (the Kafka network host's input, see `network`).
    Members {
        /// Processing time.
        at: Timestamp,
        /// The changes, in the order they happened.
        members: Vec<crate::MemberLevel>,
    },
    /// One validated forecast (wire-format.md §14), as received.
    Forecast {
        /// Processing time.
        at: Timestamp,
        /// The forecast.
        forecast: Box<Forecast>,
    },
    /// New rules and/or a new registry take effect, keeping the state of what still exists.
    Reload {
        /// Processing time.
        at: Timestamp,
        /// The new rules file's text, if the rules changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rules: Option<String>,
        /// The new registry file's text, if the registry changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry: Option<String>,
    },
}

impl Input {
    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match self {
            Input::Readings { at, .. }
            | Input::Command { at, .. }
            | Input::Tick { at }
            | Input::Resume { at }
            | Input::Members { at, .. }
            | Input::Forecast { at, .. }
            | Input::Reload { at, .. } => *at,
        }
    }

    /// The input as recorded in a journal (compact binary, see `codec`; floats exactly).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::codec::encode(self)
    }

    /// An input read back from a journal; any bytes give an input or an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Input, super::codec::CodecError> {
        super::codec::decode(bytes)
    }
}
