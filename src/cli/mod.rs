//! The subcommands that are not services' wiring: each file one command.

pub mod bench;
pub mod bench_recovery;
pub mod demo;
pub mod drill;
pub mod healthcheck;
pub mod mqtt_acl;
pub mod replay;
pub mod report;
pub mod rules_check;
pub mod run;
pub mod simulate;
