//! `riskwatch rules`: a Kafka consumer-group member hosting the rules for the readings
//! partitions it owns — an I/O loop around one [`RulesHost`] per partition.
//!
//! Each owned partition's host serves the sites of that partition (sites map to partitions by
//! [`site_partition`]). Everything that changes a host's state is a record of the partition:
//! readings and officers' commands (written by ingest, processed at their arrival time), and the
//! worker's own **inputs** — a clock tick every second, and a reload when the rules or registry
//! file changes — which the worker writes into the partition and applies only when it consumes
//! them back. So reminders, stale sensors and time-based delays sit in the log at a fixed place:
//! whoever replays the partition from a saved state produces the same events with the same ids.
//! Alert events go to the alerts topic (keyed by alert id) and to the MQTT alert topics.
//!
//! Commit points, every `rules_worker.commit_interval`: (1) wait until Kafka confirmed every
//! alert record and the MQTT broker acknowledged every alert message; (2) write each changed
//! partition's host snapshot with the offset it covers to the compacted state topic; (3)
//! commit those offsets. A worker that gains a partition (start, restart or rebalance)
//! restores the partition's last state record and resumes from its offset, so no record is
//! applied twice and none is skipped. Work done after the last commit point is redone by the
//! next owner, which re-emits the same events with the same `event_id`s (at-least-once;
//! consumers deduplicate by `event_id`).

use crate::topology::Topology;
use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use riskwatch_bus::partition::site_partition;
use riskwatch_bus::records::{
    alert_record, dead_letter_record, decode_forecast_record, decode_reading_record, input_headers, is_command,
    is_forecast, is_input, received_at, state_key, StateRecord,
};
use riskwatch_bus::{admin, KafkaConfig};
use riskwatch_core::wire::{topic, Limits};
use riskwatch_core::{AlertEvent, DeadLetter, Registry, Timestamp};
use riskwatch_rules::host::{text_digest, SiteScope};
use riskwatch_rules::{CompositeRole, Engine, HostSnapshot, Input, MemberLevel, Outcome, RuleSet, RulesHost, Snapshot};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// One owned readings partition.
struct Part {
    host: RulesHost,
    /// First offset not yet applied to `host`.
    next_offset: i64,
    /// Offset `next_offset` had at the last completed commit point.
    committed: i64,
    /// The first record after a take-over has not been seen yet: if the group's committed
    /// offset is ahead of the saved state (a crash between the two writes), seek back.
    check_gap: bool,
    /// Records other than the worker's own clock ticks applied since the last saved state.
    busy: bool,
    /// When the state was last saved (or the partition taken over).
    saved_at: Instant,
}

/// A partition that saw nothing but clock ticks is saved this often at most: replaying a few
/// seconds of ticks is cheap, copying an idle partition's whole state every second is not.
const IDLE_SAVE_EVERY: Duration = Duration::from_secs(10);

/// A commit point taken but not finished: the state and offsets as they were when it was
/// taken, finished once every output emitted up to then is confirmed.
struct PendingCommit {
    /// MQTT messages queued up to then; done when the broker acknowledged that many.
    mqtt_target: u64,
    /// Kafka deliveries of outputs up to then.
    waits: Vec<DeliveryFuture>,
    /// (partition, next offset, state record) of the partitions that changed.
    states: Vec<(i32, i64, Vec<u8>)>,
    since: Instant,
    warned: bool,
}

/// A change of this worker's partitions, noted by the consumer's rebalance callbacks (which
/// run inside `recv`, before any record of the new assignment is returned).
enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

struct RebalanceNotes {
    topic: String,
    notes: std::sync::Mutex<Vec<Change>>,
    /// Consumer lag goes here (librdkafka statistics).
    lag: crate::metrics::LagContext,
}

impl RebalanceNotes {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }
}

impl ClientContext for RebalanceNotes {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.stats(statistics);
    }
}

impl ConsumerContext for RebalanceNotes {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = self.partitions(tpl);
            self.notes.lock().unwrap_or_else(|e| e.into_inner()).push(Change::Revoked(parts));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = self.partitions(tpl);
            self.notes.lock().unwrap_or_else(|e| e.into_inner()).push(Change::Assigned(parts));
        }
    }
}

