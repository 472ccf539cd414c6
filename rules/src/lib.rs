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
mod config;
mod engine;
mod measure;
mod message;
mod threshold;

pub use bands::{BandSpec, BandState, Direction, Delay, ThresholdBands, Transition};
pub use config::{RuleError, RuleSet, RuleSpec, Selector};
pub use engine::{Engine, EngineStats};
pub use measure::Measure;
pub use message::MessageTemplate;
pub use threshold::ThresholdExpr;
