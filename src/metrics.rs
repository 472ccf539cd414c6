//! Prometheus metrics, health and readiness for every riskwatch process (docs/operations.md,
//! "Metrics"). A small registry of counters, gauges and histograms kept in atomics, rendered in
//! Prometheus' text exposition format 0.0.4; `serve` answers `GET /metrics`, `/healthz` (the
//! process is alive) and `/readyz` (200 once connected and subscribed, 503 before or while a
//! dependency is lost).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Buckets (seconds) of the rule-evaluation histogram: per batch of readings.
pub const EVAL_BUCKETS: &[f64] = &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5];
/// Buckets (seconds) of sink flush latency.
pub const FLUSH_BUCKETS: &[f64] = &[0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// A monotonically increasing count.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A distribution over fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Arc<Histogram>),
    /// Read at scrape time from a value kept elsewhere (a component's own atomic stats).
    Read(Box<dyn Fn() -> f64 + Send + Sync>),
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<String, Value>,
}

/// The metrics of one process.
#[derive(Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

fn label_text(labels: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(s, "{}{k}=\"{v}\"", if i == 0 { "" } else { "," });
    }
    s
}

impl Metrics {
    fn entry<T>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Value,
        get: impl FnOnce(&Value) -> Option<T>,
    ) -> T {
        let mut f = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = f.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        let v = fam.series.entry(label_text(labels)).or_insert_with(make);
        get(v).unwrap_or_else(|| panic!("metric {name} registered twice with different types"))
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.entry(
            name,
            help,
            "counter",
            labels,
            || Value::Counter(Counter::default()),
            |v| match v {
                Value::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.entry(
            name,
            help,
            "gauge",
            labels,
            || Value::Gauge(Gauge::default()),
            |v| match v {
                Value::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// The histogram `name{labels}` over `bounds` (seconds).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Histogram> {
        self.entry(
            name,
            help,
            "histogram",
            labels,
            || {
                Value::Histogram(Arc::new(Histogram {
                    bounds,
                    counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                    sum_micros: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                }))
            },
            |v| match v {
                Value::Histogram(h) => Some(Arc::clone(h)),
                _ => None,
            },
        )
    }

    /// A counter (`kind` "counter") or gauge read from elsewhere at each scrape.
    pub fn read(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        fam.series.insert(label_text(labels), Value::Read(Box::new(f)));
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", fam.help, fam.kind);
            for (labels, v) in &fam.series {
                let braces = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
                    (true, true) => String::new(),
                    (true, false) => format!("{{{extra}}}"),
                    (false, true) => format!("{{{labels}}}"),
                    (false, false) => format!("{{{labels},{extra}}}"),
                };
                match v {
                    Value::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", braces(""), c.get());
                    }
                    Value::Gauge(g) => {
                        let _ = writeln!(out, "{name}{} {}", braces(""), g.0.load(Ordering::Relaxed));
                    }
                    Value::Read(f) => {
                        let _ = writeln!(out, "{name}{} {}", braces(""), f());
                    }
                    Value::Histogram(h) => {
                        let mut cumulative = 0;
                        for (b, c) in h.bounds.iter().zip(&h.counts) {
                            cumulative += c.load(Ordering::Relaxed);
                            let _ = writeln!(out, "{name}_bucket{} {cumulative}", braces(&format!("le=\"{b}\"")));
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}_bucket{} {count}", braces("le=\"+Inf\""));
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(out, "{name}_sum{} {sum}", braces(""));
                        let _ = writeln!(out, "{name}_count{} {count}", braces(""));
                    }
                }
            }
        }
        out
    }
}

/// Where a process serves its metrics: `--metrics ADDR`, `[metrics] listen` or
/// `RISKWATCH_METRICS_LISTEN`, in that order of precedence.
pub fn listen_address(flag: Option<SocketAddr>, file: Option<&str>) -> Result<Option<SocketAddr>> {
    if flag.is_some() {
        return Ok(flag);
    }
    let from_env = std::env::var("RISKWATCH_METRICS_LISTEN").ok();
    match from_env.as_deref().or(file) {
        None | Some("") => Ok(None),
        Some(a) => a.parse().map(Some).with_context(|| format!("metrics listen address {a:?} is not HOST:PORT")),
    }
}

