//! `riskwatch`: the command line. Wiring only: every behaviour lives in the library crates.

mod bench;
mod bench_recovery;
mod broker;
mod console;
mod demo;
mod drill;
mod embedded;
mod kafka;
mod metrics;
mod mqtt_acl;
mod mqtt_tls;
mod replay;
mod simulate;
mod summary;
mod topology;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use embedded::{Pipeline, PipelineConfig};
use riskwatch_core::Registry;
use riskwatch_rules::{Engine, RuleSet};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use topology::{Component, Topology};

/// mimalloc rather than the C library's allocator. With glibc's malloc a 100 000-sensor
/// `riskwatch run` kept ~5.3 KB of private memory per sensor although ~2 KB of it was live:
/// the per-thread arenas held on to what loading the registry (a TOML document tree) and the
/// periodic state copies had freed. mimalloc returns it: ~1.5 KB per sensor, and ~10 % less CPU
/// per reading (docs/benchmarks.md, "Third round").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The duty officers' web console (live board, acknowledge / assign / resolve, history,
    /// audit log) and, with --notify, webhook / chat-robot / CAP notifications.
    Console(Box<console::ConsoleArgs>),
    /// Read a password on stdin and print its argon2id hash for the console's users file.
    HashPassword,
    /// Write Mosquitto password and ACL files from the registry's gateways: each gateway may
    /// publish only for its own sites.
    MqttAcl(mqtt_acl::MqttAclArgs),
    /// Load generator for the end-to-end benchmarks (scripts/bench.sh, docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Topology file (docs/operations.md).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this long (e.g. `90s`); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Topology file: which components to run and how to reach MQTT, Kafka and QuestDB.
    #[arg(long, conflicts_with_all = ["registry", "rules", "broker"])]
    config: Option<PathBuf>,
    /// Sensor registry (TOML).
    #[arg(long, required_unless_present = "config")]
    registry: Option<PathBuf>,
    /// Rules file (TOML).
    #[arg(long, required_unless_present = "config")]
    rules: Option<PathBuf>,
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
    /// Serve Prometheus metrics, /healthz and /readyz on this address (also
    /// RISKWATCH_METRICS_LISTEN, or `[metrics] listen` in a topology file).
    #[arg(long)]
    metrics: Option<SocketAddr>,
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
        Command::Rules { command: Some(RulesCommand::Check { file, registry }), .. } => {
            rules_check(&file, registry.as_deref())
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
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(args))),
        Command::Console(args) => runtime().and_then(|rt| rt.block_on(console::run(*args))),
        Command::HashPassword => console::hash_password_cmd(),
        Command::MqttAcl(args) => mqtt_acl::run(args),
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

/// A registry and a rules file as read, with their texts (the rules host records which
/// versions its state was built with, and reloads them when they change).
pub struct ConfigFiles {
    /// The registry file.
    pub registry_path: PathBuf,
    /// Its text.
    pub registry_text: String,
    /// The registry it holds.
    pub registry: Registry,
    /// The rules file.
    pub rules_path: PathBuf,
    /// Its text (checked to parse).
    pub rules_text: String,
}