type WorkerConsumer = StreamConsumer<RebalanceNotes>;

/// How long a stopping worker waits for Kafka to confirm its last events and state.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Counters, printed when the worker stops.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    /// Readings applied to engines.
    pub readings: u64,
    /// Records skipped because restored state already covered them.
    pub skipped: u64,
    /// Alert events emitted.
    pub events: u64,
    /// Commit points completed.
    pub commits: u64,
}

/// The configuration files in effect and where they come from.
#[derive(Clone)]
pub struct WorkerFiles {
    /// The whole registry (each partition's host keeps its own sites).
    pub registry: Arc<Registry>,
    /// Its text's digest.
    pub registry_digest: String,
    /// The registry file, watched for edits.
    pub registry_path: PathBuf,
    /// The rules file's text.
    pub rules_text: String,
    /// The rules file, watched for edits.
    pub rules_path: PathBuf,
}

/// What a worker hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Rules hosts for readings partitions (the sites of each; site composites).
    Readings,
    /// The network host: network composites over the member levels every readings host
    /// reports (see `riskwatch_rules::network`).
    Network,
}

struct Worker {
    k: KafkaConfig,
    role: Role,
    /// The topic whose partitions this worker hosts.
    topic: String,
    /// Whether readings hosts report member levels (the rules have network composites).
    reports_members: bool,
    instance: String,
    files: WorkerFiles,
    rules_loaded: Option<SystemTime>,
    registry_loaded: Option<SystemTime>,
    partitions: i32,
    parts: BTreeMap<i32, Part>,
    producer: FutureProducer,
    publisher: Option<MqttAlertPublisher>,
    waits: Vec<DeliveryFuture>,
    pending: Option<PendingCommit>,
    events: Vec<AlertEvent>,
    /// Error reports of refused commands, to publish.
    refused: Vec<Vec<u8>>,
    limits: Limits,
    stats: WorkerStats,
    metrics: crate::metrics::RuleMetrics,
    /// Readings taken from Kafka, read at each scrape as `riskwatch_readings_in_total{source="kafka"}`
    /// (a read series like ingest's `source="mqtt"`, so one process can run both: a family has
    /// one kind).
    readings_in: Arc<std::sync::atomic::AtomicU64>,
}

/// Runs a rules worker until `shutdown` turns true: hosts for the readings partitions this
/// process is assigned, and — when the group gives it the network topic — the network host.
pub async fn run(
    t: &Topology,
    files: WorkerFiles,
    shutdown: watch::Receiver<bool>,
    obs: &crate::metrics::Observability,
) -> Result<WorkerStats> {
    let k = t.kafka.clone().context("the rules worker needs a [kafka] section")?;
    admin::ensure_topics(&k, Duration::from_secs(60)).await?;
    // Rules must fit every partition's part of the registry; check once against the whole.
    Engine::new(&RuleSet::from_toml(&files.rules_text)?, &files.registry).context("rules do not fit the registry")?;
    let (readings, network) = tokio::join!(
        run_role(t, Role::Readings, files.clone(), shutdown.clone(), obs),
        run_role(t, Role::Network, files, shutdown, obs),
    );
    let (mut stats, network) = (readings?, network?);
    stats.readings += network.readings;
    stats.skipped += network.skipped;
    stats.events += network.events;
    stats.commits += network.commits;
    Ok(stats)
}

