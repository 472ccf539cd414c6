//! `riskwatch bench`: the load generator behind `scripts/bench.sh` (docs/benchmarks.md,
//! "End to end").
//!
//! - `bench setup --sensors N --out DIR` writes a registry of N water-level gauges (100 per site)
//!   plus one probe gauge, and a threshold rule set;
//! - `bench load --mqtt HOST:PORT --registry DIR/registry.toml` publishes the gauges' readings
//!   in site batches at QoS 1 as fast as the broker acknowledges them, while a probe gauge
//!   crosses its red threshold and back every `--probe-every`; a subscriber on the alert
//!   topics times each probe alert from just before its reading was published to its arrival
//!   (the alert latency a duty officer sees). With `--metrics URL` it reads the pipeline's
//!   `riskwatch_readings_stored_total` before and after, for the stored rate.
//!
//! Everything it measures passes through the production code paths of the pipeline under test.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use riskwatch_core::{AlertEvent, Registry, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `riskwatch bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Write a registry of N gauges (100 per site) and a threshold rule set.
    Setup {
        /// Gauges (besides the probe).
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Directory for registry.toml and rules.toml.
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish readings as fast as the broker takes them and time the probe's alerts.
    Load(LoadArgs),
    /// Time recovery after a crash and the pauses saving the rule state makes.
    Recovery(crate::cli::bench_recovery::RecoveryArgs),
}

/// Options of `bench load`.
#[derive(Args)]
pub struct LoadArgs {
    /// Broker: `HOST:PORT`.
    #[arg(long)]
    mqtt: String,
    /// The registry `bench setup` wrote.
    #[arg(long)]
    registry: PathBuf,
    /// How long to publish.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Publishing connections (simulated gateways), each with its share of the sites.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Unacknowledged messages per connection.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Offered load in readings/s over all connections (0: as fast as the broker acknowledges).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The probe gauge crosses its threshold (one alert event) this often.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    probe_every: Duration,
    /// The pipeline's metrics endpoint (`http://HOST:PORT/metrics`), for the stored rate.
    #[arg(long)]
    metrics: Option<String>,
    /// One reading per MQTT message, on the gauge's own topic (as most gateways publish),
    /// instead of one message per site holding its 100 gauges' readings.
    #[arg(long)]
    single: bool,
    /// Stop after this many readings (over all connections) rather than after `--duration`.
    #[arg(long)]
    count: Option<u64>,
    /// No probe and no alert subscriber: only the gauges' load (for the broker-only ceiling,
    /// where no riskwatch is running).
    #[arg(long)]
    no_probe: bool,
}

/// Runs a bench subcommand.
pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Setup { sensors, out } => setup(sensors, &out),
        BenchCommand::Load(args) => load(args).await,
        BenchCommand::Recovery(args) => {
            tokio::task::spawn_blocking(move || crate::cli::bench_recovery::run(args)).await?
        }
    }
}

const PER_SITE: usize = 100;
/// Normal water levels the gauges cycle through (below every threshold).
const VALUES: [&str; 10] = ["5.00", "5.05", "5.10", "5.15", "5.20", "5.25", "5.30", "5.35", "5.40", "5.45"];
const PROBE_SITE: &str = "probe-site";
const PROBE: &str = "probe-0";

fn setup(sensors: usize, out: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut reg = String::with_capacity(sensors * 120);
    let sites = sensors.div_ceil(PER_SITE);
    for s in 0..sites {
        reg.push_str(&format!("[[sites]]\nid = \"site-{s}\"\n"));
    }
    reg.push_str(&format!("[[sites]]\nid = \"{PROBE_SITE}\"\n"));
    for i in 0..sensors {
        reg.push_str(&format!(
            "[[sensors]]\nid = \"wl-{i}\"\nsite = \"site-{}\"\nkind = \"water_level\"\nunit = \"m\"\nattributes = {{ warning_level = 10.0 }}\n",
            i / PER_SITE
        ));
    }
    reg.push_str(&format!(
        "[[sensors]]\nid = \"{PROBE}\"\nsite = \"{PROBE_SITE}\"\nkind = \"water_level\"\nunit = \"m\"\nattributes = {{ warning_level = 10.0 }}\n"
    ));
    std::fs::write(out.join("registry.toml"), reg)?;
    std::fs::write(
        out.join("rules.toml"),
        "[[rules]]\nid = \"water-level\"\napplies_to = { kind = \"water_level\" }\ndeadband = 0.1\n\
         remind = { red = \"off\", orange = \"off\" }\n\
         levels = { blue = \"warning_level - 1.0\", yellow = \"warning_level\", orange = \"warning_level + 1.0\", red = \"warning_level + 2.0\" }\n",
    )?;
    println!("wrote {sensors} gauges in {sites} sites (+ probe) to {}", out.display());
    Ok(())
}