impl ConfigFiles {
    /// Reads and validates both files.
    pub fn load(registry_path: &Path, rules_path: &Path) -> Result<ConfigFiles> {
        let registry_text = std::fs::read_to_string(registry_path)
            .with_context(|| format!("reading registry {}", registry_path.display()))?;
        let registry = Registry::from_toml(&registry_text).with_context(|| format!("in {}", registry_path.display()))?;
        let rules_text =
            std::fs::read_to_string(rules_path).with_context(|| format!("reading rules {}", rules_path.display()))?;
        RuleSet::from_toml(&rules_text).with_context(|| format!("in {}", rules_path.display()))?;
        Ok(ConfigFiles {
            registry_path: registry_path.to_path_buf(),
            registry_text,
            registry,
            rules_path: rules_path.to_path_buf(),
            rules_text,
        })
    }
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

/// MQTT credentials for publishing tools (`simulate`, `replay --drill`) from
/// `RISKWATCH_MQTT_USERNAME` / `RISKWATCH_MQTT_PASSWORD`, as the services take them.
pub fn mqtt_credentials_from_env() -> Option<(String, String)> {
    let user = std::env::var("RISKWATCH_MQTT_USERNAME").ok().filter(|u| !u.is_empty())?;
    Some((user, std::env::var("RISKWATCH_MQTT_PASSWORD").unwrap_or_default()))
}

/// `HOST:PORT` or `mqtt://HOST:PORT`.
pub fn parse_mqtt_address(s: &str) -> Result<(String, u16)> {
    let rest = s.strip_prefix("mqtt://").unwrap_or(s);
    let (h, p) = rest.rsplit_once(':').with_context(|| format!("{s:?}: expected HOST:PORT or mqtt://HOST:PORT"))?;
    Ok((h.to_string(), p.parse::<u16>().with_context(|| format!("{s:?}: the port must be a number"))?))
}

/// Completes on Ctrl-C or SIGTERM (how docker and systemd stop a service).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn wait_for_stop(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown_signal() => {}
        },
        None => shutdown_signal().await,
    }
}

/// `riskwatch ingest|rules|sink --config FILE`: one component of the production path.
fn components(c: ConfigArg, only: &[Component]) -> Result<()> {
    let mut t = Topology::load(&c.config)?;
    t.components = only.to_vec();
    if t.kafka.is_none() {
        bail!("{}: [kafka] is required to run {:?} (or set RISKWATCH_KAFKA_BROKERS)", c.config.display(), only[0]);
    }
    let problems = t.problems();
    if !problems.is_empty() {
        bail!("{}:\n  {}", c.config.display(), problems.join("\n  "));
    }
    runtime()?.block_on(run_topology(t, c.duration))
}