async fn run_role(
    t: &Topology,
    role: Role,
    files: WorkerFiles,
    mut shutdown: watch::Receiver<bool>,
    obs: &crate::metrics::Observability,
) -> Result<WorkerStats> {
    let k = t.kafka.clone().context("the rules worker needs a [kafka] section")?;
    let (topic, group, client) = match role {
        Role::Readings => (k.readings_topic.clone(), k.rules_group.clone(), "rules"),
        Role::Network => (k.network_topic.clone(), k.network_group.clone(), "network"),
    };
    let partitions = admin::partition_count(&k, &topic, Duration::from_secs(30))?;
    let lag = crate::metrics::LagContext { metrics: obs.metrics.clone(), group: group.clone() };
    let notes = RebalanceNotes { topic: topic.clone(), notes: Default::default(), lag };
    // A worker that stops polling for 30 s (a stalled Kafka) leaves the group, and a rebalance
    // waits no longer than that for a member that is gone (librdkafka's default: 5 minutes).
    let mut config = k.consumer(&group, &format!("{}-{client}", t.instance));
    config.set("max.poll.interval.ms", "30000");
    let consumer: WorkerConsumer = config.create_with_context(notes)?;
    consumer.subscribe(&[&topic]).with_context(|| format!("subscribing to {topic}"))?;
    let reports_members = RuleSet::from_toml(&files.rules_text)?
        .composites
        .iter()
        .any(|(c, _)| c.scope == riskwatch_rules::composite::Scope::Network);
    let producer: FutureProducer = k
        .producer()
        .set("client.id", format!("{}-{client}-out", t.instance))
        .set("message.max.bytes", riskwatch_bus::config::MAX_STATE_RECORD_BYTES)
        .create()?;
    let tls = t.mqtt.tls()?;
    let publisher = t.mqtt.publish_alerts.then(|| {
        MqttAlertPublisher::connect_with(
            &t.mqtt.host,
            t.mqtt.port,
            &format!("{}-{client}-alerts", t.instance),
            t.mqtt.credentials(),
            tls,
        )
    });
    let mut w = Worker {
        k,
        role,
        topic,
        reports_members,
        instance: t.instance.clone(),
        rules_loaded: modified(&files.rules_path),
        registry_loaded: modified(&files.registry_path),
        files,
        partitions,
        parts: BTreeMap::new(),
        producer,
        publisher,
        waits: Vec::new(),
        pending: None,
        events: Vec::new(),
        refused: Vec::new(),
        limits: Limits::default(),
        stats: WorkerStats::default(),
        metrics: crate::metrics::RuleMetrics::new(&obs.metrics),
        readings_in: {
            let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let read = Arc::clone(&n);
            // Only the readings role takes readings; registering the network role's (always 0)
            // would replace it, since reading a series again replaces its source.
            if role == Role::Readings {
                obs.metrics.read(
                    "riskwatch_readings_in_total",
                    "Valid readings received, by source.",
                    "counter",
                    &[("source", "kafka")],
                    move || read.load(std::sync::atomic::Ordering::Relaxed) as f64,
                );
            }
            n
        },
    };
    // Ready once the group has given this member its share (possibly none), not before: until
    // then nothing it owns is being evaluated.
    let mut announce = Some(move |w: &Worker| match w.role {
        Role::Readings => {
            println!(
                "riskwatch rules worker {} ready: group {group}, {partitions} partitions, owns {:?}",
                w.instance,
                w.parts.keys().collect::<Vec<_>>()
            );
            obs.readiness.set("rules", true);
        }
        Role::Network => {
            info!(group = %group, owns = ?w.parts.keys().collect::<Vec<_>>(), "network composite host ready")
        }
    });
    if role == Role::Readings {
        obs.readiness.set("rules", false);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_commit = Instant::now();
    let mut last_report = Instant::now();
    let every = t.rules_worker.commit_interval;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => match m {
                Ok(msg) => {
                    if w.sync_assignment(&consumer)? {
                        if let Some(a) = announce.take() {
                            a(&w);
                        }
                    }
                    w.record(&consumer, &msg)?
                }
                Err(e) => warn!(error = %e, "Kafka consumer error"),
            },
            _ = tick.tick() => {
                if w.sync_assignment(&consumer)? {
                    if let Some(a) = announce.take() {
                        a(&w);
                    }
                }
                let now = Timestamp::now();
                w.write_inputs(&Input::Tick { at: now });
                w.check_reload(now)?;
                if role == Role::Readings {
                    w.metrics.active(w.parts.values().flat_map(|p| p.host.engine().active()).map(|(_, _, l)| l));
                }
                if last_report.elapsed() >= Duration::from_secs(10) {
                    last_report = Instant::now();
                    let owned: Vec<(i32, i64)> = w.parts.iter().map(|(p, s)| (*p, s.next_offset)).collect();
                    info!(stats = ?w.stats, ?owned, "rules worker progress");
                }
            }
        }
        // Waiting for Kafka to confirm events and state records takes as long as Kafka is away;
        // a stop request does not wait for it (what is not confirmed is redone by the next
        // owner, with the same event ids).
        let step = async {
            w.emit().await?;
            if last_commit.elapsed() >= every {
                w.commit_point(&consumer).await?;
                last_commit = Instant::now();
            } else if w.pending.is_some() {
                w.finish_commit(&consumer).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            done = step => done?,
            _ = shutdown.changed() => break,
        }
    }
    // Finish what is in hand (the previous commit point, then one for the latest state), as
    // long as Kafka answers within the stop grace period.
    let drain = async {
        w.emit().await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..2 {
            w.commit_point(&consumer).await?;
            while w.pending.is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                w.finish_commit(&consumer).await?;
            }
        }
        anyhow::Ok(())
    };
    if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
        warn!(
            grace_s = STOP_GRACE.as_secs(),
            "Kafka did not confirm the last events and state in time; stopping without them (the next owner redoes that work)"
        );
    }
    if let Some(p) = w.publisher.take() {
        p.close(Duration::from_secs(5)).await;
    }
    info!(stats = ?w.stats, "rules worker stopped");
    Ok(w.stats)
}

