//! The console's HTTP API and pages (axum). JSON in and out; a session cookie after login;
//! live updates as server-sent events on `/api/stream`.

// Handlers return axum's `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

mod admin;
mod kpi;
mod service;

use super::auth::{Lookup, Role, Session};
use super::store::{AuditEntry, HistoryQuery};
use super::{App, Outcome};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use riskwatch_core::wire::topic;
use riskwatch_core::AlertEvent;
use riskwatch_sinks::cap::{self, CapContext};
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

type AppState = Arc<App>;

/// How long an action waits for the pipeline's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a login waits for a turn to check its password before 503.
const TURN_WITHIN: Duration = Duration::from_secs(2);
/// Logins waiting for a turn at most; more get 503 at once (each holds its request).
pub(crate) const MAX_WAITING: usize = 32;

/// Counts a login waiting for a turn, until dropped (also when the client goes away).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    /// In line, or `None` if [`MAX_WAITING`] are already.
    fn join(n: &'a std::sync::atomic::AtomicUsize) -> Option<Self> {
        let w = Waiting(n);
        (n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < MAX_WAITING).then_some(w)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves the console until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, app: AppState) {
    let router = Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("assets/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("assets/app.js")) }))
        .route("/map.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("assets/map.js")) }))
        .route("/kpi.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("assets/kpi.js")) }))
        .route("/app.css", get(|| async { page("text/css; charset=utf-8", include_str!("assets/app.css")) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/basemap.geojson", get(basemap))
        .route("/api/alerts", get(alerts))
        .route("/api/sites", get(sites))
        .route("/api/alerts/{id}", get(alert_detail))
        .route("/api/alerts/{id}/cap.xml", get(alert_cap))
        .route("/api/alerts/{id}/{action}", post(act))
        .route("/api/service/rules", get(service::rules))
        .route("/api/service/{action}", post(service::window))
        .route("/api/history", get(history))
        .route("/api/audit", get(audit_log))
        .route("/api/kpi", get(kpi::kpi))
        .route("/api/users", get(admin::list).post(admin::add))
        .route("/api/users/{name}", patch(admin::update).delete(admin::remove))
        .route("/api/users/{name}/password", post(admin::password))
        .route("/api/stream", get(stream))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), same_origin))
        .with_state(app);
    if let Err(e) = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await {
        tracing::error!(error = %e, "console server stopped");
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "message": message.into()}))).into_response()
}

/// [`error`] with `Retry-After: secs`.
fn refuse_for(status: StatusCode, code: &str, message: impl Into<String>, secs: u64) -> Response {
    let mut r = error(status, code, message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// `scheme://authority` of a URL (a `Referer`), lowercased.
fn origin_of(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split(['/', '?', '#']).next().unwrap_or("")),
        None => url,
    }
}

/// Whether `origin` is the console's own: `--public-url`'s if given, else that of the
/// request's `Host` (any scheme: a TLS proxy in front changes it).
fn own_origin(app: &App, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    if let Some(public) = &app.public_origin {
        return origin == *public;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    match (origin.split_once("://"), host) {
        (Some((scheme, authority)), Some(host)) => matches!(scheme, "http" | "https") && authority == host,
        _ => false,
    }
}

/// Every state-changing request (anything but GET, HEAD, OPTIONS) whose `Origin` (or, without
/// one, `Referer`) is not the console's own gets 403 and is audited. A request with neither is
/// let through: browsers send `Origin` on every cross-origin POST, and the JSON bodies these
/// routes require cannot come from a cross-site form without a CORS preflight the console never
/// answers; command-line clients send neither.
async fn same_origin(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let text = |v: &HeaderValue| v.to_str().unwrap_or("(not text)").to_string();
    let claimed = h.get(header::ORIGIN).map(text).or_else(|| h.get(header::REFERER).map(|v| origin_of(&text(v))));
    let Some(origin) = claimed else { return next.run(req).await };
    if own_origin(&app, h, &origin) {
        return next.run(req).await;
    }
    let shown: String = origin.chars().take(200).collect();
    let s = cookie_token(h).and_then(|t| App::lock(&app.sessions).get(&t));
    let mut e = entry(s.as_ref(), "", "foreign_origin", remote);
    e.detail = format!("{} {} from origin {shown:?}", req.method(), req.uri().path());
    e.outcome = "refused: foreign origin".into();
    audit(&app, e);
    error(
        StatusCode::FORBIDDEN,
        "foreign_origin",
        format!("refused: origin {shown:?} is not this console's; use the console's own page"),
    )
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::COOKIE)?.to_str().ok()?;
    raw.split(';').map(str::trim).find_map(|c| c.strip_prefix("rw_session=")).map(str::to_string)
}

