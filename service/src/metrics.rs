//! Prometheus metrics, health and readiness for every riskwatch process (docs/operations.md,
//! "Metrics"). A registry of counters, gauges and histograms on prometheus-client (the
//! Prometheus project's Rust client), rendered in Prometheus' text exposition format 0.0.4, with
//! the `process_*` series of [`crate::process_metrics`]; `serve` answers `GET /metrics`,
//! `/healthz` (the process is alive) and `/readyz` (200 once connected and subscribed, 503 before
//! or while a dependency is lost).
//!
//! Series are named as they are exposed (a counter's name ends in `_total`) and created on
//! first use with their labels in the order given.

use crate::process_metrics::ProcessCollector;
use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A series' labels, in the order they are exposed.
type Labels = Vec<(String, String)>;

/// A monotonically increasing count.
#[derive(Clone, Default)]
pub struct Counter(PromCounter);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(PromGauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }
}

/// A distribution over fixed buckets (seconds).
pub struct Histogram(PromHistogram);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Makes a family's histograms with its buckets.
#[derive(Clone, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<PromHistogram> for Buckets {
    fn new_metric(&self) -> PromHistogram {
        PromHistogram::new(self.0.iter().copied())
    }
}

/// A registered family, by type.
enum Kind {
    Counter(Family<Labels, PromCounter>),
    Gauge(Family<Labels, PromGauge>),
    Histogram(Family<Labels, PromHistogram, Buckets>),
    /// Values read at scrape time ([`Metrics::read`]); counter or not.
    Read {
        counter: bool,
    },
}

/// Series whose values are read from elsewhere (a component's own atomic stats) at each scrape.
#[derive(Default)]
struct Reads(Mutex<BTreeMap<&'static str, ReadFamily>>);

type ReadFn = Box<dyn Fn() -> f64 + Send + Sync>;

struct ReadFamily {
    help: &'static str,
    counter: bool,
    series: Vec<(Labels, ReadFn)>,
}

impl fmt::Debug for Reads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reads")
    }
}

/// A whole number as one (`7`, as counters and gauges of the other kinds print), else as is.
fn encode_read(v: f64, enc: &mut prometheus_client::encoding::MetricEncoder<'_>, counter: bool) -> fmt::Result {
    let whole = v.fract() == 0.0 && v.abs() < 9e15;
    match (counter, whole) {
        (true, true) if v >= 0.0 => enc.encode_counter::<NoLabelSet, u64, f64>(&(v as u64), None),
        (true, _) => enc.encode_counter::<NoLabelSet, f64, f64>(&v, None),
        (false, true) => enc.encode_gauge(&(v as i64)),
        (false, false) => enc.encode_gauge(&v),
    }
}

impl Collector for Reads {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let fams = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, fam) in fams.iter() {
            let kind = if fam.counter { MetricType::Counter } else { MetricType::Gauge };
            let mut metric = encoder.encode_descriptor(exposed_as(name, fam.counter), fam.help, None, kind)?;
            for (labels, read) in &fam.series {
                encode_read(read(), &mut metric.encode_family(labels)?, fam.counter)?;
            }
        }
        Ok(())
    }
}

/// The name to give prometheus-client, which appends `_total` to a counter's.
fn exposed_as(name: &'static str, counter: bool) -> &'static str {
    if counter {
        debug_assert!(name.ends_with("_total"), "counter {name} must end in _total");
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    }
}

struct Inner {
    registry: Registry,
    kinds: HashMap<&'static str, Kind>,
    reads: Arc<Reads>,
}

/// The metrics of one process.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reads = Arc::new(Reads::default());
        registry.register_collector(Box::new(Arc::clone(&reads)));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics { inner: Arc::new(Mutex::new(Inner { registry, kinds: HashMap::new(), reads })) }
    }
}

fn labels(labels: &[(&str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Metrics {
    /// The family `name`, registered by `make` on first use.
    fn family<T>(
        &self,
        name: &'static str,
        help: &'static str,
        make: impl FnOnce(&mut Registry, &'static str, &'static str) -> Kind,
        get: impl FnOnce(&Kind) -> Option<T>,
    ) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { registry, kinds, .. } = &mut *inner;
        // prometheus-client ends every help text with a full stop.
        let help = help.strip_suffix('.').unwrap_or(help);
        let kind = kinds.entry(name).or_insert_with(|| make(registry, name, help));
        get(kind).unwrap_or_else(|| panic!("metric {name} registered twice with different types"))
    }

    /// The counter `name{labels}` (`name` ends in `_total`), created at zero on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Counter {
        let family = self.family(
            name,
            help,
            |r, name, help| {
                let f = Family::default();
                r.register(exposed_as(name, true), help, f.clone());
                Kind::Counter(f)
            },
            |k| match k {
                Kind::Counter(f) => Some(f.clone()),
                _ => None,
            },
        );
        Counter(family.get_or_create_owned(&labels(l)))
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Gauge {
        let family = self.family(
            name,
            help,
            |r, name, help| {
                let f = Family::default();
                r.register(name, help, f.clone());
                Kind::Gauge(f)
            },
            |k| match k {
                Kind::Gauge(f) => Some(f.clone()),
                _ => None,
            },
        );
        Gauge(family.get_or_create_owned(&labels(l)))
    }

    /// The histogram `name{labels}` over `bounds` (seconds; the first registration's bounds
    /// hold for the whole family).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        l: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Histogram> {
        let family = self.family(
            name,
            help,
            |r, name, help| {
                let f = Family::new_with_constructor(Buckets(bounds));
                r.register(name, help, f.clone());
                Kind::Histogram(f)
            },
            |k| match k {
                Kind::Histogram(f) => Some(f.clone()),
                _ => None,
            },
        );
        Arc::new(Histogram(family.get_or_create_owned(&labels(l))))
    }

    /// A counter (`kind` "counter", `name` ending in `_total`) or gauge read from elsewhere at
    /// each scrape. Reading the same series again replaces its source.
    pub fn read(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        l: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let counter = kind == "counter";
        let reads = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match inner.kinds.entry(name).or_insert(Kind::Read { counter }) {
                Kind::Read { counter: c } if *c == counter => {}
                _ => panic!("metric {name} registered twice with different types"),
            }
            Arc::clone(&inner.reads)
        };
        let mut fams = reads.0.lock().unwrap_or_else(|e| e.into_inner());
        let fam = fams.entry(name).or_insert_with(|| ReadFamily { help, counter, series: Vec::new() });
        let l = labels(l);
        fam.series.retain(|(have, _)| *have != l);
        fam.series.push((l, Box::new(f)));
    }

    /// The exposition text (Prometheus text format 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &inner.registry);
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
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render()) }
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
