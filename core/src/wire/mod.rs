//! The gateway-facing wire format, version 1 (see `docs/wire-format.md`).
//!
//! [`decode`] turns one MQTT message (topic + payload) into validated [`crate::Reading`]s,
//! checking every reading against the registry. A message that cannot be read at all (not
//! JSON, oversized, bad topic) fails whole; in a batch, each bad item is rejected on its own
//! with its index while the good items go through, so one faulty channel on a gateway never
//! costs the readings of its neighbours.

pub mod binary;
mod decode;
mod encode;
mod error;
pub mod forecast;
mod json;
pub mod topic;

pub use decode::{decode, Decoded, ItemRejection, Limits};
pub use encode::{encode_batch, encode_reading, value_json};
pub use error::DecodeError;
pub use forecast::{decode_forecast, encode_forecast, ForecastLimits};

/// The wire format version this code speaks; also the `v1` in every topic.
pub const WIRE_VERSION: u64 = 1;
