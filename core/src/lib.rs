//! The shared vocabulary of riskwatch.
//!
//! Every other crate speaks in these types: a [`Reading`] comes in from a gateway, the rule
//! engine turns readings into [`AlertEvent`]s graded on the four-colour [`Level`] ladder, and
//! the [`registry`] says which sensors exist, where they are and which per-station thresholds
//! apply. The [`wire`] module is the gateway-facing JSON codec. Nothing here does I/O, so the
//! same code runs in the live pipeline, in replay and in benchmarks.

pub mod alert;
pub mod board;
pub mod dead_letter;
pub mod forecast;
pub mod ids;
pub mod kind;
pub mod level;
pub mod outage;
pub mod problem;
pub mod reading;
pub mod registry;
pub mod secret;
pub mod time;
pub mod wire;

pub use alert::{AlertCategory, AlertChange, AlertEvent, Call};
pub use board::{AlertState, Board};
pub use dead_letter::DeadLetter;
pub use forecast::Forecast;
pub use ids::{SensorId, SiteId};
pub use kind::{KindCatalog, KindSpec, SensorKind, ValueShape};
pub use level::Level;
pub use problem::{FieldLines, Problem};
pub use reading::{Channel, Displacement, Quality, Reading, Value, Waveform};
pub use registry::{Attributes, Gateway, Registry, RegistryError, Sensor, Site, Sl651Binding};
pub use time::Timestamp;
