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
