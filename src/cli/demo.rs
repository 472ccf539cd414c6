//! `riskwatch demo`: the whole embedded pipeline with simulated sensors of all four families.
//!
//! Nothing is injected into the alert path: every alert comes from simulated physics crossing
//! thresholds configured in `config/demo/` (compiled into the binary so the demo runs from
//! anywhere). One deliberate gateway bug (a detector sending `NaN`) shows the rejection path.

use crate::embedded::{broker, FrontConfig};
use crate::embedded::{Pipeline, PipelineConfig};
use anyhow::{Context, Result};
use riskwatch_core::{Registry, Timestamp};
use riskwatch_rules::RuleSet;
use riskwatch_simulators::fleet::{self, FleetConfig, Glitch};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The demo's registry and rules, as shipped in `config/demo/`.
pub const DEMO_REGISTRY: &str = include_str!("../../config/demo/registry.toml");
/// See [`DEMO_REGISTRY`].
pub const DEMO_RULES: &str = include_str!("../../config/demo/rules.toml");

/// Options of `riskwatch demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long the demo runs (e.g. `60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the simulated noise; the same seed gives the same readings.
    #[arg(long, default_value_t = 2020)]
    seed: u64,
    /// Port of the embedded MQTT broker (another free port is used if it is taken).
    #[arg(long, default_value_t = broker::DEFAULT_PORT)]
    port: u16,
    /// SQLite store (recreated at start).
    #[arg(long, default_value = "riskwatch-demo.db")]
    db: PathBuf,
    /// Plain output without colours.
    #[arg(long)]
    no_color: bool,
    /// Also run the duty console (web board) on this address (default 127.0.0.1:8080 when
    /// given without a value); a demo officer `duty` with a one-time password is printed.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    console: Option<SocketAddr>,
}

