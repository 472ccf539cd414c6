//! Domain detectors: the recognised method of each field as pure, streaming numerics.
//!
//! Each detector is a small state machine fed one reading (or one waveform packet) at a time,
//! carrying its state across calls so that live packets, replayed history and tests give the
//! same numbers. Rules use them as stateful measures.

pub mod butterworth;
pub mod coincidence;
pub mod gnss;
pub mod intensity;
pub mod sta_lta;
