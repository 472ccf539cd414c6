//! Outbound notifications: alert events to HTTP webhooks — generic JSON, the DingTalk, WeCom and
//! Feishu chat robots, and CAP 1.2 XML for warning-publication platforms.
//!
//! Each channel has its own routing (levels, sites, kinds, categories, changes, drills), its own
//! queue and worker, so a slow or failing receiver never delays another. Delivery is retried
//! with jittered exponential backoff ([`crate::retry`]) on network errors, HTTP 5xx / 429 and
//! robots' rate-limit answers, waiting at least as long as a 429's or 503's `Retry-After` asks;
//! after the retry budget (or at once, for a permanent refusal such as HTTP 400 or a bad robot
//! key) the notification goes to the dead-letter file with the reason — never silently dropped.
//! A per-channel rate limit (chat robots allow about 20 messages a minute) turns an alert storm
//! into digests: events that arrive while the channel is out of tokens are gathered and sent as
//! one summary message when the next token comes.
//!
//! Configuration (TOML) and payloads are documented in `docs/notifications.md`.

use crate::cap::{self, CapContext};
use crate::retry;
use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Call, Level, Registry, Timestamp};
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The notifications file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// JSON-lines file undeliverable notifications are appended to.
    #[serde(default = "default_dead_letter")]
    pub dead_letter: PathBuf,
    /// CAP `sender` for `format = "cap"` channels.
    #[serde(default)]
    pub cap_sender: String,
    /// CAP `senderName`.
    #[serde(default)]
    pub cap_sender_name: String,
    /// The channels.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
}

fn default_dead_letter() -> PathBuf {
    PathBuf::from("notify-dead-letter.jsonl")
}

/// Payload format of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"type":"alert","event":{...}}` / `{"type":"digest",...}`.
    Json,
    /// DingTalk custom robot (markdown; optional signing secret).
    Dingtalk,
    /// WeCom (企业微信) group robot (markdown).
    Wecom,
    /// Feishu / Lark custom bot (text; optional signing secret).
    Feishu,
    /// CAP 1.2 XML, one message per event (never digested).
    Cap,
}

/// One destination.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Name used in logs and dead letters.
    pub id: String,
    /// Where to POST. `${NAME}` is replaced by the environment variable `NAME` (robot keys are
    /// secrets; keep them out of the file).
    pub url: String,
    /// Payload format.
    pub format: Format,
    /// Signing secret (DingTalk "加签", Feishu "签名校验"): `env:NAME` or `file:/path`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Levels sent (default: all). An event is matched on the higher of its level and its
    /// previous level, so a channel for red hears when a red alert steps down or clears.
    #[serde(default)]
    pub levels: Vec<Level>,
    /// Sites sent (default: all).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Sensor kinds sent (default: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Alert categories sent (default: hazard and composite).
    #[serde(default = "default_categories")]
    pub categories: Vec<AlertCategory>,
    /// Changes sent (default: raised, escalated, de_escalated, cleared, reminder, unshelved).
    /// Whatever this says, the events of a shelved alert are not sent (they carry
    /// `shelved_until`), except its `shelved` event itself when listed here.
    #[serde(default = "default_changes")]
    pub changes: Vec<AlertChange>,
    /// Whether drill (exercise) alerts are sent — marked as such (default true).
    #[serde(default = "yes")]
    pub exercise: bool,
    /// Messages per minute before events are gathered into digests (0 = no limit; default 20,
    /// the chat robots' own limit; `cap` channels default to 0).
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// Messages that may go out back to back before the per-minute rate applies (default:
    /// `max_per_minute`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Attempts after the first before giving up (default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay, ms; doubles per attempt up to 60 s, with jitter (each delay random
    /// between the doubled delay and twice it, within [backoff_ms, 60 s]; default 1000).
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Per-request timeout, ms (default 10 000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Levels for which chat robots mention everyone (@all; default: red).
    #[serde(default = "default_mention")]
    pub mention_all: Vec<Level>,
}