/// What `/readyz` reports: each part of the process (ingest, rules worker, sink, the embedded
/// MQTT source) says whether it is ready; the process is ready when every part is.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, bool>>>);

impl Readiness {
    /// Sets one part's readiness.
    pub fn set(&self, part: &'static str, ready: bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(part, ready);
    }

    /// Mirrors a part's readiness from a watch channel for as long as it exists.
    pub fn follow(&self, part: &'static str, mut rx: watch::Receiver<bool>) {
        let me = self.clone();
        me.set(part, *rx.borrow());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let now = *rx.borrow();
                me.set(part, now);
            }
            me.set(part, false);
        });
    }

    /// Whether every part is ready (and there is at least one), with one line per part.
    pub fn report(&self) -> (bool, String) {
        let parts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = parts.iter().map(|(p, r)| format!("{p}: {}\n", if *r { "ready" } else { "not ready" })).collect();
        (!parts.is_empty() && parts.values().all(|r| *r), text)
    }
}

/// A process's metrics and readiness, handed to each component it runs.
#[derive(Clone, Default)]
pub struct Observability {
    /// The Prometheus series.
    pub metrics: Metrics,
    /// What `/readyz` reports.
    pub readiness: Readiness,
}

/// Kafka consumer lag per partition, from librdkafka's statistics (emitted every
/// `statistics.interval.ms`, which riskwatch's consumers set to 5 s).
pub fn consumer_lag(m: &Metrics, group: &str, stats: &rdkafka::Statistics) {
    for (topic, t) in &stats.topics {
        for (partition, p) in &t.partitions {
            if *partition < 0 || p.consumer_lag < 0 {
                continue; // librdkafka's internal partition, or not consumed by this member
            }
            let part = partition.to_string();
            m.gauge(
                "riskwatch_kafka_consumer_lag",
                "Records between a consumer group's position and the partition's end.",
                &[("group", group), ("topic", topic), ("partition", &part)],
            )
            .set(p.consumer_lag);
        }
    }
}

/// A consumer context that reports consumer lag (the sink's consumer).
pub struct LagContext {
    /// Where to report.
    pub metrics: Metrics,
    /// The consumer group, for the label.
    pub group: String,
}