/// The caller's session, or 401.
fn session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let token =
        cookie_token(headers).ok_or_else(|| error(StatusCode::UNAUTHORIZED, "login_required", "log in first"))?;
    let found = App::lock(&app.sessions).lookup(&token);
    match found {
        Lookup::Valid(s) => Ok(s),
        Lookup::Expired(s) => {
            let mut e = entry(Some(&s), "", "session_expired", SocketAddr::from(([0, 0, 0, 0], 0)));
            e.remote = String::new();
            e.outcome = "ended: lifetime or idle time reached".into();
            audit(app, e);
            Err(error(StatusCode::UNAUTHORIZED, "login_required", "session expired; log in again"))
        }
        Lookup::Unknown => Err(error(StatusCode::UNAUTHORIZED, "login_required", "session expired; log in again")),
    }
}

fn require(app: &App, headers: &HeaderMap, role: Role) -> Result<Session, Response> {
    let s = session(app, headers)?;
    if s.role < role {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} may not do this (needs role {role:?})", s.name),
        ));
    }
    Ok(s)
}

async fn readyz(State(app): State<AppState>) -> Response {
    let (ready, text) = app.readiness.report();
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, text).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, riskwatch_service::metrics::CONTENT_TYPE)], app.metrics.render())
        .into_response()
}

/// Counts a finished console action: `ok`, `refused` (by the engine, or a wrong password) or
/// `failed` (not sent, no answer).
fn count_action(app: &App, action: &str, outcome: &str) {
    let result = match outcome {
        "ok" => "ok",
        o if o.starts_with("no answer") || o.starts_with("not sent") => "failed",
        _ => "refused",
    };
    app.metrics
        .counter(
            "riskwatch_console_actions_total",
            "Console actions (logins, acknowledge, assign, resolve…) by result: ok, refused, failed.",
            &[("action", action), ("result", result)],
        )
        .inc();
}

fn audit(app: &App, entry: AuditEntry) -> Option<AuditEntry> {
    if entry.outcome != "sent" {
        count_action(app, &entry.action, &entry.outcome);
    }
    match App::lock(&app.store).audit(entry) {
        Ok(e) => {
            app.push_live("audit", &json!(e));
            Some(e)
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot write the audit log");
            None
        }
    }
}