impl Worker {
    /// Applies one readings record.
    fn record(&mut self, consumer: &WorkerConsumer, msg: &BorrowedMessage<'_>) -> Result<()> {
        let p = msg.partition();
        if !self.parts.contains_key(&p) {
            self.take_over(&[p])?;
        }
        let part = self.parts.get_mut(&p).expect("partition just taken over");
        if std::mem::take(&mut part.check_gap) && msg.offset() > part.next_offset {
            warn!(
                partition = p,
                from = msg.offset(),
                to = part.next_offset,
                "resuming before the committed offset, where the saved state ends"
            );
            match consumer.seek(&self.topic, p, Offset::Offset(part.next_offset), Duration::from_secs(10)) {
                Ok(()) => return Ok(()),
                Err(e) => warn!(partition = p, error = %e, "seek failed; records in between are not in the rule state"),
            }
        }
        if msg.offset() < part.next_offset {
            self.stats.skipped += 1;
            return Ok(());
        }
        part.next_offset = msg.offset() + 1;
        let site = msg.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("_unknown");
        let payload = msg.payload().unwrap_or_default();
        // Processed at the time the record says it arrived, so a replay of the partition sees
        // the very clock the first run saw.
        let at = received_at(msg.headers())
            .or_else(|| msg.timestamp().to_millis())
            .map(Timestamp)
            .unwrap_or_else(Timestamp::now);
        let before = self.events.len();
        let tick = is_input(msg.headers()) && matches!(Input::from_bytes(payload), Ok(Input::Tick { .. }));
        if !tick {
            part.busy = true;
        }
        let applied = self.apply_record(p, msg, site, payload, at);
        if self.role == Role::Readings && self.reports_members {
            self.report_members(before, at)?;
        }
        applied
    }