fn default_categories() -> Vec<AlertCategory> {
    vec![AlertCategory::Hazard, AlertCategory::Composite]
}
fn default_changes() -> Vec<AlertChange> {
    use AlertChange::*;
    vec![Raised, Escalated, DeEscalated, Cleared, Reminder, Unshelved]
}
fn yes() -> bool {
    true
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    10_000
}
fn default_mention() -> Vec<Level> {
    vec![Level::Red]
}

/// A notifications file that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotifyConfigError(pub String);

impl NotifyConfig {
    /// Parses and checks a notifications file.
    pub fn from_toml(text: &str) -> Result<Self, NotifyConfigError> {
        let cfg: NotifyConfig = toml::from_str(text).map_err(|e| NotifyConfigError(e.to_string()))?;
        let mut seen = HashSet::new();
        for (i, c) in cfg.channels.iter().enumerate() {
            let at = format!("channel[{i}] ({})", c.id);
            if c.id.is_empty() {
                return Err(NotifyConfigError(format!("channel[{i}].id: must not be empty")));
            }
            if !seen.insert(c.id.clone()) {
                return Err(NotifyConfigError(format!("{at}.id: duplicate channel id")));
            }
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(NotifyConfigError(format!("{at}.url: must start with http:// or https://")));
            }
            if let Some(s) = &c.secret {
                if !riskwatch_core::secret::is_reference(s) {
                    return Err(NotifyConfigError(format!(
                        "{at}.secret: give it as env:NAME or file:/path, not the secret itself"
                    )));
                }
            }
            if c.backoff_ms == 0 {
                return Err(NotifyConfigError(format!("{at}.backoff_ms: must be at least 1")));
            }
        }
        Ok(cfg)
    }

    /// Reads and checks a notifications file.
    pub fn load(path: &Path) -> Result<Self, NotifyConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NotifyConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| NotifyConfigError(format!("{}: {}", path.display(), e.0)))
    }
}

impl ChannelConfig {
    /// Whether this channel wants `e`. A call of a call-response chain (`called`) that names
    /// channels goes to exactly those (drills only where `exercise` allows), whatever their
    /// other filters say: the chain chose who hears it. One naming none is routed like any
    /// other event (a channel then needs `called` in `changes`).
    pub fn routes(&self, e: &AlertEvent) -> bool {
        if let Some(call) = call_of(e) {
            if !call.notify.is_empty() {
                return call.notify.contains(&self.id) && (self.exercise || !e.exercise);
            }
        }
        let level = e.previous_level.map_or(e.level, |p| p.max(e.level));
        (self.levels.is_empty() || self.levels.contains(&level))
            && (self.sites.is_empty() || self.sites.iter().any(|s| s == e.site.as_str()))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == e.kind.as_str()))
            && self.categories.contains(&e.category)
            && self.changes.contains(&e.change)
            && (self.exercise || !e.exercise)
            && (e.shelved_until.is_none() || e.change == AlertChange::Shelved)
            && e.grouped_under.is_none()
    }

    fn per_minute(&self) -> u32 {
        self.max_per_minute.unwrap_or(if self.format == Format::Cap { 0 } else { 20 })
    }
}

/// The call a `called` event carries.
fn call_of(e: &AlertEvent) -> Option<Call> {
    (e.change == AlertChange::Called).then(|| Call::of(e)).flatten()
}

