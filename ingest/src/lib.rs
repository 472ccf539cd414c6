//! riskwatch sources: where readings come from.
//!
//! A source turns outside input into [`IngestEvent`]s: batches of validated readings, or dead
//! letters carrying the reason and the original bytes. Sources never drop input silently and
//! never apply rules; they hand everything to the next stage through a bounded channel, which
//! is also how back-pressure reaches the network.

mod accept;
pub mod front;
pub mod mqtt;
pub mod sl651;

use riskwatch_core::{DeadLetter, Reading};

/// What a source hands to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestEvent {
    /// Valid readings from one message, in payload order.
    Readings(Vec<Reading>),
    /// Something that could not be used.
    DeadLetter(DeadLetter),
    /// A lifecycle command from a duty officer (raw JSON; the rules stage decodes it).
    Command(Vec<u8>),
    /// A validated forecast (wire-format.md §14).
    Forecast(Box<riskwatch_core::Forecast>),
}

pub use front::{FrontLimits, GatewayFront};
pub use mqtt::{
    Confirmation, Delivery, LinkError, Message, MqttSource, MqttSourceConfig, RegistryHandle, SourceStats, Tls,
};
pub use sl651::{Sl651Limits, Sl651Server, Sl651Stats};
