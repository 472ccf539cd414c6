//! `riskwatch simulate`: virtual gateways publishing simulated sensors over MQTT.
//!
//! With `--scenario FILE` the scenario is compiled (with `--seed`, `--sensors`, `--rate`) into a
//! deterministic plan of messages (`riskwatch_simulators::plan`) that is paced by `--speed` and
//! published at QoS 1, or written as JSON lines with `--dry-run`. Without a scenario, the demo's
//! fleet is published, compressed into `--duration`. `--forecasts` adds the forecasts of the
//! scenario's flood gauges (`riskwatch_simulators::forecast_plan`), due at their issue times.

use anyhow::{bail, Context, Result};
use riskwatch_core::Timestamp;
use riskwatch_simulators::fleet::{self, FleetConfig, PlanPublishConfig};
use riskwatch_simulators::flood_forecast::FloodForecastParams;
use riskwatch_simulators::forecast_plan::{forecast_messages, with_forecasts};
use riskwatch_simulators::plan::{self, PlanOptions};
use riskwatch_simulators::scenario::Scenario;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// Options of `riskwatch simulate`.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Scenario file (see scenarios/ and docs/simulators.md); without it, the demo's fleet.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Broker to publish to: `mqtt://HOST:PORT` or `HOST:PORT` (not needed with --dry-run).
    #[arg(long)]
    mqtt: Option<String>,
    /// Seed of the simulated noise and failures; the same seed gives byte-identical messages.
    #[arg(long, default_value_t = 2020)]
    seed: u64,
    /// Scale the scenario's sensor groups to this many sensors in total.
    #[arg(long)]
    sensors: Option<usize>,
    /// Readings per second per scalar sensor (water level, rain, gas), overriding the scenario.
    #[arg(long)]
    rate: Option<f64>,
    /// Compress event time by this factor (default: the scenario's `speed`).
    #[arg(long)]
    speed: Option<f64>,
    /// Event time of the scenario start, RFC 3339 (default: the scenario's `start`, else now).
    #[arg(long)]
    start: Option<String>,
    /// Write the plan as JSON lines instead of publishing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: the file to write (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Without --scenario: wall-clock time the demo series are compressed into (e.g. `60s`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Gateway client ids start with this prefix.
    #[arg(long, default_value = "sim-gateway")]
    client_prefix: String,
    /// Instead of MQTT gateways: one SL 651-2014 RTU at a river gauge during a flood,
    /// connecting to the centre at HOST:PORT (`riskwatch run --sl651`); with `--station`,
    /// `--hours`, `--speed` (default 3600: an hour of reports a second), `--start`.
    #[arg(long, conflicts_with_all = ["scenario", "mqtt", "dry_run"])]
    sl651: Option<String>,
    /// With --sl651: the station address, 10 hex digits.
    #[arg(long, default_value = "0012345678", requires = "sl651")]
    station: String,
    /// With --sl651: hours of the flood to report (the default wave crests at hour 60).
    #[arg(long, default_value_t = 96, requires = "sl651")]
    hours: u32,
    /// With --scenario: also publish forecasts for every `flood` gauge, as a forecasting office
    /// would (`riskwatch/v1/forecasts/{site}/{sensor}`, docs/simulators.md §6).
    #[arg(long, requires = "scenario")]
    forecasts: bool,
    /// With --forecasts: time between forecast issues.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration, requires = "forecasts")]
    forecast_every: Duration,
    /// With --forecasts: how far ahead each forecast looks (hourly valid times; at most 30 days).
    #[arg(long, default_value = "72h", value_parser = humantime::parse_duration, requires = "forecasts")]
    forecast_horizon: Duration,
    /// With --forecasts: ensemble members (1 = a deterministic forecast; up to 100).
    #[arg(long, default_value_t = 1, requires = "forecasts")]
    forecast_members: u32,
    /// With --forecasts: spread of a member's error per hour of lead time, metres.
    #[arg(long, default_value_t = 0.01, requires = "forecasts")]
    forecast_error: f64,
}

/// Runs `riskwatch simulate`.
pub async fn run(args: SimulateArgs) -> Result<()> {
    if let Some(addr) = args.sl651.clone() {
        return sl651_rtu(args, addr).await;
    }
    match args.scenario.clone() {
        Some(path) => scenario(args, path).await,
        None => demo_fleet(args).await,
    }
}