    /// Applies one record of partition `p` to its host.
    fn apply_record(
        &mut self,
        p: i32,
        msg: &BorrowedMessage<'_>,
        site: &str,
        payload: &[u8],
        at: Timestamp,
    ) -> Result<()> {
        let part = self.parts.get_mut(&p).expect("partition owned");
        if is_command(msg.headers()) {
            let raw = payload.to_vec();
            if let Outcome::Refused(refused) = part.host.apply(&mut Input::Command { at, raw }, &mut self.events) {
                warn!(code = refused.code, error = %refused.error, "command refused");
                self.refused.push(refused.report(at));
            } else if let Some(ev) = self.events.last() {
                info!(alert = %ev.alert_id, change = %ev.change, by = ?ev.by, "command applied");
            }
            return Ok(());
        }
        if is_forecast(msg.headers()) {
            // Validated by ingest; read back against this worker's registry like a JSON
            // readings record (a sensor removed in between is refused, not guessed at).
            match decode_forecast_record(payload, msg.headers(), part.host.registry()) {
                Ok(f) => {
                    part.host.apply(&mut Input::Forecast { at, forecast: Box::new(f) }, &mut self.events);
                }
                Err(e) => {
                    let mqtt_topic =
                        riskwatch_bus::records::header_str(msg.headers(), riskwatch_bus::records::header::MQTT_TOPIC)
                            .unwrap_or("riskwatch/v1/forecasts");
                    let d = DeadLetter::new(Timestamp::now(), mqtt_topic, &e, None, None, payload.to_vec());
                    self.dead_letter(&d)?;
                }
            }
            return Ok(());
        }
        if is_input(msg.headers()) {
            match Input::from_bytes(payload) {
                Ok(mut input) => match part.host.apply(&mut input, &mut self.events) {
                    Outcome::Reloaded => info!(partition = p, "configuration reloaded"),
                    Outcome::ReloadRefused(e) => {
                        warn!(partition = p, error = %e, "reload refused; keeping the running configuration")
                    }
                    _ => {}
                },
                Err(e) => {
                    warn!(partition = p, offset = msg.offset(), error = %e, "unreadable rules-host input skipped")
                }
            }
            return Ok(());
        }
        if self.role == Role::Network {
            warn!(
                offset = msg.offset(),
                "a record that is neither an input nor a command on the network topic; skipped"
            );
            return Ok(());
        }
        let now = Timestamp::now();
        match decode_reading_record(site, payload, msg.headers(), part.host.registry(), &self.limits) {
            Ok(decoded) => {
                let began = Instant::now();
                let n = decoded.readings.len();
                part.host.apply(&mut Input::Readings { at, readings: decoded.readings }, &mut self.events);
                self.metrics.evaluated(n, began.elapsed());
                self.readings_in.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                self.stats.readings += n as u64;
                for rej in decoded.rejected {
                    let d = DeadLetter::new(
                        now,
                        &topic::batch_topic(site),
                        &rej.error,
                        rej.index,
                        rej.sensor,
                        rej.raw.into_bytes(),
                    );
                    self.dead_letter(&d)?;
                }
            }
            Err(e) => {
                let d = DeadLetter::new(now, &topic::batch_topic(site), &e, None, None, payload.to_vec());
                self.dead_letter(&d)?;
            }
        }
        Ok(())
    }

    /// Sends the level changes of hazard bindings among `self.events[from..]` to the network
    /// host, as one input (its network composites combine members of every partition).
    fn report_members(&mut self, from: usize, at: Timestamp) -> Result<()> {
        let members: Vec<MemberLevel> = self.events[from..].iter().filter_map(MemberLevel::of_event).collect();
        if members.is_empty() {
            return Ok(());
        }
        let value = Input::Members { at, members }.to_bytes();
        let rec = FutureRecord::to(&self.k.network_topic)
            .partition(0)
            .key("_members")
            .payload(&value)
            .headers(input_headers(at.millis()));
        let f = self
            .producer
            .send_result(rec)
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce member levels for the network host: {e}"))?;
        // Confirmed before the commit point that covers the record they came from.
        self.waits.push(f);
        Ok(())
    }

    /// Writes `input` into every owned partition; each host applies it when the worker
    /// consumes it back (its place in the log is what makes a replay exact).
    fn write_inputs(&self, input: &Input) {
        let owned: Vec<i32> = self.parts.keys().copied().collect();
        self.write_input(&owned, input);
    }

    /// Writes `input` into each of `partitions` of this worker's topic.
    fn write_input(&self, partitions: &[i32], input: &Input) {
        let value = input.to_bytes();
        for p in partitions {
            let rec = FutureRecord::to(&self.topic)
                .partition(*p)
                .key("_clock")
                .payload(&value)
                .headers(input_headers(input.at().millis()));
            if let Err((e, _)) = self.producer.send_result(rec) {
                warn!(partition = p, error = %e, "cannot write a rules-host input; the host waits for the next one");
            }
        }
    }

    /// A record this worker's registry refuses (e.g. ingest runs a newer registry).
    fn dead_letter(&mut self, d: &DeadLetter) -> Result<()> {
        warn!(reason = d.reason, error = %d.error, "readings record refused by the rules worker");
        self.metrics.rejection(d.reason);
        let (key, headers) = dead_letter_record(d);
        let rec = FutureRecord::to(&self.k.dead_letter_topic).key(&key).payload(&d.raw).headers(headers);
        let f = self.producer.send_result(rec).map_err(|(e, _)| anyhow::anyhow!("cannot produce dead letter: {e}"))?;
        self.waits.push(f);
        Ok(())
    }