impl rdkafka::ClientContext for LagContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        consumer_lag(&self.metrics, &self.group, &statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Metrics, readiness: Readiness) -> Result<SocketAddr> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let (ready, text) = readiness.report();
                async move { (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, text) }
            }),
        );
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("metrics: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// `riskwatch_build_info{version}` = 1, so dashboards can show what runs.
pub fn build_info(m: &Metrics) {
    m.gauge("riskwatch_build_info", "riskwatch version running (always 1).", &[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
}

/// What the rule stage reports: the embedded rules stage and every Kafka rules worker.
#[derive(Clone)]
pub struct RuleMetrics {
    m: Metrics,
    eval: Arc<Histogram>,
    evaluated: Counter,
    active: [Gauge; 4],
    state_copy: Arc<Histogram>,
}

impl RuleMetrics {
    /// Registers the rule-stage series in `m`.
    pub fn new(m: &Metrics) -> Self {
        let active = riskwatch_core::Level::ALL
            .map(|l| m.gauge("riskwatch_alerts_active", "Alerts active now, by level.", &[("level", l.as_str())]));
        // Every level/change series exists from the start, so rates are defined at once.
        for l in riskwatch_core::Level::ALL {
            for c in ["raised", "escalated", "cleared"] {
                m.counter(EVENTS, EVENTS_HELP, &[("level", l.as_str()), ("change", c)]);
            }
        }
        RuleMetrics {
            m: m.clone(),
            eval: m.histogram(
                "riskwatch_rule_evaluation_seconds",
                "Rule engine time per batch of readings (one MQTT message or Kafka record).",
                &[],
                EVAL_BUCKETS,
            ),
            evaluated: m.counter("riskwatch_readings_evaluated_total", "Readings through the rule engine.", &[]),
            active,
            state_copy: m.histogram(
                "riskwatch_rule_state_copy_seconds",
                "Time the rules stage spent copying the engine's state to save it (readings wait meanwhile).",
                &[],
                EVAL_BUCKETS,
            ),
        }
    }

    /// One copy of the engine's state, taken to save it.
    pub fn state_copied(&self, took: Duration) {
        self.state_copy.observe(took);
    }

    /// `n` readings evaluated in `took`.
    pub fn evaluated(&self, n: usize, took: Duration) {
        self.evaluated.add(n as u64);
        self.eval.observe(took);
    }

    /// One alert event.
    pub fn event(&self, e: &riskwatch_core::AlertEvent) {
        self.m.counter(EVENTS, EVENTS_HELP, &[("level", e.level.as_str()), ("change", e.change.as_str())]).inc();
    }

    /// One rejected message or batch item.
    pub fn rejection(&self, reason: &str) {
        rejection(&self.m, reason);
    }

    /// The engine's active alerts now.
    pub fn active(&self, levels: impl IntoIterator<Item = riskwatch_core::Level>) {
        let mut n = [0i64; 4];
        for l in levels {
            n[l.index()] += 1;
        }
        for (g, v) in self.active.iter().zip(n) {
            g.set(v);
        }
    }
}

const EVENTS: &str = "riskwatch_alert_events_total";
const EVENTS_HELP: &str =
    "Alert events, by level and change (raised, escalated, de-escalated, cleared, acknowledged…).";

/// One rejected message or batch item, by reason code (wire-format.md §7).
pub fn rejection(m: &Metrics, reason: &str) {
    m.counter("riskwatch_rejections_total", "Rejected input (dead-lettered), by reason.", &[("reason", reason)]).inc();
}

/// The MQTT source's counters (ingest and the embedded wiring).
pub fn mqtt_source(m: &Metrics, stats: &Arc<riskwatch_ingest::SourceStats>) {
    let read = |name: &'static str,
                help: &'static str,
                labels: &[(&str, &str)],
                f: fn(&riskwatch_ingest::SourceStats) -> u64| {
        let s = Arc::clone(stats);
        m.read(name, help, "counter", labels, move || f(&s) as f64);
    };
    read("riskwatch_mqtt_messages_total", "MQTT messages received by the ingest.", &[], |s| {
        s.messages.load(Ordering::Relaxed)
    });
    read("riskwatch_readings_in_total", "Valid readings received, by source.", &[("source", "mqtt")], |s| {
        s.readings.load(Ordering::Relaxed)
    });
    read(
        "riskwatch_mqtt_reconnects_total",
        "MQTT connection losses (each followed by a reconnect).",
        &[("client", "ingest")],
        |s| s.reconnects.load(Ordering::Relaxed),
    );
}

/// A sink's commit / flush: counts and latency.
pub fn sink_flush(m: &Metrics, sink: &'static str) -> impl Fn(usize, usize, Duration, bool) + Send + Sync + 'static {
    let readings = m.counter("riskwatch_readings_stored_total", "Readings written by a sink.", &[("sink", sink)]);
    let events = m.counter("riskwatch_alert_events_stored_total", "Alert events written by a sink.", &[("sink", sink)]);
    let errors = m.counter("riskwatch_sink_flush_errors_total", "Failed sink commits / flushes.", &[("sink", sink)]);
    let latency =
        m.histogram("riskwatch_sink_flush_seconds", "Sink commit / flush latency.", &[("sink", sink)], FLUSH_BUCKETS);
    move |r, e, took, ok| {
        latency.observe(took);
        if ok {
            readings.add(r as u64);
            events.add(e as u64);
        } else {
            errors.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.counter("riskwatch_x_total", "X.", &[("reason", "bad \"json\"")]).add(3);
        m.gauge("riskwatch_g", "G.", &[]).set(-2);
        let h = m.histogram("riskwatch_h_seconds", "H.", &[("stage", "rules")], &[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        m.read("riskwatch_r_total", "R.", "counter", &[], || 7.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE riskwatch_x_total counter\nriskwatch_x_total{reason=\"bad \\\"json\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("riskwatch_g -2\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"0.01\"} 2\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_count{stage=\"rules\"} 3\n"), "{text}");
        assert!(text.contains("riskwatch_r_total 7\n"), "{text}");
        // The same name and labels give the same counter.
        m.counter("riskwatch_x_total", "X.", &[("reason", "bad \"json\"")]).inc();
        assert!(m.render().contains("} 4\n"));
    }
}
