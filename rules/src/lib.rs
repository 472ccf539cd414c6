//! The riskwatch rule engine: readings in, alert events out.
//!
//! This crate is *sans-IO*: it never opens a connection, sleeps or reads the wall clock. Time
//! is the event time carried by each reading. That is what lets the live pipeline, replays of
//! historical floods, tests and benchmarks all run exactly this code.
//!
//! A rules file ([`RuleSet`]) says which sensors a rule applies to, how to turn a reading into
//! a number ([`Measure`]) and where the four colour bands start ([`ThresholdExpr`], which may
//! refer to per-station registry attributes such as `warning_level`). [`Engine`] binds every
//! rule to every matching registered sensor, resolving thresholds once, and then runs each
//! reading through the [`ThresholdBands`] state machine of each binding.

mod bands;
mod chain_spec;
mod chains;
mod changes;
pub mod composite;
mod composite_coincidence;
mod condition;
mod config;
mod detector_measure;
pub mod detectors;
pub mod drill;
mod engine;
pub mod forecast;
pub mod forecast_rule;
mod grouping;
pub mod host;
pub mod lifecycle;
mod measure;
mod message;
mod names;
pub mod network;
pub mod out_of_service;
mod prefetch;
pub mod quality;
mod reminders;
mod sensor_table;
mod service_windows;
pub mod shelving;
mod snapshot;
mod threshold;
mod window;

pub use bands::{BandSpec, BandState, Delay, Direction, LevelInputs, ThresholdBands, Transition};
pub use chain_spec::{ChainSpec, TierSpec};
pub use chains::Walks;
pub use condition::{Cmp, Condition, Feature};
pub use config::{CompiledRule, RuleError, RuleSet, RuleSpec, Selector};
pub use detector_measure::{Detector, StaLtaParams};
pub use drill::Drill;
pub use engine::{Engine, EngineStats};
pub use host::{HostDelta, HostSnapshot, Input, Outcome, Refused, RulesHost};
pub use lifecycle::{Action, Command, CommandError};
pub use measure::Measure;
pub use message::MessageTemplate;
pub use network::{CompositeRole, MemberLevel};
pub use snapshot::{SensorState, Snapshot, SNAPSHOT_VERSION};
pub use threshold::ThresholdExpr;
pub use window::Window;