fn entry(s: Option<&Session>, user: &str, action: &str, remote: SocketAddr) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: String::new(),
        user: s.map_or(user.to_string(), |s| s.name.clone()),
        role: s.map_or(String::new(), |s| format!("{:?}", s.role).to_lowercase()),
        action: action.into(),
        alert_id: None,
        detail: String::new(),
        outcome: "ok".into(),
        remote: remote.ip().to_string(),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginBody>,
) -> Response {
    let ip = remote.ip();
    // The name as audited: the client chose it, so bounded.
    let tried: String = body.name.chars().take(64).collect();
    // Checked and counted in one step, before the password is looked at.
    let admitted = App::lock(&app.throttle).attempt(&body.name, ip, Instant::now());
    if let Err(wait) = admitted {
        let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut e = entry(None, &tried, "login_failed", remote);
        e.outcome = format!("throttled: too many attempts from {ip}; retry after {secs} s");
        audit(&app, e);
        return refuse_for(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("too many login attempts from this address; try again in {secs} s"),
            secs,
        );
    }
    // Argon2 needs ~19 MiB per check: only a few at once; up to MAX_WAITING others wait up to
    // TURN_WITHIN for a turn, the rest are turned away at once.
    let turn = match Waiting::join(&app.login_waiting) {
        Some(_in_line) => {
            let acquire = Arc::clone(&app.password_checks).acquire_owned();
            tokio::time::timeout(TURN_WITHIN, acquire).await.ok().and_then(Result::ok)
        }
        None => None,
    };
    let permit = match turn {
        Some(p) => p,
        None => {
            App::lock(&app.throttle).refund(&body.name, ip);
            let mut e = entry(None, &tried, "login_failed", remote);
            e.outcome = "busy: too many logins at once".into();
            audit(&app, e);
            return refuse_for(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many logins at once; try again", 1);
        }
    };
    // Off the async workers, holding the turn until done (even if the client goes away).
    let app2 = Arc::clone(&app);
    let (name, password) = (body.name.clone(), body.password);
    let user = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        app2.users.read().unwrap_or_else(|e| e.into_inner()).verify(&name, &password).cloned()
    })
    .await
    .ok()
    .flatten();
    let Some(user) = user else {
        let mut e = entry(None, &tried, "login_failed", remote);
        e.outcome = "wrong name or password".into();
        audit(&app, e);
        return error(StatusCode::UNAUTHORIZED, "bad_login", "wrong name or password");
    };
    App::lock(&app.throttle).succeeded(&user.name, ip);
    let (token, lifetime) = {
        let mut sessions = App::lock(&app.sessions);
        (sessions.open(&user), sessions.lifetime())
    };
    let s = App::lock(&app.sessions).get(&token);
    audit(&app, entry(s.as_ref(), &user.name, "login", remote));
    let cookie = format!(
        "rw_session={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        lifetime.as_secs().max(1),
        if app.secure_cookie { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Json(json!(s))).into_response()
}