async fn scenario(args: SimulateArgs, path: PathBuf) -> Result<()> {
    let scenario = Scenario::load(&path).map_err(anyhow::Error::msg)?;
    let start = match args.start.as_deref() {
        Some("now") => Timestamp::now(),
        Some(s) => Timestamp::parse_rfc3339(s).map_err(anyhow::Error::msg).context("--start")?,
        None => scenario.fixed_start().unwrap_or_else(Timestamp::now),
    };
    let speed = args.speed.unwrap_or(scenario.speed);
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let mut opts = PlanOptions::new(start, args.seed);
    opts.sensors = args.sensors;
    opts.rate = args.rate;
    opts.client_prefix = args.client_prefix.clone();
    let plan = plan::compile(&scenario, &opts).map_err(anyhow::Error::msg)?;
    let (sensors, gateways) = (plan.sensor_count(), plan.clients().len());
    let forecasts = if args.forecasts {
        let fp = FloodForecastParams {
            issue_every_h: args.forecast_every.as_secs_f64() / 3600.0,
            horizon_h: args.forecast_horizon.as_secs_f64() / 3600.0,
            members: args.forecast_members,
            error_per_h_m: args.forecast_error,
            ..FloodForecastParams::default()
        };
        forecast_messages(&scenario, &opts, &fp)
            .map_err(anyhow::Error::msg)
            .context("--forecasts (--forecast-every, --forecast-horizon, --forecast-members, --forecast-error)")?
    } else {
        Vec::new()
    };
    let forecast_count = forecasts.len();
    let plan = with_forecasts(plan, forecasts);
    if args.dry_run {
        let (mut messages, mut readings) = (0u64, 0u64);
        let mut out: Box<dyn Write> = match &args.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        for m in plan {
            messages += 1;
            readings += u64::from(m.readings);
            writeln!(out, "{}", m.json_line())?;
        }
        out.flush()?;
        drop(out);
        if args.output.is_some() {
            println!(
                "plan of {}: {sensors} sensors, {gateways} gateways, {messages} messages, {readings} readings, {forecast_count} forecasts",
                scenario.name
            );
        }
        return Ok(());
    }
    let Some(mqtt) = args.mqtt.as_deref() else { bail!("--mqtt URL is required (or use --dry-run)") };
    let (host, port) = crate::settings::parse_mqtt_address(mqtt)?;
    println!(
        "simulating scenario {} ({sensors} sensors, {gateways} gateways, {forecast_count} forecasts) to {host}:{port}: event start {}, speed {speed}",
        scenario.name,
        start.to_rfc3339()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = PlanPublishConfig {
        host,
        port,
        speed,
        ack_timeout: Duration::from_secs(30),
        credentials: crate::settings::mqtt_credentials_from_env()?,
        transport: crate::mqtt_tls::from_env()?,
    };
    let began = std::time::Instant::now();
    let mut task = tokio::spawn(fleet::publish_plan(plan, cfg, stop_rx));
    let stats = tokio::select! {
        s = &mut task => s.context("simulator fleet panicked")?,
        _ = crate::shutdown::shutdown_signal() => {
            let _ = stop_tx.send(true);
            task.await.context("simulator fleet panicked")?
        }
    };
    let secs = began.elapsed().as_secs_f64();
    let readings = stats.readings.load(Ordering::Relaxed);
    println!(
        "published {} messages ({readings} readings), {} acknowledged by the broker, in {secs:.1} s ({:.0} readings/s)",
        stats.published.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
        readings as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Publishes the demo fleet (the sensors of `config/demo/registry.toml`) to an external broker.
async fn demo_fleet(args: SimulateArgs) -> Result<()> {
    let Some(mqtt) = args.mqtt.as_deref() else { bail!("--mqtt URL is required") };
    let (host, port) = crate::settings::parse_mqtt_address(mqtt)?;
    let tracks = riskwatch_simulators::demo_fleet::tracks(Timestamp::now(), args.seed);
    println!("simulating {} sensors to {host}:{port} for {}", tracks.len(), humantime::format_duration(args.duration));
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = FleetConfig {
        host,
        port,
        client_prefix: args.client_prefix,
        duration: args.duration,
        glitches: vec![],
        credentials: crate::settings::mqtt_credentials_from_env()?,
        transport: crate::mqtt_tls::from_env()?,
    };
    let mut task = tokio::spawn(fleet::run(tracks, cfg, stop_rx));
    let stats = tokio::select! {
        s = &mut task => s.context("simulator fleet panicked")?,
        _ = crate::shutdown::shutdown_signal() => {
            let _ = stop_tx.send(true);
            task.await.context("simulator fleet panicked")?
        }
    };
    println!(
        "published {} messages, {} acknowledged by the broker",
        stats.published.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One simulated SL 651 RTU reporting a flood to `addr`, each report acknowledged before the
/// next; fails if one is not acknowledged within 30 s.
async fn sl651_rtu(args: SimulateArgs, addr: String) -> Result<()> {
    use riskwatch_simulators::sl651_rtu::{flood_reports, Rtu, RtuIdentity};
    let id = RtuIdentity::river(&args.station)
        .with_context(|| format!("--station {:?}: the station address is 10 hex digits", args.station))?;
    let start = match args.start.as_deref() {
        None | Some("now") => {
            let hour = 3_600_000;
            Timestamp::from_millis(Timestamp::now().millis() / hour * hour - i64::from(args.hours) * hour)
        }
        Some(s) => Timestamp::parse_rfc3339(s).map_err(anyhow::Error::msg).context("--start")?,
    };
    let speed = args.speed.unwrap_or(3600.0);
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let reports = flood_reports(&Default::default(), &Default::default(), start, args.hours, 0.1);
    println!(
        "simulating SL 651 station {} to {addr}: {} reports over {} h from {}, speed {speed}",
        args.station,
        reports.len(),
        args.hours,
        start.to_rfc3339()
    );
    let mut rtu = Rtu::connect(&addr, id).await.with_context(|| format!("--sl651 {addr}: cannot connect"))?;
    let began = std::time::Instant::now();
    let mut acked = 0usize;
    for r in &reports {
        let due = Duration::from_secs_f64((r.observed_at.millis() - start.millis()) as f64 / 1000.0 / speed);
        tokio::time::sleep(due.saturating_sub(began.elapsed())).await;
        rtu.report(r, Duration::from_secs(30)).await.with_context(|| {
            format!("report {} of {} (function {:02X}) not acknowledged", acked + 1, reports.len(), r.function)
        })?;
        acked += 1;
    }
    println!("sent {} reports, {acked} acknowledged by the centre", reports.len());
    Ok(())
}