/// Runs the demo until the duration is over or Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<()> {
    let colour = !args.no_color && crate::logging::colour_for(std::io::stdout().is_terminal());
    let registry = Arc::new(Registry::from_toml(DEMO_REGISTRY).context("demo registry")?);
    RuleSet::from_toml(DEMO_RULES).context("demo rules")?;
    for suffix in ["", "-wal", "-shm", ".state", ".state-wal", ".state-shm"] {
        let mut p = args.db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let embedded = match broker::start(SocketAddr::from(([127, 0, 0, 1], args.port)), "--port") {
        Ok(b) => b,
        Err(_) => broker::start(SocketAddr::from(([127, 0, 0, 1], broker::free_port()?)), "--port")?,
    };
    let port = embedded.listener.local_addr()?.port();
    let inner = embedded.internal;
    println!("riskwatch demo — simulated river gauges, gas detectors, a GNSS landslide point and three");
    println!("strong-motion terminals publish over MQTT to the embedded broker at 127.0.0.1:{port};");
    println!(
        "alerts are published on riskwatch/v1/alerts/{{level}}/{{site}}/{{sensor}} and stored in {}.",
        args.db.display()
    );
    println!(
        "Each series is time-compressed to fit {}; times shown are event times (UTC+8).",
        humantime::format_duration(args.duration)
    );
    println!("Hankou is a reconstruction shaped on published 2020 reference points, not observed data.");
    println!("Four scenarios run side by side, each on its own clock, so dates differ between them:");
    println!("  [水位] Yangtze at 汉口水文站, July 2020 (replayed), and a flashy creek (from now)");
    println!("  [可燃气体浓度] a leak at A化工厂罐区 (from now) · [GNSS位移] 01号滑坡监测点 creeping to failure over the next 30 days");
    println!("  [地震动加速度] an earthquake felt by three strong-motion terminals (from now)\n");

    let pipeline = Pipeline::start(PipelineConfig {
        registry: Arc::clone(&registry),
        registry_digest: riskwatch_rules::host::text_digest(DEMO_REGISTRY),
        rules_text: DEMO_RULES.to_string(),
        db: args.db.clone(),
        synchronous: Default::default(),
        mqtt_host: inner.ip().to_string(),
        mqtt_port: inner.port(),
        inflight: riskwatch_ingest::MqttSourceConfig::DEFAULT_INFLIGHT,
        read_coalesce: riskwatch_ingest::MqttSourceConfig::DEFAULT_READ_COALESCE,
        client_prefix: "riskwatch-demo".into(),
        credentials: None,
        tls: None,
        rules_path: None,
        registry_path: None,
        console: Some(colour),
        metrics: crate::metrics::Metrics::default(),
        front: Some(FrontConfig { listener: embedded.listener, upstream: inner, limits: Default::default() }),
        sl651: None,
    })
    .await?;
    let console = match args.console {
        Some(listen) => Some(start_console(listen, inner.port(), &args.db, Arc::clone(&registry)).await?),
        None => None,
    };

    let now = Timestamp::now();
    let tracks = riskwatch_simulators::demo_fleet::tracks(now, args.seed);
    let glitches = vec![Glitch {
        after: args.duration.mul_f64(0.4),
        topic: "riskwatch/v1/readings/plant-a/plant-a-lel-02".into(),
        payload: format!(r#"{{"kind":"gas_combustible","ts":{},"unit":"%LEL","value":NaN}}"#, now.millis())
            .into_bytes(),
    }];
    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet_cfg = FleetConfig {
        host: "127.0.0.1".into(),
        port,
        client_prefix: "demo-gateway".into(),
        duration: args.duration,
        glitches,
        credentials: None,
        transport: None,
    };
    let mut fleet_task = tokio::spawn(fleet::run(tracks, fleet_cfg, stop_rx));
    // Progress between the alert lines: how far the run is and how much it has taken in.
    let every = (args.duration / 6).max(Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval_at(started + every, every);
    let stats = loop {
        tokio::select! {
            s = &mut fleet_task => break s.context("simulator fleet panicked")?,
            _ = tokio::signal::ctrl_c() => {
                let _ = stop_tx.send(true);
                break (&mut fleet_task).await.context("simulator fleet panicked")?;
            }
            _ = ticker.tick() => {
                let done = started.elapsed().min(args.duration);
                println!(
                    "── {:>3.0} % · {} of {} · {} messages taken in",
                    done.as_secs_f64() / args.duration.as_secs_f64().max(1e-9) * 100.0,
                    humantime::format_duration(Duration::from_secs(done.as_secs())),
                    humantime::format_duration(args.duration),
                    pipeline.messages_handled()
                );
            }
        }
    };
    // Let the pipeline take in everything the broker acknowledged before stopping it.
    let sent = stats.acked.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pipeline.messages_handled() < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let summary = pipeline.stop().await?;
    if let Some(c) = console {
        c.stop().await;
    }
    println!();
    print!("{}", summary.render(colour));
    println!("messages published by simulated gateways: {sent}");
    Ok(())
}

/// The duty console for the demo: a one-off officer `duty` with a random password, files
/// next to the demo store (recreated each run).
async fn start_console(
    listen: SocketAddr,
    mqtt_port: u16,
    db: &std::path::Path,
    registry: Arc<Registry>,
) -> Result<crate::console::Console> {
    let store = db;
    let dir = db.with_extension("console");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let password = crate::console::random_password();
    let users = format!(
        "[[user]]\nname = \"duty\"\ndisplay_name = \"值班员 (demo)\"\nrole = \"officer\"\npassword_hash = \"{}\"\n",
        crate::console::hash_password(&password)?
    );
    std::fs::write(dir.join("users.toml"), users)?;
    let console = crate::console::Console::start(crate::console::Options {
        listen,
        mqtt: format!("127.0.0.1:{mqtt_port}"),
        registry,
        users: dir.join("users.toml"),
        db: dir.join("console.db"),
        notify: None,
        client_id: "riskwatch-demo-console".into(),
        cap_sender: "riskwatch-demo".into(),
        chart_points: 360,
        store: Some(store.to_path_buf()),
        questdb: None,
        basemap: None,
        public_url: None,
        secure_cookie: false,
        session_lifetime: crate::console::Options::DEFAULT_SESSION_LIFETIME,
        login_concurrency: crate::console::Options::DEFAULT_LOGIN_CONCURRENCY,
        officers: 1,
        window_rules: RuleSet::from_toml(DEMO_RULES).context("demo rules")?.window_rule_ids(),
    })
    .await?;
    println!(
        "duty console: http://{}/  — log in as `duty`, password `{password}` (this run only)\n",
        console.local_addr
    );
    Ok(console)
}
