//! `riskwatch console`: the duty officers' web console, and (with `--notify`) the outbound
//! notifier.
//!
//! It is an MQTT client like any duty-room app, so it works the same in front of the embedded
//! pipeline and the Kafka path: it subscribes to alert events, the retained alert-state topics,
//! command errors and readings (for the charts), and sends officers' actions as lifecycle
//! commands on `riskwatch/v1/commands`. Its own SQLite file keeps the event history, the board
//! (so cleared alerts awaiting closure survive a restart) and the audit log; its alarm KPIs
//! (`kpis`) are a page and `/metrics` series. See `docs/console.md`.

mod auth;
mod basemap;
pub mod history;
pub mod init_users;
mod kpis;
mod store;
mod throttle;
mod users_edit;
mod web;

use anyhow::{Context, Result};
use riskwatch_core::wire::{topic, Limits};
use riskwatch_core::{AlertEvent, AlertState, Board, Registry, Value};
use riskwatch_service::settings::parse_mqtt_address;
use riskwatch_sinks::webhook::{Notifier, NotifyConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::Store;
use tokio::sync::{broadcast, oneshot};
use tracing::{info, warn};

pub use auth::hash_password;

/// A random password of 16 letters and digits (the demo's one-off officer).
pub fn random_password() -> String {
    auth::random_token().chars().take(16).collect()
}

/// `riskwatch console` options.
#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// Address the web console listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// MQTT broker (HOST:PORT) the pipeline publishes alerts on.
    #[arg(long, default_value = "127.0.0.1:18830")]
    mqtt: String,
    /// Sensor registry (TOML): names, sites and units for filters and charts.
    #[arg(long)]
    registry: PathBuf,
    /// Operators file (TOML, `[[user]]` with argon2 `password_hash`; docs/console.md).
    #[arg(long)]
    users: PathBuf,
    /// The pipeline's rules file: the out-of-service form offers its rule ids (and the
    /// data-quality ids, `dq.spike` … `dq.stale`, of the checks it configures) for a window on a
    /// rule.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The console's SQLite file (history, board, audit log).
    #[arg(long, default_value = "console.db")]
    db: PathBuf,
    /// Notifications file (webhooks, chat robots, CAP; docs/notifications.md).
    #[arg(long)]
    notify: Option<PathBuf>,
    /// MQTT client id (a persistent session: alerts published while the console is down are
    /// delivered when it returns).
    #[arg(long, default_value = "riskwatch-console")]
    client_id: String,
    /// CAP `sender` for the CAP download (`/api/alerts/{id}/cap.xml`).
    #[arg(long, default_value = "riskwatch")]
    cap_sender: String,
    /// Points of recent readings kept per sensor for the detail chart.
    #[arg(long, default_value_t = 360)]
    chart_points: usize,
    /// The pipeline's SQLite store (`riskwatch run --db`), read-only: detail charts show the
    /// readings around each alert from it, also for alerts older than this console process.
    #[arg(long, conflicts_with = "questdb")]
    store: Option<PathBuf>,
    /// QuestDB's HTTP address on the production path (`http://questdb:9000`): detail charts read
    /// the readings around each alert from its `readings` table.
    #[arg(long)]
    questdb: Option<String>,
    /// Duty officers on watch at once: the alarm KPIs (page and metrics) are per officer, and a
    /// flood is 10 alerts per officer in 10 minutes (docs/alarm-kpis.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    officers: u32,
    /// Stop after this long (e.g. `10m`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// The map's basemap: a GeoJSON FeatureCollection of outlines (WGS-84) to draw instead of
    /// the shipped indicative province outlines (e.g. the deployment's approved standard map).
    #[arg(long)]
    basemap: Option<PathBuf>,
    /// The console's address as browsers see it (e.g. `https://console.example.org`, behind a
    /// reverse proxy): state-changing requests must come from this origin (default: the
    /// request's own `Host`); an `https://` address also makes the session cookie `Secure`.
    #[arg(long, value_parser = parse_public_url)]
    public_url: Option<String>,
    /// Mark the session cookie `Secure` (browsers send it over HTTPS only): set it when a TLS
    /// reverse proxy serves the console (implied by an `https://` `--public-url`).
    #[arg(long)]
    secure_cookie: bool,
    /// Absolute session lifetime: a session ends this long after login however much it is used
    /// (it also ends after 12 h idle).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "12h")]
    session_lifetime: Duration,
    /// Password checks (argon2id, ~19 MiB each) run at once at most; up to 32 further logins
    /// wait up to 2 s for a turn, the rest get 503 with `Retry-After`.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    login_concurrency: u32,
}