async fn logout(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie_token(&headers) {
        if let Some(s) = App::lock(&app.sessions).close(&token) {
            audit(&app, entry(Some(&s), "", "logout", remote));
        }
    }
    let cookie =
        if app.secure_cookie { "rw_session=; Max-Age=0; Path=/; Secure" } else { "rw_session=; Max-Age=0; Path=/" };
    ([(header::SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response()
}

async fn me(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match session(&app, &headers) {
        Ok(s) => Json(json!(s)).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct BoardFilter {
    site: Option<String>,
    kind: Option<String>,
    level: Option<String>,
    exercise: Option<bool>,
}

async fn alerts(State(app): State<AppState>, headers: HeaderMap, Query(f): Query<BoardFilter>) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let board = App::lock(&app.board);
    let list: Vec<_> = board
        .sorted()
        .into_iter()
        .filter(|a| f.site.as_deref().is_none_or(|s| s.is_empty() || a.site.as_str() == s))
        .filter(|a| f.kind.as_deref().is_none_or(|k| k.is_empty() || a.kind.as_str() == k))
        .filter(|a| f.level.as_deref().is_none_or(|l| l.is_empty() || a.level.as_str() == l))
        .filter(|a| f.exercise.is_none_or(|x| a.exercise == x))
        .cloned()
        .collect();
    let sites: Vec<_> =
        app.registry.sites().map(|s| json!({"id": s.id.as_str(), "name": s.name, "name_zh": s.name_zh})).collect();
    Json(json!({"alerts": list, "sites": sites})).into_response()
}

/// The map's outlines (the shipped ones or `--basemap`).
async fn basemap(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    ([(header::CONTENT_TYPE, "application/geo+json"), (header::CACHE_CONTROL, "no-cache")], app.basemap.geojson())
        .into_response()
}

/// Every site for the map: names, division code, and where it is (its own location, or the
/// mean of its sensors'; `null` if neither is known). Levels come from `/api/alerts` and the
/// live feed, as for the board.
async fn sites(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let at = app.registry.site_locations();
    let list: Vec<_> = app
        .registry
        .sites()
        .map(|s| {
            let l = at.get(&s.id);
            json!({
                "id": s.id.as_str(), "name": s.name, "name_zh": s.name_zh, "region": s.region,
                "division": s.division, "lat": l.map(|l| l.lat), "lon": l.map(|l| l.lon),
                "located": if s.location.is_some() { "site" } else if l.is_some() { "sensors" } else { "unknown" },
            })
        })
        .collect();
    Json(json!({"sites": list})).into_response()
}

async fn alert_detail(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let events = match App::lock(&app.store).alert_events(&id) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    let state = App::lock(&app.board).get(&id).cloned();
    if state.is_none() && events.is_empty() {
        return error(StatusCode::NOT_FOUND, "unknown_alert", format!("no alert {id}"));
    }
    let subject = state
        .as_ref()
        .map(|s| s.subject.as_str().to_string())
        .or_else(|| events.last().map(|e| e.subject.as_str().to_string()));
    let readings = chart_readings(&app, subject.as_deref(), state.as_ref(), &events).await;
    let sensor = subject
        .as_deref()
        .and_then(|s| app.registry.sensor(s))
        .map(|s| json!({"id": s.id.as_str(), "name": s.name, "unit": &*s.unit}));
    Json(json!({"state": state, "events": events, "readings": readings, "sensor": sensor})).into_response()
}

/// The readings for an alert's chart: from the pipeline's store when the console has one (up
/// to the alert's last change and a little after, or the latest while it holds), else those
/// the console received live.
async fn chart_readings(
    app: &App,
    subject: Option<&str>,
    state: Option<&riskwatch_core::AlertState>,
    events: &[AlertEvent],
) -> Vec<(i64, f64)> {
    let Some(sensor) = subject else { return Vec::new() };
    if let Some(h) = &app.history {
        let first = state.map(|s| s.first_ts).or_else(|| events.first().map(|e| e.first_ts));
        let last = state.map(|s| s.updated_ts).or_else(|| events.last().map(|e| e.ts));
        let until = match (state.is_some_and(|s| s.active), first, last) {
            (true, ..) | (_, None, _) | (_, _, None) => i64::MAX,
            // After the end, a quarter of the alert's length (at least ten minutes) of aftermath.
            (false, Some(f), Some(l)) => l.millis().saturating_add(((l.millis() - f.millis()) / 4).max(600_000)),
        };
        match h.readings(sensor, until, app.chart_points.saturating_mul(4)).await {
            Ok(v) if !v.is_empty() => return v,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "chart history not read from the store"),
        }
    }
    App::lock(&app.readings).get(sensor).map(|r| r.iter().copied().collect()).unwrap_or_default()
}

async fn alert_cap(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let latest = App::lock(&app.store).latest_event(&id);
    match latest {
        Ok(Some(e)) => {
            let ctx = CapContext {
                sender: &app.cap_sender,
                sender_name: "",
                site: app.registry.site(e.site.as_str()),
                location: app.registry.sensor(e.subject.as_str()).and_then(|s| s.location),
            };
            ([(header::CONTENT_TYPE, "application/cap+xml; charset=utf-8")], cap::alert_xml(&e, &ctx)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "unknown_alert", format!("no alert {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

#[derive(Deserialize, Default)]
struct ActBody {
    #[serde(default)]
    note: String,
    #[serde(default)]
    unit: Option<String>,
    /// For `shelve`: how long.
    #[serde(default)]
    minutes: Option<u32>,
}

/// Acknowledge / assign / resolve / shelve / unshelve: sends the command, waits for the
/// pipeline's answer, audits.
async fn act(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Json(body): Json<ActBody>,
) -> Response {
    let s = match require(&app, &headers, Role::Officer) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !matches!(action.as_str(), "acknowledge" | "assign" | "resolve" | "shelve" | "unshelve") {
        return error(StatusCode::NOT_FOUND, "unknown_action", format!("no action {action:?}"));
    }
    if action == "assign" && body.unit.as_deref().is_none_or(|u| u.trim().is_empty()) {
        return error(StatusCode::BAD_REQUEST, "unit_required", "say which unit the alert is assigned to");
    }
    if action == "resolve" && body.note.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "note_required", "resolving needs a note on what was done");
    }
    if action == "shelve" && body.note.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "note_required",
            "shelving needs the reason (the known fault being fixed)",
        );
    }
    if action == "shelve" && body.minutes.is_none() {
        return error(StatusCode::BAD_REQUEST, "minutes_required", "say for how many minutes the alert is shelved");
    }
    let site = App::lock(&app.board).get(&id).map(|a| a.site.as_str().to_string());
    let command_id = format!("console-{}", &super::auth::random_token()[..16]);
    let mut cmd = json!({
        "command_id": command_id, "alert_id": id, "action": action, "by": s.name, "note": body.note,
    });
    if let Some(unit) = &body.unit {
        cmd["unit"] = json!(unit);
    }
    if action == "shelve" {
        cmd["minutes"] = json!(body.minutes);
    }
    if let Some(site) = &site {
        cmd["site"] = json!(site);
    }
    let mut e = entry(Some(&s), "", &action, remote);
    e.alert_id = Some(id.clone());
    e.detail = match (&body.unit, body.minutes) {
        (Some(u), _) => format!("unit: {u}; note: {}", body.note),
        (None, Some(m)) if action == "shelve" => format!("{m} min; reason: {}", body.note),
        _ => body.note.clone(),
    };
    e.outcome = "sent".into();
    let logged = audit(&app, e);
    send_command(&app, &command_id, cmd, logged.as_ref()).await
}

/// Publishes an officer's command, waits for the pipeline's answer (the event carrying its
/// `command_id`, or the error report) and finishes its audit entry with it.
async fn send_command(app: &App, command_id: &str, cmd: serde_json::Value, logged: Option<&AuditEntry>) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    App::lock(&app.waiting).insert(command_id.to_string(), tx);
    if let Err(err) = app.mqtt.publish(topic::COMMANDS_TOPIC, QoS::AtLeastOnce, false, cmd.to_string()).await {
        App::lock(&app.waiting).remove(command_id);
        finish_audit(app, logged, "not sent: MQTT unavailable");
        return error(StatusCode::SERVICE_UNAVAILABLE, "mqtt", format!("could not send the command: {err}"));
    }
    let answer = tokio::time::timeout(ANSWER_WITHIN, rx).await;
    App::lock(&app.waiting).remove(command_id);
    match answer {
        Ok(Ok(Outcome::Applied(ev))) => {
            finish_audit(app, logged, "ok");
            Json(json!({"ok": true, "event": ev})).into_response()
        }
        Ok(Ok(Outcome::Refused(code, msg))) => {
            finish_audit(app, logged, &format!("refused: {code}: {msg}"));
            error(StatusCode::CONFLICT, &code, msg)
        }
        _ => {
            finish_audit(app, logged, "no answer from the pipeline");
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "no_answer",
                "the pipeline did not answer within 10 s; the command may still be applied",
            )
        }
    }
}

fn finish_audit(app: &App, logged: Option<&AuditEntry>, outcome: &str) {
    let Some(e) = logged else { return };
    count_action(app, &e.action, outcome);
    if let Err(err) = App::lock(&app.store).audit_outcome(e.id, outcome) {
        tracing::error!(error = %err, "cannot update the audit log");
    }
    let mut done = e.clone();
    done.outcome = outcome.to_string();
    app.push_live("audit", &json!(done));
}

async fn history(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<HistoryQuery>) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let result = App::lock(&app.store).history(&q);
    match result {
        Ok(events) => Json(json!({"events": events})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_query", format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn audit_log(State(app): State<AppState>, headers: HeaderMap, Query(l): Query<Limit>) -> Response {
    if let Err(r) = require(&app, &headers, Role::Officer) {
        return r;
    }
    let result = App::lock(&app.store).audit_log(l.limit.unwrap_or(200));
    match result {
        Ok(v) => Json(json!({"entries": v})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

async fn stream(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let rx = app.live.subscribe();
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        let msg = match rx.recv().await {
            Ok(msg) => msg,
            // A slow browser missed some: tell it to reload the board.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => json!({"type": "resync"}).to_string(),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(SseEvent::default().data(msg)), rx))
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
