//! `riskwatch run`, `ingest`, `rules` and `sink`: the long-running services. `run` without a
//! topology file is the embedded wiring (src/embedded/); with one, or `ingest` / `rules` /
//! `sink`, any subset of the production path over Kafka (src/kafka/).

use crate::embedded::{broker, FrontConfig, Pipeline, PipelineConfig};
use crate::settings::{mqtt_credentials_from_env, parse_mqtt_address, ConfigFiles};
use crate::shutdown::wait_for_stop;
use crate::topology::{Component, Topology};
use crate::{kafka, metrics, mqtt_tls, runtime};
use anyhow::{bail, Context, Result};
use riskwatch_sinks::sqlite::Synchronous;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `--config FILE [--duration D]` of the production components.
#[derive(clap::Args)]
pub struct ConfigArg {
    /// Topology file (docs/operations.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Stop after this long (e.g. `90s`); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// Options of `riskwatch run`.
#[derive(clap::Args)]
pub struct RunArgs {
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
    /// When the store's commits reach the disk: `full` (every commit synced before its readings
    /// are acknowledged) or `normal` (synced at checkpoints: faster on slow disks, but the last
    /// acknowledged readings can be lost on a power failure).
    #[arg(long, default_value = "full")]
    synchronous: Synchronous,
    /// With `--broker`: QoS 1 messages the broker may have in flight to riskwatch before it
    /// waits for acknowledgements (raise the broker's own limit to match: Mosquitto's
    /// `max_inflight_messages`).
    #[arg(long, default_value_t = riskwatch_ingest::MqttSourceConfig::DEFAULT_INFLIGHT, requires = "broker")]
    inflight: u16,
    /// With `--broker`: once readings stream in, read the broker's socket once per this period
    /// (or once 32 KiB wait) instead of on every TCP segment — less CPU per reading, each
    /// reading waits at most about this long; `0s` reads every segment at once.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration, requires = "broker")]
    read_coalesce: Duration,
    /// Address the embedded MQTT broker listens on.
    #[arg(long, default_value = "127.0.0.1:18830", conflicts_with = "broker")]
    listen: SocketAddr,
    /// Use an external MQTT broker (HOST:PORT) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Accept SL 651-2014 remote terminal units (hydrological RTUs) over TCP on this address
    /// (e.g. `0.0.0.0:5651`); their readings join the MQTT readings (docs/wire-format.md).
    #[arg(long)]
    sl651: Option<SocketAddr>,
    /// Stop after this long (e.g. `90s`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Serve Prometheus metrics, /healthz and /readyz on this address (also
    /// RISKWATCH_METRICS_LISTEN, or `[metrics] listen` in a topology file).
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

/// `riskwatch ingest|rules|sink --config FILE`: one component of the production path.
pub fn components(c: ConfigArg, only: &[Component]) -> Result<()> {
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

pub async fn run(args: RunArgs) -> Result<()> {
    if let Some(config) = &args.config {
        let t = Topology::load(config)?;
        if t.kafka.is_some() {
            return run_topology(t, args.duration).await;
        }
        let sl651 = t.sl651.address()?.map(|a| (a, format!("[sl651] listen in {}", config.display())));
        return run_embedded(
            ConfigFiles::load(&t.registry, &t.rules)?,
            t.embedded.db.clone(),
            match t.embedded.listen {
                Some(l) => None.ok_or((l, format!("[embedded] listen in {}", config.display()))),
                None => Ok(format!("{}:{}", t.mqtt.host, t.mqtt.port)),
            },
            args.duration,
            metrics::listen_address(args.metrics, t.metrics.listen.as_deref())?,
            Options {
                limits: t.embedded.front_limits(),
                synchronous: t.embedded.synchronous,
                inflight: t.mqtt.inflight,
                read_coalesce: t.mqtt.read_coalesce,
                sl651,
                sl651_limits: t.sl651.limits(),
            },
        )
        .await;
    }
    let (registry, rules) = (args.registry.expect("clap requires it"), args.rules.expect("clap requires it"));
    let broker = match args.broker {
        Some(b) => Ok(b),
        None => Err((args.listen, "--listen".to_string())),
    };
    let metrics_at = metrics::listen_address(args.metrics, None)?;
    run_embedded(
        ConfigFiles::load(&registry, &rules)?,
        args.db,
        broker,
        args.duration,
        metrics_at,
        Options {
            limits: Default::default(),
            synchronous: args.synchronous,
            inflight: args.inflight,
            read_coalesce: args.read_coalesce,
            sl651: args.sl651.map(|a| (a, "--sl651".to_string())),
            sl651_limits: Default::default(),
        },
    )
    .await
}

/// How the embedded wiring holds what it took in.
struct Options {
    /// The gateway front's limits (embedded broker).
    limits: riskwatch_ingest::FrontLimits,
    /// When the store's commits reach the disk.
    synchronous: Synchronous,
    /// Messages an external broker may have in flight to ingest.
    inflight: u16,
    /// Its socket's receive coalescing period.
    read_coalesce: Duration,
    /// The SL 651 source's address, and where it was set (for the error when it is taken).
    sl651: Option<(SocketAddr, String)>,
    /// Its limits on peers (`[sl651] idle_timeout`, `max_connections`; defaults with `--sl651`).
    sl651_limits: riskwatch_ingest::Sl651Limits,
}

/// The embedded wiring; `broker` is an external `HOST:PORT`, or the address to run the
/// in-process broker on and where it was set (`--listen`, for the error when it is taken).
async fn run_embedded(
    files: ConfigFiles,
    db: PathBuf,
    broker: std::result::Result<String, (SocketAddr, String)>,
    duration: Option<Duration>,
    metrics_at: Option<SocketAddr>,
    opts: Options,
) -> Result<()> {
    let metrics = metrics::Metrics::default();
    // Where gateways connect, and where riskwatch's own connections go.
    let (host, port, (inner_host, inner_port), front) = match broker {
        Ok(b) => {
            let (host, port) = parse_mqtt_address(&b)?;
            (host.clone(), port, (host, port), None)
        }
        Err((listen, set_by)) => {
            let embedded = broker::start(listen, &set_by)?;
            let inner = (embedded.internal.ip().to_string(), embedded.internal.port());
            let front = FrontConfig { listener: embedded.listener, upstream: embedded.internal, limits: opts.limits };
            (listen.ip().to_string(), listen.port(), inner, Some(front))
        }
    };
    let sl651 = match &opts.sl651 {
        Some((addr, set_by)) => Some(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("{set_by}: cannot listen for SL 651 stations on {addr}"))?,
        ),
        None => None,
    };
    let sl651_at = sl651.as_ref().and_then(|l| l.local_addr().ok());
    let colour = crate::logging::colour_for(std::io::stdout().is_terminal());
    let pipeline = Pipeline::start(PipelineConfig {
        registry: Arc::new(files.registry),
        registry_digest: riskwatch_rules::host::text_digest(&files.registry_text),
        rules_text: files.rules_text,
        db: db.clone(),
        synchronous: opts.synchronous,
        mqtt_host: inner_host,
        mqtt_port: inner_port,
        inflight: opts.inflight,
        read_coalesce: opts.read_coalesce,
        client_prefix: "riskwatch".into(),
        // An external broker may need a login (RISKWATCH_MQTT_USERNAME / _PASSWORD or _PASSWORD_FILE) and TLS
        // (RISKWATCH_MQTT_CA, _CLIENT_CERT, _CLIENT_KEY).
        credentials: mqtt_credentials_from_env()?,
        tls: mqtt_tls::from_env()?,
        rules_path: Some(files.rules_path),
        registry_path: Some(files.registry_path),
        console: Some(colour),
        metrics: metrics.clone(),
        front,
        sl651: sl651.map(|l| (l, opts.sl651_limits)),
    })
    .await?;
    if let Some(addr) = metrics_at {
        let readiness = metrics::Readiness::default();
        readiness.follow("mqtt source", pipeline.ready());
        let bound = metrics::serve(addr, metrics, readiness).await?;
        println!("metrics on http://{bound}/metrics");
    }
    match sl651_at {
        Some(a) => println!("riskwatch ready: MQTT {host}:{port}, SL 651 {a}, store {}", db.display()),
        None => println!("riskwatch ready: MQTT {host}:{port}, store {}", db.display()),
    }
    tokio::select! {
        _ = wait_for_stop(duration) => {}
        reason = pipeline.store_failed() => eprintln!("riskwatch: the store failed ({reason}); stopping"),
    }
    let summary = pipeline.stop().await?;
    print!("{}", summary.render(colour));
    Ok(())
}
