//! `riskwatch`: the command line. Wiring only: every behaviour lives in the library crates.

mod broker;
mod demo;
mod pipeline;
mod rules_stage;
mod summary;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pipeline::{Pipeline, PipelineConfig};
use riskwatch_core::Registry;
use riskwatch_rules::{Engine, RuleSet};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "riskwatch", version, about = "Live sensor streams to tiered red/orange/yellow/blue risk alerts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated water, gas, GNSS and seismic sensors through the embedded pipeline and
    /// watch the alerts (no Kafka or QuestDB needed).
    Demo(demo::DemoArgs),
    /// Run the embedded pipeline (broker, rules, SQLite) on your own registry and rules.
    Run(RunArgs),
    /// Check configuration files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Sensor registry (TOML).
    #[arg(long)]
    registry: PathBuf,
    /// Rules file (TOML).
    #[arg(long)]
    rules: PathBuf,
    /// SQLite store for readings, alert events and dead letters.
    #[arg(long, default_value = "riskwatch.db")]
    db: PathBuf,
    /// Address the embedded MQTT broker listens on.
    #[arg(long, default_value = "127.0.0.1:18830", conflicts_with = "broker")]
    listen: SocketAddr,
    /// Use an external MQTT broker (HOST:PORT) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Stop after this long (e.g. `90s`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("RISKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules { command: RulesCommand::Check { file, registry } } => rules_check(&file, registry.as_deref()),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(args))),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Reads and validates a registry file.
pub fn load_registry(path: &Path) -> Result<Registry> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading registry {}", path.display()))?;
    Registry::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

/// Reads and validates a rules file.
pub fn load_rules(path: &Path) -> Result<RuleSet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading rules {}", path.display()))?;
    RuleSet::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

fn rules_check(file: &Path, registry: Option<&Path>) -> Result<()> {
    let rules = load_rules(file)?;
    if let Some(reg) = registry {
        let registry = load_registry(reg)?;
        let engine =
            Engine::new(&rules, &registry).with_context(|| format!("{} against {}", file.display(), reg.display()))?;
        for w in rules.warnings_against(&registry) {
            println!("warning: {w}");
        }
        println!(
            "{}: {} rule(s), {} quality table(s), {} composite(s), {} sensor binding(s): OK",
            file.display(),
            rules.rules.len(),
            rules.quality.len(),
            rules.composites.len(),
            engine.binding_count()
        );
    } else {
        println!("{}: {} rule(s): OK", file.display(), rules.rules.len());
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let registry = Arc::new(load_registry(&args.registry)?);
    let rules = load_rules(&args.rules)?;
    let (host, port) = match &args.broker {
        Some(b) => {
            let (h, p) = b.rsplit_once(':').context("--broker must be HOST:PORT")?;
            (h.to_string(), p.parse::<u16>().context("--broker port must be a number")?)
        }
        None => {
            broker::start(args.listen)?;
            (args.listen.ip().to_string(), args.listen.port())
        }
    };
    let colour = std::io::stdout().is_terminal();
    let pipeline = Pipeline::start(PipelineConfig {
        registry,
        rules,
        db: args.db.clone(),
        mqtt_host: host.clone(),
        mqtt_port: port,
        client_prefix: "riskwatch".into(),
        rules_path: Some(args.rules.clone()),
        console: Some(colour),
    })
    .await?;
    println!("riskwatch ready: MQTT {host}:{port}, store {}", args.db.display());
    match args.duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        None => {
            if tokio::signal::ctrl_c().await.is_err() {
                bail!("cannot wait for Ctrl-C");
            }
        }
    }
    let summary = pipeline.stop().await?;
    print!("{}", summary.render(colour));
    Ok(())
}