    /// Applies the rebalances noted since the last call: revoked partitions are dropped (their
    /// next owner resumes from the last saved state), assigned ones restored.
    /// Returns whether an assignment (possibly empty) was received.
    fn sync_assignment(&mut self, consumer: &WorkerConsumer) -> Result<bool> {
        let changes = std::mem::take(&mut *consumer.context().notes.lock().unwrap_or_else(|e| e.into_inner()));
        let mut assigned = false;
        for change in changes {
            match change {
                Change::Revoked(parts) => {
                    if let Some(pc) = self.pending.as_mut() {
                        pc.states.retain(|(p, _, _)| !parts.contains(p));
                    }
                    for p in parts {
                        if self.parts.remove(&p).is_some() {
                            info!(partition = p, "partition revoked; its next owner resumes from the last saved state");
                        }
                    }
                }
                Change::Assigned(parts) => {
                    assigned = true;
                    // Always from the saved state: another worker may have moved it on meanwhile.
                    for p in &parts {
                        self.parts.remove(p);
                    }
                    self.take_over(&parts)?;
                }
            }
        }
        Ok(assigned)
    }

    /// Builds the hosts of `parts`, restored from their last state records.
    fn take_over(&mut self, parts: &[i32]) -> Result<()> {
        let mut saved = load_states(&self.k, &self.topic, parts)?;
        let now = Timestamp::now();
        let mut outdated = Vec::new();
        for &p in parts {
            let n = self.partitions;
            let (scope, role): (Option<SiteScope>, CompositeRole) = match self.role {
                Role::Readings => (Some(Arc::new(move |s| site_partition(s.as_str(), n) == p)), CompositeRole::Sites),
                Role::Network => (None, CompositeRole::Network),
            };
            let (registry, digest) = (Arc::clone(&self.files.registry), self.files.registry_digest.as_str());
            let fresh =
                || RulesHost::with_role(&self.files.rules_text, Arc::clone(&registry), digest, scope.clone(), role);
            let mut next_offset = 0;
            let host = match saved.remove(&p) {
                Some(rec) if rec.partitions == n => {
                    next_offset = rec.next_offset;
                    let host = match serde_json::from_value::<HostSnapshot>(rec.engine.clone()) {
                        Ok(snap) => {
                            let r = RulesHost::recover_role(snap, Arc::clone(&registry), digest, scope.clone(), role)
                                .context("restoring partition state")?;
                            if !r.exact {
                                warn!(
                                    partition = p,
                                    "registry changed since the state was saved; re-bound to the new one"
                                );
                            }
                            self.events.extend(r.events);
                            r.host
                        }
                        // Saved by a worker from before the rules host: the engine's state alone.
                        Err(_) => {
                            let mut host = fresh()?;
                            let snap: Snapshot =
                                serde_json::from_value(rec.engine).context("reading partition state")?;
                            host.adopt_engine_snapshot(snap, now, &mut self.events)?;
                            host
                        }
                    };
                    info!(
                        partition = p,
                        next_offset,
                        open_alerts = host.engine().open_alerts().count(),
                        "partition state restored"
                    );
                    host
                }
                Some(rec) => {
                    warn!(
                        partition = p,
                        saved_for = rec.partitions,
                        now = n,
                        "saved state is for another partition count; starting this partition fresh"
                    );
                    fresh()?
                }
                None => {
                    info!(partition = p, "no saved state; starting fresh");
                    fresh()?
                }
            };
            if host.rules_text() != self.files.rules_text {
                outdated.push(p);
            }
            self.parts.insert(
                p,
                Part {
                    host,
                    next_offset,
                    committed: next_offset,
                    check_gap: true,
                    busy: false,
                    saved_at: Instant::now(),
                },
            );
        }
        // Rules edited since the state was saved: a reload, in the log like any input.
        if !outdated.is_empty() {
            let input = Input::Reload { at: now, rules: Some(self.files.rules_text.clone()), registry: None };
            self.write_input(&outdated, &input);
        }
        Ok(())
    }

