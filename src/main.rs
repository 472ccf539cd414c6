//! `riskwatch`: the command line. Wiring only: every behaviour lives in the library crates.
//!
//! - `cli/` — one file per subcommand (`run`/`ingest`/`rules`/`sink`, `rules check`, `demo`,
//!   `simulate`, `replay`, `report`, `bench`, `mqtt-acl`, `healthcheck`);
//! - `embedded/` — the one-process wiring (broker, rules stage, recovery, outbox, store);
//! - `kafka/` — the production wiring (ingest, rules worker, sink);
//! - `metrics` (riskwatch's own series), `topology` (the production topology file);
//! - the duty console is its own crate (`console/`), and what every process shares — config
//!   files, MQTT TLS, the metrics registry and endpoints, shutdown — is `riskwatch-service`.

mod cli;
mod embedded;
mod kafka;
mod logging;
mod metrics;
mod topology;

use riskwatch_console as console;
use riskwatch_service::{mqtt_tls, settings, shutdown};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cli::run::{components, ConfigArg, RunArgs};
use cli::{bench, demo, healthcheck, mqtt_acl, replay, report, simulate};
use std::path::PathBuf;
use topology::Component;

/// mimalloc rather than the C library's allocator. With glibc's malloc a 100 000-sensor
/// `riskwatch run` kept ~5.3 KB of private memory per sensor although ~2 KB of it was live:
/// the per-thread arenas held on to what loading the registry (a TOML document tree) and the
/// periodic state copies had freed. mimalloc returns it: ~1.5 KB per sensor, and ~10 % less CPU
/// per reading (docs/benchmarks.md, "Third round").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opts this process out of transparent huge pages, where the system gives them to every
/// process (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`). With them, the first
/// touch of memory the allocator had handed back to the system zeroes a whole 2 MiB page: each
/// rule-state save (every 5 s) then spent up to ~150 ms in the kernel zeroing pages on the
/// rules stage, and the alerts behind it waited (`perf`: `clear_page_erms` for 100 ms on one
/// tokio worker; docs/benchmarks.md, fourteenth round). With 4 KiB pages only what is touched
/// is zeroed. Best effort: a kernel without the option keeps its default.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's flag.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "transparent huge pages left as the system sets them");
    }
}

#[derive(Parser)]
#[command(name = "riskwatch", version, about = "Live sensor streams to tiered red/orange/yellow/blue risk alerts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on standard error as `text` (coloured only on a terminal and without
    /// NO_COLOR) or `json` (one object per line); default: RISKWATCH_LOG_FORMAT, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<logging::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated water, gas, GNSS and seismic sensors through the embedded pipeline and
    /// watch the alerts (no Kafka or QuestDB needed).
    Demo(demo::DemoArgs),
    /// Run the embedded pipeline (broker, rules, SQLite) on your own registry and rules, or
    /// with --config any subset of ingest, rules and sink from a topology file.
    Run(RunArgs),
    /// MQTT → Kafka: validate readings and produce them to the readings topic.
    Ingest(ConfigArg),
    /// Kafka readings → rule engine → alerts (a consumer-group worker); `rules check` validates
    /// a rules file.
    #[command(args_conflicts_with_subcommands = true)]
    Rules {
        #[command(subcommand)]
        command: Option<RulesCommand>,
        #[command(flatten)]
        worker: Option<ConfigArg>,
    },
    /// Kafka readings and alert events → QuestDB.
    Sink(ConfigArg),
    /// Publish simulated sensors to an MQTT broker: a scenario file (--scenario), or the demo's
    /// fleet without one.
    Simulate(simulate::SimulateArgs),
    /// Replay recorded readings through the rules: hindcast, what-if, skill scores, report;
    /// or --drill to publish them into the live pipeline as an exercise.
    Replay(Box<replay::ReplayArgs>),
    /// Alarm KPIs (EEMUA 191 / ISA-18.2) of a period from a store's alert events: alerts per
    /// officer per 10 minutes, peak, time in flood, chattering, standing, bad actors, time to
    /// acknowledge; Markdown or HTML.
    Report(report::ReportArgs),
    /// The duty officers' web console (live board, acknowledge / assign / resolve, history,
    /// audit log) and, with --notify, webhook / chat-robot / CAP notifications;
    /// `console init-users` writes the first users file.
    Console(Box<ConsoleCli>),
    /// Read a password on stdin and print its argon2id hash for the console's users file.
    HashPassword,
    /// Write Mosquitto password and ACL files from the registry's gateways: each gateway may
    /// publish only for its own sites.
    MqttAcl(mqtt_acl::MqttAclArgs),
    /// Exit 0 if a riskwatch process answers 2xx on its readiness (or health) endpoint, 1
    /// otherwise: the containers' healthcheck (the image has no curl or wget).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Load generator for the end-to-end benchmarks (scripts/bench.sh, docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// `riskwatch console [init-users]`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ConsoleCli {
    #[command(subcommand)]
    command: Option<ConsoleCommand>,
    #[command(flatten)]
    console: Option<console::ConsoleArgs>,
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// Write a new users file (mode 0600) with one admin and a generated password, printed
    /// once; refused if the file exists.
    InitUsers(console::init_users::InitUsersArgs),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate a rules file, and with --registry check it against the sensors; lists every
    /// problem and exits non-zero if there is any.
    Check {
        /// Rules file (TOML).
        file: PathBuf,
        /// Sensor registry to check the rules against.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    no_transparent_huge_pages();
    let result = match cli.command {
        Command::Rules { command: Some(RulesCommand::Check { file, registry }), .. } => {
            cli::rules_check::rules_check(&file, registry.as_deref())
        }
        Command::Rules { command: None, worker: Some(c) } => components(c, &[Component::Rules]),
        Command::Rules { command: None, worker: None } => {
            Err(anyhow::anyhow!("say `riskwatch rules check FILE` or `riskwatch rules --config FILE`"))
        }
        Command::Ingest(c) => components(c, &[Component::Ingest]),
        Command::Sink(c) => components(c, &[Component::Sink]),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Bench { command } => runtime().and_then(|rt| rt.block_on(bench::run(command))),
        Command::Simulate(args) => runtime().and_then(|rt| rt.block_on(simulate::run(args))),
        Command::Replay(args) => runtime().and_then(|rt| rt.block_on(replay::run(*args))),
        Command::Report(args) => report::run(args),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(cli::run::run(args))),
        Command::Console(c) => match *c {
            ConsoleCli { command: Some(ConsoleCommand::InitUsers(args)), .. } => console::init_users::run(args),
            ConsoleCli { command: None, console: Some(args) } => {
                runtime().and_then(|rt| rt.block_on(console::run(args)))
            }
            ConsoleCli { command: None, console: None } => Err(anyhow::anyhow!(
                "say `riskwatch console --registry FILE --users FILE` or `riskwatch console init-users`"
            )),
        },
        Command::Healthcheck(args) => runtime().and_then(|rt| rt.block_on(healthcheck::run(args))),
        Command::HashPassword => console::hash_password_cmd(),
        Command::MqttAcl(args) => mqtt_acl::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The async runtime the commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