/// Runs the components a topology names until stopped.
async fn run_topology(t: Topology, duration: Option<Duration>) -> Result<()> {
    let files = ConfigFiles::load(&t.registry, &t.rules)?;
    let registry_digest = riskwatch_rules::host::text_digest(&files.registry_text);
    let registry = Arc::new(files.registry);
    let obs = metrics::Observability::default();
    metrics::build_info(&obs.metrics);
    if let Some(addr) = metrics::listen_address(None, t.metrics.listen.as_deref())? {
        let bound = metrics::serve(addr, obs.metrics.clone(), obs.readiness.clone()).await?;
        println!("metrics on http://{bound}/metrics");
    }
    let t = Arc::new(t);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks: Vec<tokio::task::JoinHandle<Result<String>>> = Vec::new();
    if t.runs(Component::Ingest) {
        let (t, reg, rx, obs) = (Arc::clone(&t), Arc::clone(&registry), stop_rx.clone(), obs.clone());
        obs.readiness.set("ingest", false);
        tasks.push(tokio::spawn(async move {
            let s = kafka::ingest::run(&t, reg, rx, &obs).await?;
            Ok(format!("ingest: {s:?}"))
        }));
    }
    if t.runs(Component::Rules) {
        let worker_files = kafka::rules_worker::WorkerFiles {
            registry: Arc::clone(&registry),
            registry_digest,
            registry_path: files.registry_path.clone(),
            rules_text: files.rules_text.clone(),
            rules_path: files.rules_path.clone(),
        };
        let (t, rx, obs) = (Arc::clone(&t), stop_rx.clone(), obs.clone());
        obs.readiness.set("rules", false);
        tasks.push(tokio::spawn(async move {
            let s = kafka::rules_worker::run(&t, worker_files, rx, &obs).await?;
            Ok(format!("rules: {s:?}"))
        }));
    }
    if t.runs(Component::Sink) {
        let (t, reg, rx, obs) = (Arc::clone(&t), Arc::clone(&registry), stop_rx.clone(), obs.clone());
        obs.readiness.set("sink", false);
        tasks.push(tokio::spawn(async move {
            let s = kafka::sink::run(&t, reg, rx, &obs).await?;
            Ok(format!("sink: {s:?}"))
        }));
    }
    // Stop everything when asked, or as soon as one component fails.
    let mut set = tokio::task::JoinSet::new();
    for t in tasks {
        set.spawn(async move { t.await.unwrap_or_else(|e| Err(anyhow::anyhow!("component panicked: {e}"))) });
    }
    let mut results = Vec::new();
    let stop_early = async {
        while let Some(r) = set.join_next().await {
            let r = r.unwrap_or_else(|e| Err(anyhow::anyhow!("component panicked: {e}")));
            let failed = r.is_err();
            results.push(r);
            if failed {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = wait_for_stop(duration) => {}
        _ = stop_early => {}
    }
    let _ = stop.send(true);
    while let Some(r) = set.join_next().await {
        results.push(r.unwrap_or_else(|e| Err(anyhow::anyhow!("component panicked: {e}"))));
    }
    let mut first_error = None;
    for r in results {
        match r {
            Ok(l) => println!("stopped {l}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn run(args: RunArgs) -> Result<()> {
    if let Some(config) = &args.config {
        let t = Topology::load(config)?;
        if t.kafka.is_some() {
            return run_topology(t, args.duration).await;
        }
        return run_embedded(
            ConfigFiles::load(&t.registry, &t.rules)?,
            t.embedded.db.clone(),
            match t.embedded.listen {
                Some(l) => None.ok_or(l),
                None => Ok(format!("{}:{}", t.mqtt.host, t.mqtt.port)),
            },
            args.duration,
            metrics::listen_address(args.metrics, t.metrics.listen.as_deref())?,
        )
        .await;
    }
    let (registry, rules) = (args.registry.expect("clap requires it"), args.rules.expect("clap requires it"));
    let broker = match args.broker {
        Some(b) => Ok(b),
        None => Err(args.listen),
    };
    let metrics_at = metrics::listen_address(args.metrics, None)?;
    run_embedded(ConfigFiles::load(&registry, &rules)?, args.db, broker, args.duration, metrics_at).await
}

/// The embedded wiring; `broker` is an external `HOST:PORT`, or the address to run the
/// in-process broker on.
async fn run_embedded(
    files: ConfigFiles,
    db: PathBuf,
    broker: std::result::Result<String, SocketAddr>,
    duration: Option<Duration>,
    metrics_at: Option<SocketAddr>,
) -> Result<()> {
    let metrics = metrics::Metrics::default();
    let (host, port) = match broker {
        Ok(b) => parse_mqtt_address(&b)?,
        Err(listen) => {
            broker::start(listen)?;
            (listen.ip().to_string(), listen.port())
        }
    };
    let colour = std::io::stdout().is_terminal();
    let pipeline = Pipeline::start(PipelineConfig {
        registry: Arc::new(files.registry),
        registry_digest: riskwatch_rules::host::text_digest(&files.registry_text),
        rules_text: files.rules_text,
        db: db.clone(),
        mqtt_host: host.clone(),
        mqtt_port: port,
        client_prefix: "riskwatch".into(),
        // An external broker may need a login (RISKWATCH_MQTT_USERNAME / _PASSWORD) and TLS
        // (RISKWATCH_MQTT_CA, _CLIENT_CERT, _CLIENT_KEY).
        credentials: mqtt_credentials_from_env(),
        tls: mqtt_tls::from_env()?,
        rules_path: Some(files.rules_path),
        registry_path: Some(files.registry_path),
        console: Some(colour),
        metrics: metrics.clone(),
    })
    .await?;
    if let Some(addr) = metrics_at {
        let readiness = metrics::Readiness::default();
        readiness.follow("mqtt source", pipeline.ready());
        let bound = metrics::serve(addr, metrics, readiness).await?;
        println!("metrics on http://{bound}/metrics");
    }
    println!("riskwatch ready: MQTT {host}:{port}, store {}", db.display());
    tokio::select! {
        _ = wait_for_stop(duration) => {}
        reason = pipeline.store_failed() => eprintln!("riskwatch: the store failed ({reason}); stopping"),
    }
    let summary = pipeline.stop().await?;
    print!("{}", summary.render(colour));
    Ok(())
}