/// The value of `riskwatch_readings_stored_total` summed over sinks, from a metrics URL.
async fn stored(url: &str) -> Result<f64> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("riskwatch_readings_stored_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn load(a: LoadArgs) -> Result<()> {
    let (host, port) = crate::settings::parse_mqtt_address(&a.mqtt)?;
    let text = std::fs::read_to_string(&a.registry).with_context(|| format!("reading {}", a.registry.display()))?;
    let registry = Registry::from_toml(&text).context("registry")?;
    let mut sites: HashMap<String, Vec<String>> = HashMap::new();
    for s in registry.sensors() {
        if s.site.as_str() != PROBE_SITE {
            sites.entry(s.site.to_string()).or_default().push(s.id.to_string());
        }
    }
    if sites.is_empty() {
        bail!("{}: no gauges (write it with `riskwatch bench setup`)", a.registry.display());
    }
    let mut sites: Vec<(String, Vec<String>)> = sites.into_iter().collect();
    sites.sort();
    let sensors: usize = sites.iter().map(|(_, s)| s.len()).sum();

    // The officer: every alert event, timed against the probe readings' publish instants.
    let sent_at: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut o = MqttOptions::new(format!("bench-officer-{}", std::process::id()), &host, port);
    o.set_max_packet_size(1 << 20, 1 << 20).set_keep_alive(Duration::from_secs(30));
    let (officer, mut officer_loop) = AsyncClient::new(o, 100);
    // Small packets (acknowledgements, pings) go out at once, as riskwatch's own clients send them.
    officer_loop.network_options.set_tcp_nodelay(true);
    officer.subscribe(riskwatch_core::wire::topic::ALERTS_FILTER, QoS::AtLeastOnce).await?;
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let (sent, lat) = (Arc::clone(&sent_at), Arc::clone(&latencies));
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        loop {
            match officer_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = Instant::now();
                    if let Ok(e) = serde_json::from_slice::<AlertEvent>(&p.payload) {
                        if e.subject.as_str() == PROBE {
                            if let Some(t0) = sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&e.ts.millis()) {
                                lat.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(now.duration_since(t0).as_secs_f64());
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bench officer: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await.context("alert subscription")??;

    // The probe: red, then back to normal, alternately. Connected, and its first (untimed,
    // normal) reading acknowledged, before the load starts: the first timed alert then measures
    // the pipeline, not this client's connection handshake.
    let mut o = MqttOptions::new(format!("bench-probe-{}", std::process::id()), &host, port);
    o.set_keep_alive(Duration::from_secs(30));
    let (probe, mut probe_loop) = AsyncClient::new(o, 100);
    probe_loop.network_options.set_tcp_nodelay(true);
    let (probe_acked_tx, probe_acked_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut first_ack = Some(probe_acked_tx);
        loop {
            match probe_loop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    if let Some(s) = first_ack.take() {
                        let _ = s.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let probe_topic = format!("riskwatch/v1/readings/{PROBE_SITE}/{PROBE}");
    // Start from normal (an earlier run against the same riskwatch may have left the probe red,
    // and a first red reading would then raise nothing): one untimed reading.
    let mut last_ts = Timestamp::now().millis() - 1;
    if !a.no_probe {
        let body = serde_json::json!({"kind": "water_level", "ts": last_ts, "unit": "m", "value": 5.0}).to_string();
        probe.publish(&probe_topic, QoS::AtLeastOnce, false, body).await?;
        tokio::time::timeout(Duration::from_secs(10), probe_acked_rx).await.context("the probe's first reading")??;
    }

    let before = match &a.metrics {
        Some(u) => Some(stored(u).await.context("reading the pipeline's metrics")?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let began_unix_ms = Timestamp::now().millis();
    let mut tasks = Vec::new();
    let connections = a.connections.max(1);
    for c in 0..connections {
        let mine: Vec<(String, Vec<String>)> = sites.iter().skip(c).step_by(connections).cloned().collect();
        let mut o = MqttOptions::new(format!("bench-gw-{c}-{}", std::process::id()), &host, port);
        o.set_max_packet_size(1 << 20, 1 << 20).set_keep_alive(Duration::from_secs(30)).set_inflight(a.inflight);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let ack = Arc::clone(&acked);
        let per_message = if a.single { 1 } else { PER_SITE as u64 };
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        ack.fetch_add(per_message, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench gateway: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let (stop, published) = (Arc::clone(&stop), Arc::clone(&published));
        let single = a.single;
        // This connection's share of `--count` (whole sites: a site's gauges go together).
        let quota = a.count.map(|c| c.div_ceil(connections as u64));
        // Pacing: this connection's share of the offered rate.
        let per_reading = (a.rate > 0).then(|| Duration::from_secs_f64(connections as f64 / a.rate as f64));
        tasks.push(tokio::spawn(async move {
            let begun = tokio::time::Instant::now();
            let mut sent = 0u64;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ts = Timestamp::now().millis();
                for (site, gauges) in &mine {
                    let n = if single {
                        for (i, g) in gauges.iter().enumerate() {
                            let v = VALUES[(round as usize + i) % VALUES.len()];
                            let body = format!("{{\"kind\":\"water_level\",\"ts\":{ts},\"unit\":\"m\",\"value\":{v}}}");
                            let topic = riskwatch_core::wire::topic::reading_topic(site, g);
                            if client.publish(topic, QoS::AtLeastOnce, false, body).await.is_err() {
                                return;
                            }
                        }
                        gauges.len() as u64
                    } else {
                        // Written by hand, not through serde_json::Value: the generator shares
                        // the machine with the pipeline and should cost it as little CPU as it can.
                        let mut body = String::with_capacity(gauges.len() * 80 + 32);
                        body.push_str("{\"v\":1,\"readings\":[");
                        for (i, g) in gauges.iter().enumerate() {
                            use std::fmt::Write as _;
                            let v = VALUES[(round as usize + i) % VALUES.len()];
                            let sep = if i == 0 { "" } else { "," };
                            let _ = write!(
                                body,
                                "{sep}{{\"sensor\":\"{g}\",\"kind\":\"water_level\",\"ts\":{ts},\"unit\":\"m\",\"value\":{v}}}"
                            );
                        }
                        body.push_str("]}");
                        let topic = riskwatch_core::wire::topic::batch_topic(site);
                        if client.publish(topic, QoS::AtLeastOnce, false, body).await.is_err() {
                            return;
                        }
                        gauges.len() as u64
                    };
                    published.fetch_add(n, Ordering::Relaxed);
                    sent += n;
                    if let Some(gap) = per_reading {
                        tokio::time::sleep_until(begun + gap * sent as u32).await;
                    }
                    if stop.load(Ordering::Relaxed) || quota.is_some_and(|q| sent >= q) {
                        break;
                    }
                }
                if quota.is_some_and(|q| sent >= q) {
                    break;
                }
                round += 1;
                // Readings of one gauge are at least a millisecond apart (event time moves on).
                let next = ts + 1;
                while Timestamp::now().millis() < next {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // The first timed reading one period after the load began (not at once, amid the
    // publishers' own connection handshakes).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + a.probe_every, a.probe_every);
    // A late tick must not fire twice in one millisecond: two probe readings with the same
    // event time are one reading to the engine (the second is a re-delivery), so one alert.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = false;
    let mut probes = 0u64;
    // With `--count`, until every connection has published its share; else for `--duration`.
    while (a.count.is_some() || started.elapsed() < a.duration) && !tasks.iter().all(|t| t.is_finished()) {
        tick.tick().await;
        if a.no_probe {
            continue;
        }
        high = !high;
        let ts = Timestamp::now().millis().max(last_ts + 1);
        last_ts = ts;
        let v = if high { 13.0 } else { 5.0 };
        sent_at.lock().unwrap_or_else(|e| e.into_inner()).insert(ts, Instant::now());
        let body = serde_json::json!({"kind": "water_level", "ts": ts, "unit": "m", "value": v}).to_string();
        probe.publish(&probe_topic, QoS::AtLeastOnce, false, body).await?;
        probes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let pub_n = published.load(Ordering::Relaxed);
    // Let the pipeline finish what it was given (up to 30 s) before reading the store count.
    let after = match &a.metrics {
        Some(u) => {
            let target = before.unwrap_or(0.0) + pub_n as f64;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut last = stored(u).await?;
            while last < target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                last = stored(u).await?;
            }
            Some((last, started.elapsed().as_secs_f64()))
        }
        None => None,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_order = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat = in_order.clone();
    lat.sort_by(|x, y| x.total_cmp(y));
    println!("publishing began at unix ms {}", began_unix_ms);
    let offered = if a.rate > 0 { format!("offered {} readings/s", a.rate) } else { "as fast as acknowledged".into() };
    println!("load: {sensors} gauges in {} sites, {connections} connections, {offered}, {elapsed:.1} s", sites.len());
    println!(
        "published {pub_n} readings ({:.0}/s), acknowledged by the broker {} ({:.0}/s)",
        pub_n as f64 / elapsed,
        acked.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed) as f64 / elapsed
    );
    if let (Some(b), Some((a, t))) = (before, after) {
        println!("stored {:.0} readings: {:.0}/s over {t:.1} s (until the store caught up)", a - b, (a - b) / t);
    }
    println!(
        "alert latency (publish → alert received), {} of {probes} probe alerts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5) * 1e3,
        percentile(&lat, 0.99) * 1e3,
        lat.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    // Where the tail is: a slow first alert is warm-up, slow alerts spread over the run are not.
    let mut slowest: Vec<(usize, f64)> = in_order.iter().copied().enumerate().collect();
    slowest.sort_by(|x, y| y.1.total_cmp(&x.1));
    let listed: Vec<String> =
        slowest.iter().take(5).map(|(i, l)| format!("#{} of {} {:.1} ms", i + 1, in_order.len(), l * 1e3)).collect();
    println!("slowest alerts (in the order received): {}", listed.join(", "));
    Ok(())
}