/// `--public-url`: `http(s)://host[:port]` (a trailing `/` is dropped); its origin.
pub fn parse_public_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let Some((scheme, rest)) = t.split_once("://") else {
        return Err(format!("--public-url {s:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("--public-url {s:?}: expected http://HOST[:PORT] or https://HOST[:PORT], no path"));
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

/// What the pipeline answered to a command the console sent.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Applied: the resulting event.
    Applied(Box<AlertEvent>),
    /// Refused: code and reason.
    Refused(String, String),
}

/// The console's shared state.
pub struct App {
    board: Mutex<Board>,
    store: Mutex<Store>,
    users: RwLock<auth::Users>,
    users_path: PathBuf,
    /// Held while the admin page reads, changes and rewrites the users file.
    users_edit: Mutex<()>,
    sessions: Mutex<auth::Sessions>,
    live: broadcast::Sender<String>,
    mqtt: AsyncClient,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    readings: Mutex<HashMap<String, VecDeque<(i64, f64)>>>,
    chart_points: usize,
    /// The pipeline's store, for charts of readings the console did not see live.
    history: Option<history::History>,
    registry: Arc<Registry>,
    notifier: Mutex<Option<Notifier>>,
    cap_sender: String,
    /// Prometheus series served on `/metrics`.
    metrics: riskwatch_service::metrics::Metrics,
    /// What `/readyz` reports (subscribed to the broker).
    readiness: riskwatch_service::metrics::Readiness,
    /// The map's outlines (GeoJSON), served on `/basemap.geojson`.
    basemap: basemap::Basemap,
    /// Failed-login bookkeeping (check and count under this one lock).
    throttle: Mutex<throttle::Throttle>,
    /// Turns for password checks: bounds argon2's memory (~19 MiB each).
    password_checks: Arc<tokio::sync::Semaphore>,
    /// Logins waiting for a turn now (at most `web::MAX_WAITING`).
    login_waiting: std::sync::atomic::AtomicUsize,
    /// `--public-url`'s origin, if given.
    public_origin: Option<String>,
    /// Whether the session cookie is `Secure`.
    secure_cookie: bool,
    /// Officers on watch (the alarm KPIs are per officer).
    officers: u32,
    /// The last 24 h's alarm KPIs, for `/metrics`.
    recent_kpis: kpis::Recent,
    /// Rule ids the out-of-service form offers (`Options::window_rules`).
    window_rules: Vec<String>,
}

impl App {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The console's series: the board by level and state, live clients, notifications per
    /// channel (actions are counted as they are audited).
    fn register_metrics(self: &Arc<Self>) {
        let m = &self.metrics;
        riskwatch_service::metrics::build_info(m);
        for level in riskwatch_core::Level::ALL {
            for needs_action in [true, false] {
                let app = Arc::downgrade(self);
                let state = if needs_action { "needs_action" } else { "handled" };
                m.read(
                    "riskwatch_console_alerts",
                    "Alerts on the duty board, by level and whether an officer still has to act.",
                    "gauge",
                    &[("level", level.as_str()), ("state", state)],
                    move || {
                        let Some(app) = app.upgrade() else { return 0.0 };
                        let board = App::lock(&app.board);
                        board.sorted().iter().filter(|a| a.level == level && a.needs_action() == needs_action).count()
                            as f64
                    },
                );
            }
        }
        let app = Arc::downgrade(self);
        m.read("riskwatch_console_live_clients", "Browsers on the live (SSE) feed.", "gauge", &[], move || {
            app.upgrade().map_or(0.0, |a| a.live.receiver_count() as f64)
        });
        let channels = Self::lock(&self.notifier).as_ref().map(|n| n.stats()).unwrap_or_default();
        for (id, stats) in channels {
            type Field = fn(&riskwatch_sinks::webhook::ChannelStats) -> &std::sync::atomic::AtomicU64;
            let fields: [(&'static str, &'static str, Field); 4] = [
                (
                    "riskwatch_notifications_delivered_total",
                    "Notification messages delivered (a digest counts once).",
                    |s| &s.delivered,
                ),
                (
                    "riskwatch_notifications_digests_total",
                    "Digests sent instead of single messages (rate limit).",
                    |s| &s.digests,
                ),
                ("riskwatch_notifications_retries_total", "Failed notification attempts that were retried.", |s| {
                    &s.retries
                }),
                (
                    "riskwatch_notifications_dead_lettered_total",
                    "Alert events written to the notification dead-letter file.",
                    |s| &s.dead_lettered,
                ),
            ];
            for (name, help, field) in fields {
                let s = Arc::clone(&stats);
                m.read(name, help, "counter", &[("channel", &id)], move || {
                    field(&s).load(std::sync::atomic::Ordering::Relaxed) as f64
                });
            }
        }
    }

    /// An alert event from the pipeline: history, board, live clients, notifications, and the
    /// officer waiting for it if it answers their command.
    fn on_event(&self, e: AlertEvent) {
        let state = Self::lock(&self.board).apply(&e);
        if let Err(err) = Self::lock(&self.store).record(&e, state.as_ref()) {
            warn!(error = %err, "console store: cannot record event");
        }
        if let Some(n) = Self::lock(&self.notifier).as_mut() {
            n.notify(&e);
        }
        if let Some(id) = &e.command_id {
            if let Some(w) = Self::lock(&self.waiting).remove(id) {
                let _ = w.send(Outcome::Applied(Box::new(e.clone())));
            }
        }
        if let Some(s) = state {
            self.push_live("alert", &serde_json::json!({"state": s, "event": e}));
        }
    }

    /// A retained current-state message (a console that starts late learns the active alerts).
    fn on_state(&self, s: AlertState) {
        let taken = Self::lock(&self.board).insert(s.clone());
        if taken {
            self.push_live("state", &serde_json::json!({"state": s}));
        }
    }

    fn on_command_error(&self, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else { return };
        let id = v.get("command_id").and_then(|c| c.as_str()).unwrap_or_default();
        if let Some(w) = Self::lock(&self.waiting).remove(id) {
            let code = v.get("code").and_then(|c| c.as_str()).unwrap_or("refused").to_string();
            let error = v.get("error").and_then(|c| c.as_str()).unwrap_or("").to_string();
            let _ = w.send(Outcome::Refused(code, error));
        }
    }

    fn on_readings(&self, topic_name: &str, payload: &[u8]) {
        let Ok(decoded) = riskwatch_core::wire::decode(topic_name, payload, &self.registry, &Limits::default()) else {
            return;
        };
        let mut map = Self::lock(&self.readings);
        for r in decoded.readings {
            let v = match &r.value {
                Value::Scalar(v) => *v,
                Value::Displacement(d) => d.horizontal(),
                Value::Waveform(_) => continue,
            };
            let ring = map.entry(r.sensor.as_str().to_string()).or_default();
            if ring.back().is_some_and(|(t, _)| *t >= r.ts.millis()) {
                continue;
            }
            ring.push_back((r.ts.millis(), v));
            while ring.len() > self.chart_points {
                ring.pop_front();
            }
        }
    }

    fn on_message(&self, t: &str, payload: &[u8]) {
        if t.starts_with("riskwatch/v1/alerts/") {
            match serde_json::from_slice::<AlertEvent>(payload) {
                Ok(e) => self.on_event(e),
                Err(err) => warn!(topic = t, error = %err, "console: unreadable alert event"),
            }
        } else if t.starts_with("riskwatch/v1/state/") {
            // An empty retained message is a removal: the alert cleared (its event says so).
            if let Ok(s) = serde_json::from_slice::<AlertState>(payload) {
                self.on_state(s);
            }
        } else if t == topic::COMMAND_ERRORS_TOPIC {
            self.on_command_error(payload);
        } else if t.starts_with("riskwatch/v1/readings/") || t.starts_with("riskwatch/v1/gateways/") {
            self.on_readings(t, payload);
        }
    }

    fn push_live(&self, kind: &str, data: &serde_json::Value) {
        let _ = self.live.send(serde_json::json!({"type": kind, "data": data}).to_string());
    }
}

/// What a console needs, however it is started (`riskwatch console`, `riskwatch demo --console`).
pub struct Options {
    /// HTTP address.
    pub listen: SocketAddr,
    /// MQTT broker `HOST:PORT`.
    pub mqtt: String,
    /// Sensor registry.
    pub registry: Arc<Registry>,
    /// Operators file.
    pub users: PathBuf,
    /// SQLite file.
    pub db: PathBuf,
    /// Notifications file.
    pub notify: Option<PathBuf>,
    /// MQTT client id.
    pub client_id: String,
    /// CAP sender.
    pub cap_sender: String,
    /// Readings kept per sensor for charts.
    pub chart_points: usize,
    /// The pipeline's SQLite store, read for chart history.
    pub store: Option<PathBuf>,
    /// Or QuestDB's HTTP address, read for chart history.
    pub questdb: Option<String>,
    /// GeoJSON outlines for the map instead of the shipped ones.
    pub basemap: Option<PathBuf>,
    /// The console's origin as browsers see it (`parse_public_url`).
    pub public_url: Option<String>,
    /// `Secure` session cookie (also when `public_url` is `https://`).
    pub secure_cookie: bool,
    /// Absolute session lifetime.
    pub session_lifetime: Duration,
    /// Password checks at once at most.
    pub login_concurrency: u32,
    /// Duty officers on watch at once (the alarm KPIs are per officer).
    pub officers: u32,
    /// Rule ids a window on a rule can name (`RuleSet::window_rule_ids`), offered by the
    /// out-of-service form; empty: the form offers the data-quality ids (`dq.gross_range` …
    /// `dq.stale`) and takes any id typed.
    pub window_rules: Vec<String>,
}

impl Options {
    /// The login and session settings' defaults (`riskwatch demo --console`).
    pub const DEFAULT_SESSION_LIFETIME: Duration = auth::LIFETIME;
    /// Password checks at once by default.
    pub const DEFAULT_LOGIN_CONCURRENCY: u32 = 2;
}

/// A running console.
pub struct Console {
    app: Arc<App>,
    server: tokio::task::JoinHandle<()>,
    feed: tokio::task::JoinHandle<()>,
    /// Where it listens.
    pub local_addr: SocketAddr,
}

/// Runs `riskwatch console` until stopped.
pub async fn run(args: ConsoleArgs) -> Result<()> {
    let registry = Arc::new(riskwatch_service::settings::load_registry(&args.registry)?);
    let window_rules = match &args.rules {
        Some(path) => riskwatch_service::settings::load_rules(path)?.window_rule_ids(),
        None => Vec::new(),
    };
    let console = Console::start(Options {
        listen: args.listen,
        mqtt: args.mqtt,
        registry,
        users: args.users,
        db: args.db,
        notify: args.notify,
        client_id: args.client_id,
        cap_sender: args.cap_sender,
        chart_points: args.chart_points,
        store: args.store,
        questdb: args.questdb,
        basemap: args.basemap,
        public_url: args.public_url,
        secure_cookie: args.secure_cookie,
        session_lifetime: args.session_lifetime,
        login_concurrency: args.login_concurrency,
        officers: args.officers,
        window_rules,
    })
    .await?;
    match args.duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = riskwatch_service::shutdown::shutdown_signal() => {}
        },
        None => riskwatch_service::shutdown::shutdown_signal().await,
    }
    console.stop().await;
    Ok(())
}