    /// Sends pending events to Kafka and MQTT.
    async fn emit(&mut self) -> Result<()> {
        for report in std::mem::take(&mut self.refused) {
            if let Some(p) = &self.publisher {
                if let Err(err) = p.publish_command_error(report).await {
                    warn!(error = %err, "could not publish command error");
                }
            }
        }
        for e in std::mem::take(&mut self.events) {
            let (value, headers) = alert_record(&e);
            let rec = FutureRecord::to(&self.k.alerts_topic).key(&e.alert_id).payload(&value).headers(headers);
            let f = self
                .producer
                .send_result(rec)
                .map_err(|(err, _)| anyhow::anyhow!("cannot produce alert event: {err}"))?;
            self.waits.push(f);
            if let Some(p) = &self.publisher {
                if let Err(err) = p.publish_event(&e).await {
                    warn!(error = %err, event = %e.event_id, "could not queue alert on MQTT");
                }
            }
            debug!(event = %e.event_id, change = %e.change, level = %e.level, "alert event");
            self.metrics.event(&e);
            self.stats.events += 1;
        }
        Ok(())
    }

    /// Takes a commit point (unless one is still in hand) and finishes it if its outputs are
    /// already confirmed.
    async fn commit_point(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        if self.pending.is_none() {
            let mut states = Vec::new();
            for (p, part) in self.parts.iter_mut() {
                let due = part.busy || part.saved_at.elapsed() >= IDLE_SAVE_EVERY;
                if part.next_offset != part.committed && due {
                    part.busy = false;
                    part.saved_at = Instant::now();
                    let began = Instant::now();
                    let rec = StateRecord {
                        next_offset: part.next_offset,
                        partitions: self.partitions,
                        engine: part.host.snapshot(),
                    };
                    self.metrics.state_copied(began.elapsed());
                    states.push((*p, part.next_offset, serde_json::to_vec(&rec).context("serialising rule state")?));
                }
            }
            if states.is_empty() && self.waits.is_empty() {
                return Ok(());
            }
            self.pending = Some(PendingCommit {
                mqtt_target: self.publisher.as_ref().map_or(0, |p| p.sent()),
                waits: std::mem::take(&mut self.waits),
                states,
                since: Instant::now(),
                warned: false,
            });
        }
        self.finish_commit(consumer).await
    }