/// Expands `${NAME}` in a URL from the environment.
fn expand_env(url: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unclosed ${ in url")?;
        let name = &after[..end];
        out.push_str(&std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a notifier has done, per channel.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Messages delivered (a digest counts once).
    pub delivered: AtomicU64,
    /// Events delivered (inside single messages or digests).
    pub events_delivered: AtomicU64,
    /// Digests sent.
    pub digests: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Events written to the dead-letter file.
    pub dead_lettered: AtomicU64,
}

/// A running notifier.
pub struct Notifier {
    channels: Vec<(ChannelConfig, mpsc::Sender<AlertEvent>, Arc<ChannelStats>)>,
    workers: Vec<JoinHandle<()>>,
    dead: Arc<DeadLetters>,
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
}

/// Channel queue length; beyond it events are dead-lettered ("queue full") rather than held
/// without bound.
const QUEUE: usize = 10_000;
/// Event ids remembered to drop redelivered duplicates (MQTT QoS 1 is at-least-once).
const REMEMBER: usize = 20_000;

impl Notifier {
    /// Starts one worker per channel. Fails if a channel's secret or URL variables are missing.
    pub fn start(cfg: NotifyConfig, registry: Option<Arc<Registry>>) -> Result<Notifier, NotifyConfigError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("riskwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyConfigError(format!("HTTP client: {e}")))?;
        let dead = Arc::new(DeadLetters { path: cfg.dead_letter.clone(), lock: std::sync::Mutex::new(()) });
        let mut channels = Vec::new();
        let mut workers = Vec::new();
        for c in cfg.channels {
            let url = expand_env(&c.url).map_err(|e| NotifyConfigError(format!("channel {}.url: {e}", c.id)))?;
            let secret = match &c.secret {
                Some(s) => Some(
                    riskwatch_core::secret::resolve(s)
                        .map_err(|e| NotifyConfigError(format!("channel {}.secret: {e}", c.id)))?,
                ),
                None => None,
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let stats = Arc::new(ChannelStats::default());
            let worker = Worker {
                cfg: c.clone(),
                url,
                secret,
                http: http.clone(),
                stats: Arc::clone(&stats),
                dead: Arc::clone(&dead),
                registry: registry.clone(),
                cap_sender: cfg.cap_sender.clone(),
                cap_sender_name: cfg.cap_sender_name.clone(),
            };
            workers.push(tokio::spawn(worker.run(rx)));
            channels.push((c, tx, stats));
        }
        info!(channels = channels.len(), "notifier started");
        Ok(Notifier { channels, workers, dead, recent: VecDeque::new(), recent_set: HashSet::new() })
    }

    /// Routes one event to every channel that wants it. A redelivered event (same `event_id`)
    /// is sent only once.
    pub fn notify(&mut self, e: &AlertEvent) {
        if !self.recent_set.insert(e.event_id.clone()) {
            return;
        }
        self.recent.push_back(e.event_id.clone());
        if self.recent.len() > REMEMBER {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        // A call naming a channel this file does not have would reach nobody: say so.
        for missing in
            call_of(e).into_iter().flat_map(|c| c.notify).filter(|n| !self.channels.iter().any(|(c, ..)| c.id == *n))
        {
            self.dead.write(
                &missing,
                std::slice::from_ref(e),
                "the call names a channel the notifications file does not have",
                0,
                "",
            );
        }
        for (c, tx, stats) in &self.channels {
            if !c.routes(e) {
                continue;
            }
            if let Err(err) = tx.try_send(e.clone()) {
                let reason = match err {
                    mpsc::error::TrySendError::Full(_) => "channel queue full",
                    mpsc::error::TrySendError::Closed(_) => "channel stopped",
                };
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.dead.write(&c.id, std::slice::from_ref(e), reason, 0, "");
            }
        }
    }

    /// Per-channel counters, by channel id.
    pub fn stats(&self) -> Vec<(String, Arc<ChannelStats>)> {
        self.channels.iter().map(|(c, _, s)| (c.id.clone(), Arc::clone(s))).collect()
    }

    /// Stops taking events and waits (up to `deadline`) for queued ones to be delivered or
    /// dead-lettered.
    pub async fn close(self, deadline: Duration) {
        drop(self.channels);
        let all = futures_util::future::join_all(self.workers);
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!("notifier: some notifications still being retried at shutdown");
        }
    }
}

/// The dead-letter file.
struct DeadLetters {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl DeadLetters {
    fn write(&self, channel: &str, events: &[AlertEvent], reason: &str, attempts: u32, payload: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let line = serde_json::json!({
            "at": Timestamp::now().to_rfc3339(),
            "channel": channel,
            "reason": reason,
            "attempts": attempts,
            "event_ids": events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
            "events": events,
            "payload": payload,
        });
        warn!(channel, reason, events = events.len(), "notification dead-lettered");
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = result {
            // Last resort: the log carries the whole notification.
            warn!(path = %self.path.display(), error = %e, notification = %line, "cannot write dead-letter file");
        }
    }
}

/// Token bucket: up to `burst` tokens, refilled at `per_minute`.
struct Bucket {
    per_minute: u32,
    burst: u32,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let now = Instant::now();
        let rate = f64::from(self.per_minute) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(f64::from(self.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_token_in(&self) -> Duration {
        let rate = f64::from(self.per_minute.max(1)) / 60.0;
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / rate).max(0.01))
    }
}

struct Worker {
    cfg: ChannelConfig,
    url: String,
    secret: Option<String>,
    http: reqwest::Client,
    stats: Arc<ChannelStats>,
    dead: Arc<DeadLetters>,
    registry: Option<Arc<Registry>>,
    cap_sender: String,
    cap_sender_name: String,
}

/// The longest wait between delivery attempts (unless the receiver's `Retry-After` asks more).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a delivery attempt failed.
enum Failure {
    /// Worth another try (network, 5xx, 429, robot rate limit), with the wait the receiver
    /// asked for (`Retry-After` on a 429 or 503).
    Transient(String, Option<Duration>),
    /// Will never work as sent (4xx, bad key, malformed payload).
    Permanent(String),
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<AlertEvent>) {
        let per_minute = self.cfg.per_minute();
        let burst = self.cfg.burst.unwrap_or(per_minute).max(1);
        let mut bucket = Bucket { per_minute, burst, tokens: f64::from(burst), at: Instant::now() };
        let mut held: Vec<AlertEvent> = Vec::new();
        loop {
            let event = if held.is_empty() {
                rx.recv().await
            } else {
                tokio::select! {
                    e = rx.recv() => e,
                    _ = tokio::time::sleep(bucket.next_token_in()) => {
                        if bucket.take() {
                            let batch = std::mem::take(&mut held);
                            self.deliver(&batch).await;
                        }
                        continue;
                    }
                }
            };
            let Some(e) = event else { break };
            if held.is_empty() && bucket.take() {
                self.deliver(std::slice::from_ref(&e)).await;
            } else {
                held.push(e);
            }
        }
        // Shutting down: whatever is held goes out now as one digest.
        if !held.is_empty() {
            self.deliver(&held).await;
        }
    }

    /// Sends one event, or a digest of several, with retries; dead-letters on failure.
    async fn deliver(&self, events: &[AlertEvent]) {
        if self.cfg.format == Format::Cap {
            // Publication platforms need every message as itself.
            for e in events {
                self.deliver_one(std::slice::from_ref(e)).await;
            }
        } else {
            self.deliver_one(events).await;
        }
    }

    async fn deliver_one(&self, events: &[AlertEvent]) {
        let (body, content_type) = self.payload(events);
        let mut delays = retry::delays(Duration::from_millis(self.cfg.backoff_ms), MAX_BACKOFF);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.post(&body, content_type).await {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.stats.events_delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
                    if events.len() > 1 {
                        self.stats.digests.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(f) => f,
            };
            let (reason, permanent, asked) = match failure {
                Failure::Transient(r, asked) => (r, false, asked),
                Failure::Permanent(r) => (r, true, None),
            };
            if permanent || attempt > self.cfg.retries {
                let why = if permanent {
                    format!("refused: {reason}")
                } else {
                    format!("gave up after {attempt} attempts: {reason}")
                };
                self.stats.dead_lettered.fetch_add(events.len() as u64, Ordering::Relaxed);
                self.dead.write(&self.cfg.id, events, &why, attempt, &String::from_utf8_lossy(&body));
                return;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let delay = retry::next_wait(delays.next().unwrap_or(MAX_BACKOFF), asked);
            warn!(channel = %self.cfg.id, attempt, reason = %reason, retry_in_ms = delay.as_millis() as u64, "notification failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn post(&self, body: &[u8], content_type: &str) -> Result<(), Failure> {
        let mut url = self.url.clone();
        let mut body = body.to_vec();
        if let Some(secret) = &self.secret {
            match self.cfg.format {
                Format::Dingtalk => {
                    let ts = Timestamp::now().millis();
                    let sign = hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
                    let sep = if url.contains('?') { '&' } else { '?' };
                    let _ = write!(url, "{sep}timestamp={ts}&sign={}", url_encode(&sign));
                }
                Format::Feishu => {
                    let ts = Timestamp::now().millis() / 1000;
                    let sign = hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"");
                    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(&body) {
                        m.insert("timestamp".into(), ts.to_string().into());
                        m.insert("sign".into(), sign.into());
                        body = serde_json::Value::Object(m).to_string().into_bytes();
                    }
                }
                _ => {}
            }
        }
        let response = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .timeout(Duration::from_millis(self.cfg.timeout_ms))
            .body(body)
            .send()
            .await
            // Without the URL: a robot's URL carries its access token, and this text is logged.
            .map_err(|e| Failure::Transient(format!("request failed: {}", error_chain(&e.without_url())), None))?;
        let status = response.status();
        let asked = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::retry_after(v, std::time::SystemTime::now())),
            _ => None,
        };
        let text = response.text().await.unwrap_or_default();
        let short: String = text.chars().take(300).collect();
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(Failure::Transient(format!("HTTP {status}: {short}"), asked));
        }
        if !status.is_success() {
            return Err(Failure::Permanent(format!("HTTP {status}: {short}")));
        }
        robot_answer(self.cfg.format, &text)
    }

    fn payload(&self, events: &[AlertEvent]) -> (Vec<u8>, &'static str) {
        let json = |v: serde_json::Value| (v.to_string().into_bytes(), "application/json");
        let mention = events.iter().any(|e| self.cfg.mention_all.contains(&e.level));
        match self.cfg.format {
            Format::Json if events.len() == 1 => json(serde_json::json!({"type": "alert", "event": &events[0]})),
            Format::Json => json(serde_json::json!({
                "type": "digest", "count": events.len(), "by_level": by_level(events), "events": events,
            })),
            Format::Dingtalk => {
                let (title, mut text) = markdown(events, false);
                // A call's contacts (mobile numbers) are mentioned by name: the robot rings them.
                let mobiles: Vec<String> = events.iter().filter_map(call_of).flat_map(|c| c.contacts).collect();
                for m in &mobiles {
                    let _ = write!(text, " @{m}");
                }
                json(serde_json::json!({
                    "msgtype": "markdown", "markdown": {"title": title, "text": text},
                    "at": {"isAtAll": mention, "atMobiles": mobiles},
                }))
            }
            Format::Wecom => {
                let (_, mut text) = markdown(events, true);
                if mention {
                    text.push_str("\n<@all>");
                }
                json(serde_json::json!({"msgtype": "markdown", "markdown": {"content": text}}))
            }
            Format::Feishu => {
                let (_, mut text) = plain(events);
                if mention {
                    text.push_str("\n<at user_id=\"all\">所有人</at>");
                }
                json(serde_json::json!({"msg_type": "text", "content": {"text": text}}))
            }
            Format::Cap => {
                let e = &events[0];
                let reg = self.registry.as_deref();
                let ctx = CapContext {
                    sender: &self.cap_sender,
                    sender_name: &self.cap_sender_name,
                    site: reg.and_then(|r| r.site(e.site.as_str())),
                    location: reg.and_then(|r| r.sensor(e.subject.as_str())).and_then(|s| s.location),
                };
                (cap::alert_xml(e, &ctx).into_bytes(), "application/cap+xml; charset=utf-8")
            }
        }
    }
}

/// Robots answer HTTP 200 with an error code in the body.
fn robot_answer(format: Format, text: &str) -> Result<(), Failure> {
    let code_field = match format {
        Format::Dingtalk | Format::Wecom => "errcode",
        Format::Feishu => "code",
        _ => return Ok(()),
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Err(Failure::Transient(
            format!("robot answer is not JSON: {}", text.chars().take(200).collect::<String>()),
            None,
        ));
    };
    // Feishu's older answers use StatusCode.
    let code = v.get(code_field).or_else(|| v.get("StatusCode")).and_then(|c| c.as_i64()).unwrap_or(0);
    if code == 0 {
        return Ok(());
    }
    let msg = v.get("errmsg").or_else(|| v.get("msg")).and_then(|m| m.as_str()).unwrap_or("");
    // Rate limits: DingTalk 130101 (send too fast), WeCom 45009, Feishu 9499 / 11232.
    if matches!(code, 130101 | 45009 | 9499 | 11232 | -1) {
        Err(Failure::Transient(format!("robot rate limit {code}: {msg}"), None))
    } else {
        Err(Failure::Permanent(format!("robot error {code}: {msg}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let _ = write!(s, ": {c}");
        src = c.source();
    }
    s
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn by_level(events: &[AlertEvent]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for l in Level::ALL.iter().rev() {
        let n = events.iter().filter(|e| e.level == *l).count();
        if n > 0 {
            m.insert(l.as_str().into(), n.into());
        }
    }
    serde_json::Value::Object(m)
}

/// How many event lines a digest lists before "… and N more".
const DIGEST_LINES: usize = 15;

fn level_tag(l: Level) -> String {
    format!("【{}预警 {}】", l.zh(), l.as_str().to_uppercase())
}

/// Title and markdown text (`wecom` colours the level with its `<font>` extension).
fn markdown(events: &[AlertEvent], wecom: bool) -> (String, String) {
    let font = |l: Level, s: &str| {
        if wecom {
            let c = if l >= Level::Orange { "warning" } else { "comment" };
            format!("<font color=\"{c}\">{s}</font>")
        } else {
            s.to_string()
        }
    };
    if let [e] = events {
        // The notification's title: level, change and where — names, not ids.
        let title = format!("{}{} {} {}", level_tag(e.level), e.change.zh(), e.site_label(), e.subject_label());
        let mut t = format!("### {}\n", font(e.level, &format!("{}{}", level_tag(e.level), e.change.zh())));
        let _ = writeln!(t, "**{}**\n", e.message_zh);
        let _ = writeln!(t, "{}\n", e.message_en);
        let _ = writeln!(t, "- 站点 Site: {} · {}", e.site_label(), e.subject_label());
        let _ = writeln!(t, "- 数值 Value: {} (阈值 threshold {})", e.value_text(), e.threshold_text());
        let _ = writeln!(t, "- 时间 Time: {}（北京时间）", e.ts.to_cst_minute());
        let _ = writeln!(t, "- 状态 Change: {} {}", e.change.zh(), e.change.as_str());
        if let Some(members) = incident_members(e) {
            let _ = writeln!(t, "- 成员 Members: {members}");
        }
        if let Some(by) = &e.by {
            let _ = writeln!(t, "- 操作人 By: {by} {}", e.note.as_deref().unwrap_or(""));
        }
        let _ = writeln!(t, "- 告警编号 Alert: {}", e.alert_id);
        return (title, t);
    }
    let drill = if events.iter().all(|e| e.exercise) { "【演习】" } else { "" };
    let title = format!("{drill}预警汇总 {} 条 / digest of {} alert events", events.len(), events.len());
    let mut t = format!("### {title}\n");
    let counts: Vec<String> = Level::ALL
        .iter()
        .rev()
        .filter_map(|l| {
            let n = events.iter().filter(|e| e.level == *l).count();
            (n > 0).then(|| font(*l, &format!("{} {n}", l.zh())))
        })
        .collect();
    let _ = writeln!(t, "{}\n", counts.join(" · "));
    for e in events.iter().take(DIGEST_LINES) {
        let _ = writeln!(t, "- {}{} {}", level_tag(e.level), e.change.zh(), e.message_zh);
    }
    if events.len() > DIGEST_LINES {
        let _ = writeln!(t, "- …… 另有 {} 条 / and {} more", events.len() - DIGEST_LINES, events.len() - DIGEST_LINES);
    }
    (title, t)
}

/// A site alert's members at a level, `sensor (level), …`: the one notification of an incident
/// whose members' own alerts are grouped under it (their events are not sent).
fn incident_members(e: &AlertEvent) -> Option<String> {
    let members = e.details.as_ref()?.get("members")?.as_array()?;
    let listed: Vec<String> = members
        .iter()
        .filter_map(|m| {
            let level = m.get("level")?.as_str()?;
            Some(format!("{} ({level})", m.get("sensor")?.as_str()?))
        })
        .collect();
    (!listed.is_empty()).then(|| listed.join(", "))
}

fn plain(events: &[AlertEvent]) -> (String, String) {
    let (title, md) = markdown(events, false);
    (title, md.replace("### ", "").replace("**", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shelved_alerts_events_are_held_back_but_its_return_is_sent() {
        let cfg = NotifyConfig::from_toml(
            "[[channel]]\nid = \"duty\"\nurl = \"http://127.0.0.1:1/x\"\nformat = \"json\"\nchanges = [\"raised\", \"de_escalated\", \"shelved\", \"unshelved\", \"reminder\"]\n",
        )
        .unwrap();
        let c = &cfg.channels[0];
        let mut e: AlertEvent = serde_json::from_value(serde_json::json!({
            "event_id": "a-1", "alert_id": "a", "seq": 1, "rule_id": "lel", "subject": "g1", "site": "plant",
            "kind": "gas_combustible", "change": "de_escalated", "level": "orange", "previous_level": "red",
            "highest_level": "red", "first_ts": 0, "ts": 0, "value": 1.0, "threshold": 1.0, "unit": "%LEL",
            "message_zh": "", "message_en": "",
        }))
        .unwrap();
        assert!(c.routes(&e), "not shelved: sent");
        e.shelved_until = Some(riskwatch_core::Timestamp(60_000));
        assert!(!c.routes(&e), "of a shelved alert: held back");
        e.change = AlertChange::Shelved;
        assert!(c.routes(&e), "the shelving itself, when the channel asks for it");
        e.change = AlertChange::Unshelved;
        e.shelved_until = None;
        assert!(c.routes(&e), "its return");
        let default =
            NotifyConfig::from_toml("[[channel]]\nid = \"d\"\nurl = \"http://127.0.0.1:1/x\"\nformat = \"json\"\n")
                .unwrap();
        assert!(default.channels[0].routes(&e), "returns are sent by default");
        e.grouped_under = Some("site-alert".into());
        assert!(!default.channels[0].routes(&e), "grouped under an incident: left to the site alert's notification");
    }

    #[test]
    fn an_incidents_notification_lists_its_members() {
        let e: AlertEvent = serde_json::from_value(serde_json::json!({
            "event_id": "s-0", "alert_id": "s", "seq": 0, "rule_id": "dam-incident", "subject": "dam", "site": "dam",
            "kind": "site", "change": "raised", "level": "orange", "previous_level": null, "category": "composite",
            "highest_level": "orange", "first_ts": 0, "ts": 0, "value": 2.0, "threshold": 0.0, "unit": "",
            "message_zh": "", "message_en": "",
            "details": {"members": [{"sensor": "d1", "level": "yellow"}, {"sensor": "d2", "level": "orange"}, {"sensor": "d3", "level": null}]},
        }))
        .unwrap();
        let (_, text) = markdown(&[e], false);
        assert!(text.contains("成员 Members: d1 (yellow), d2 (orange)\n"), "{text}");
    }
}