impl Console {
    /// Connects to the broker, starts serving and returns once listening (and, if the broker
    /// answers within 15 s, subscribed).
    pub async fn start(o: Options) -> Result<Console> {
        let users = auth::Users::load(&o.users)?;
        let basemap = basemap::Basemap::load(o.basemap.as_deref())?;
        let store = Store::open(&o.db)?;
        let history = match (&o.store, &o.questdb) {
            (Some(path), _) => Some(history::History::Sqlite(history::StoreHistory::new(path))),
            (None, Some(base)) => {
                Some(history::History::Questdb(history::QuestdbHistory::new(base).map_err(anyhow::Error::msg)?))
            }
            (None, None) => None,
        };
        let mut board = Board::new();
        for s in store.board()? {
            board.insert(s);
        }
        let notifier = match &o.notify {
            Some(path) => {
                let cfg = NotifyConfig::load(path)?;
                Some(Notifier::start(cfg, Some(Arc::clone(&o.registry)))?)
            }
            None => None,
        };
        let (host, port) = parse_mqtt_address(&o.mqtt)?;
        let mut opts = MqttOptions::new(&o.client_id, host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(15))
            .set_clean_session(false)
            .set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let Some((u, p)) = riskwatch_service::settings::mqtt_credentials_from_env()? {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = riskwatch_service::mqtt_tls::from_env()? {
            opts.set_transport(tls);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        // Small messages go out at once, not after the previous one's TCP acknowledgement.
        eventloop.network_options.set_tcp_nodelay(true);
        let (live, _) = broadcast::channel(1024);
        let app = Arc::new(App {
            board: Mutex::new(board),
            store: Mutex::new(store),
            users: RwLock::new(users),
            users_path: o.users.clone(),
            users_edit: Mutex::default(),
            sessions: Mutex::new(auth::Sessions::new(o.session_lifetime)),
            live,
            mqtt: client.clone(),
            waiting: Mutex::default(),
            readings: Mutex::default(),
            chart_points: o.chart_points.max(10),
            history,
            registry: o.registry,
            notifier: Mutex::new(notifier),
            cap_sender: o.cap_sender,
            metrics: riskwatch_service::metrics::Metrics::default(),
            readiness: riskwatch_service::metrics::Readiness::default(),
            basemap,
            throttle: Mutex::new(throttle::Throttle::new(throttle::Limits::default())),
            password_checks: Arc::new(tokio::sync::Semaphore::new(o.login_concurrency.clamp(1, 64) as usize)),
            login_waiting: Default::default(),
            secure_cookie: o.secure_cookie || o.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
            public_origin: o.public_url,
            officers: o.officers.max(1),
            recent_kpis: kpis::Recent::default(),
            window_rules: o.window_rules,
        });
        app.register_metrics();
        app.register_kpi_metrics();
        let (subscribed_tx, mut subscribed_rx) = tokio::sync::watch::channel(false);
        app.readiness.follow("broker", subscribed_rx.clone());
        let feed_app = Arc::clone(&app);
        let feed = tokio::spawn(async move {
            let mut outage = riskwatch_core::outage::OutageLog::new("console");
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        outage.connected(std::time::Instant::now());
                        for (filter, qos) in [
                            (topic::ALERTS_FILTER, QoS::AtLeastOnce),
                            (topic::STATE_FILTER, QoS::AtLeastOnce),
                            (topic::COMMAND_ERRORS_TOPIC, QoS::AtLeastOnce),
                            (topic::READINGS_FILTER, QoS::AtMostOnce),
                            (topic::GATEWAY_READINGS_FILTER, QoS::AtMostOnce),
                        ] {
                            let _ = client.subscribe(filter, qos).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => feed_app.on_message(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        let _ = subscribed_tx.send(false);
                        outage.failed(std::time::Instant::now(), &e);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(o.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is the port in use?)", o.listen))?;
        let local_addr = listener.local_addr()?;
        let server = tokio::spawn(web::serve(listener, Arc::clone(&app)));
        if tokio::time::timeout(Duration::from_secs(15), subscribed_rx.wait_for(|s| *s)).await.is_err() {
            warn!("console: not subscribed to {host}:{port} yet; will keep trying");
        }
        println!("riskwatch console ready: http://{local_addr}/ (MQTT {host}:{port})");
        info!(%local_addr, "console listening");
        Ok(Console { app, server, feed, local_addr })
    }

    /// Stops serving; notifications still queued get up to 10 s to go out.
    pub async fn stop(self) {
        self.server.abort();
        self.feed.abort();
        let notifier = App::lock(&self.app.notifier).take();
        if let Some(n) = notifier {
            n.close(Duration::from_secs(10)).await;
        }
    }
}

/// `riskwatch hash-password`: reads a password on stdin, prints its argon2id hash.
pub fn hash_password_cmd() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(pw.len() >= 8, "use a password of at least 8 characters");
    println!("{}", hash_password(pw)?);
    Ok(())
}