    /// Finishes the commit point in hand once the MQTT broker acknowledged every alert message
    /// sent up to it: waits for its Kafka deliveries, writes the state records, then commits
    /// the offsets they cover. Returns at once while MQTT is still behind (the worker keeps
    /// processing; an MQTT outage only delays commits).
    async fn finish_commit(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        let Some(pc) = self.pending.as_mut() else { return Ok(()) };
        if let Some(p) = &self.publisher {
            if p.acked() < pc.mqtt_target {
                if !pc.warned && pc.since.elapsed() > Duration::from_secs(10) {
                    pc.warned = true;
                    warn!(
                        behind = pc.mqtt_target - p.acked(),
                        "MQTT broker has not acknowledged every alert; commits wait"
                    );
                }
                return Ok(());
            }
        }
        let pc = self.pending.take().expect("checked above");
        for f in pc.waits {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("Kafka refused an output record: {e}"),
                Err(_) => bail!("Kafka producer closed"),
            }
        }
        if pc.states.is_empty() {
            return Ok(());
        }
        let mut writes = Vec::new();
        for (p, _, value) in &pc.states {
            let key = state_key(&self.topic, *p);
            let f = self
                .producer
                .send_result(FutureRecord::to(&self.k.state_topic).key(&key).payload(value))
                .map_err(|(e, _)| anyhow::anyhow!("cannot produce state record: {e}"))?;
            writes.push(f);
        }
        for f in writes {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("Kafka refused a state record: {e}"),
                Err(_) => bail!("Kafka producer closed"),
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset, _) in &pc.states {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*offset))?;
        }
        // Asynchronous: a synchronous commit waits, without a timeout, for a group coordinator
        // (a worker stopped while Kafka was away hung in it). The saved state records where
        // to resume; the group's offset only has to follow it, and a later commit point (or
        // the next owner's seek to the saved state) makes up for a commit that failed.
        match consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => {
                for (p, offset, _) in &pc.states {
                    if let Some(part) = self.parts.get_mut(p) {
                        part.committed = *offset;
                    }
                }
                self.stats.commits += 1;
            }
            // A rebalance took the partition away; the state record is already saved.
            Err(e) => warn!(error = %e, "offset commit refused"),
        }
        Ok(())
    }

    /// When the rules or registry file changed, checks the new version and writes a reload
    /// input into every owned partition (a broken edit keeps the running configuration).
    fn check_reload(&mut self, now: Timestamp) -> Result<()> {
        let rules_now = modified(&self.files.rules_path);
        let registry_now = modified(&self.files.registry_path);
        let rules_changed = rules_now.is_some() && rules_now != self.rules_loaded;
        let registry_changed = registry_now.is_some() && registry_now != self.registry_loaded;
        if !rules_changed && !registry_changed {
            return Ok(());
        }
        self.rules_loaded = rules_now;
        self.registry_loaded = registry_now;
        let read =
            |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        let checked = (|| -> Result<(String, Option<(String, Registry)>)> {
            let rules_text = read(&self.files.rules_path)?;
            let rules = RuleSet::from_toml(&rules_text)?;
            let registry = if registry_changed {
                let text = read(&self.files.registry_path)?;
                let registry = Registry::from_toml(&text)?;
                Some((text, registry))
            } else {
                None
            };
            let whole = registry.as_ref().map_or(&*self.files.registry, |(_, r)| r);
            Engine::new(&rules, whole).context("rules do not fit the registry")?;
            Ok((rules_text, registry))
        })();
        let (rules_text, registry) = match checked {
            Ok(c) => c,
            Err(e) => {
                println!("configuration changed but cannot be used; keeping the running one: {e:#}");
                return Ok(());
            }
        };
        let input = Input::Reload {
            at: now,
            rules: (rules_text != self.files.rules_text).then(|| rules_text.clone()),
            registry: registry.as_ref().map(|(text, _)| text.clone()),
        };
        if let Input::Reload { rules: None, registry: None, .. } = input {
            return Ok(()); // touched, not changed
        }
        self.files.rules_text = rules_text;
        if let Some((text, registry)) = registry {
            self.files.registry_digest = text_digest(&text);
            self.files.registry = Arc::new(registry);
        }
        self.write_inputs(&input);
        println!("configuration reloaded from {}", self.files.rules_path.display());
        Ok(())
    }
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the state topic to its end and returns the latest record of each wanted partition.
fn load_states(k: &KafkaConfig, topic: &str, parts: &[i32]) -> Result<HashMap<i32, StateRecord<serde_json::Value>>> {
    let consumer: BaseConsumer = k
        .client()
        .set("group.id", "riskwatch-state-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    // Retry while the brokers are unreachable: a worker without its state must not run.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (low, high) = loop {
        match consumer.fetch_watermarks(&k.state_topic, 0, Duration::from_secs(10)) {
            Ok(w) => break w,
            Err(e) if Instant::now() < deadline => {
                warn!(error = %e, "cannot read the state topic yet; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e).with_context(|| format!("reading the end of {}", k.state_topic)),
        }
    };
    let mut out = HashMap::new();
    if high <= low {
        return Ok(out);
    }
    let wanted: HashMap<String, i32> = parts.iter().map(|p| (state_key(topic, *p), *p)).collect();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&k.state_topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let key = m.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default();
                if let Some(p) = wanted.get(key) {
                    match serde_json::from_slice::<StateRecord<serde_json::Value>>(m.payload().unwrap_or_default()) {
                        Ok(rec) => {
                            out.insert(*p, rec);
                        }
                        Err(e) => {
                            warn!(partition = p, offset = m.offset(), error = %e, "unreadable state record skipped")
                        }
                    }
                }
                if m.offset() + 1 >= high {
                    return Ok(out);
                }
            }
            Some(Err(e)) => warn!(error = %e, "reading state topic"),
            None => {}
        }
        if Instant::now() >= deadline {
            bail!("could not read {} to its end within 5 minutes", k.state_topic);
        }
    }
}
