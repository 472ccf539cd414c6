//! `riskwatch sink`: Kafka readings and alert events → QuestDB (questdb-rs, ILP over HTTP).
//!
//! Rows are batched by count and age; offsets are committed only after a flush succeeded. A
//! failed flush is retried with backoff (nothing more is consumed meanwhile), so a QuestDB
//! outage delays data but loses none. Re-delivered records land once thanks to QuestDB's
//! `DEDUP UPSERT KEYS` (docs/questdb.md).
//!
//! Nothing is dropped silently: a record (or one reading of it) the sink cannot store — not
//! decodable, refused by this process's registry (a JSON record checked against an older
//! registry than ingest's), not writable — goes to the dead-letter topic with its original
//! bytes, the reason and where it was read, and is counted in
//! `riskwatch_sink_dead_letters_total{reason}`; its offset is committed only once Kafka has the
//! dead letter.

use crate::topology::{QuestDbSettings, Topology};
use anyhow::{anyhow, Context, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use riskwatch_bus::admin;
use riskwatch_bus::records::{
    dead_letter_record, decode_reading_record, header, header_str, is_control, received_at, refused_record,
};
use riskwatch_core::wire::Limits;
use riskwatch_core::{AlertEvent, DeadLetter, Registry, Timestamp};
use riskwatch_sinks::questdb::IlpWriter;
use riskwatch_sinks::retry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// Counters, printed when the sink stops.
#[derive(Debug, Default, Clone)]
pub struct SinkStats {
    /// Reading rows written.
    pub readings: u64,
    /// Alert-event rows written.
    pub events: u64,
    /// Records, or readings of a record, that could not be stored and went to the dead-letter
    /// topic instead.
    pub dead_lettered: u64,
    /// Successful flushes.
    pub flushes: u64,
    /// Failed flush attempts (each retried).
    pub flush_failures: u64,
}

/// Checks (or creates) the QuestDB tables before the first row is written (`[questdb] tables`):
/// a table that ILP created on its own has no dedup keys, and re-delivered rows would be
/// stored twice.
async fn ensure_tables(q: &QuestDbSettings) -> Result<()> {
    use riskwatch_sinks::questdb_tables::{tables_of, SqlEndpoint, TablesPolicy, SCHEMA_SQL};
    if q.tables == TablesPolicy::Unchecked {
        warn!("questdb.tables = \"unchecked\": tables not checked; a row delivered twice may be stored twice");
        return Ok(());
    }
    let at = SqlEndpoint::from_conf(&q.conf, q.sql_url.as_deref()).map_err(|e| anyhow!("questdb.conf: {e}"))?;
    let tables = tables_of(SCHEMA_SQL);
    let report = riskwatch_sinks::questdb_tables::ensure_tables(&at, &tables, q.tables, Duration::from_secs(60))
        .await
        .with_context(|| format!("checking the sink's tables on QuestDB at {} (questdb.tables)", at.base))?;
    if !report.created.is_empty() {
        info!(tables = ?report.created, "created QuestDB tables from deploy/questdb/schema.sql");
    }
    info!(tables = report.ok.len() + report.created.len(), "QuestDB tables have their dedup keys");
    Ok(())
}

/// Runs the sink until `shutdown` turns true.
pub async fn run(
    t: &Topology,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
    obs: &crate::metrics::Observability,
) -> Result<SinkStats> {
    let k = t.kafka.clone().context("the sink needs a [kafka] section")?;
    let q = t.questdb.clone().context("the sink needs a [questdb] section")?;
    ensure_tables(&q).await?;
    admin::ensure_topics(&k, Duration::from_secs(60)).await?;
    let lag = crate::metrics::LagContext { metrics: obs.metrics.clone(), group: k.sink_group.clone() };
    let consumer: StreamConsumer<crate::metrics::LagContext> =
        k.sink_consumer(&format!("{}-sink", t.instance)).create_with_context(lag)?;
    consumer.subscribe(&[&k.readings_topic, &k.alerts_topic]).context("subscribing to readings and alerts")?;
    let mut writer = IlpWriter::new(&q.conf).context("questdb.conf")?;
    let producer: FutureProducer = k.producer().create().context("Kafka producer for dead letters")?;
    let mut refused: Vec<Refused> = Vec::new();
    println!("riskwatch sink {} ready: {} and {} → QuestDB", t.instance, k.readings_topic, k.alerts_topic);
    obs.readiness.set("sink", true);
    let flushed = crate::metrics::sink_flush(&obs.metrics, "questdb");

    let limits = Limits::default();
    let mut stats = SinkStats::default();
    let mut pending: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut oldest: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut batch = (0u64, 0u64);
    loop {
        let stop = tokio::select! {
            _ = shutdown.changed() => true,
            m = consumer.recv() => {
                match m {
                    Ok(msg) => {
                        let (r, e) = rows(&msg, &k.readings_topic, &registry, &limits, &mut writer, &mut refused);
                        batch.0 += r;
                        batch.1 += e;
                        if !refused.is_empty() {
                            // Delivered before this record's offset can be committed.
                            if !dead_letter(&producer, &k.dead_letter_topic, &mut refused, &mut stats, &mut shutdown, &obs.metrics).await {
                                break; // shutting down while Kafka refuses: uncommitted, re-read next start
                            }
                        }
                        pending.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
                        oldest.get_or_insert_with(Instant::now);
                    }
                    Err(e) => warn!(error = %e, "Kafka consumer error"),
                }
                false
            }
            _ = tick.tick() => false,
        };
        let due = writer.rows() >= q.flush_rows || oldest.is_some_and(|o| o.elapsed() >= q.flush_interval);
        if stop || (due && !pending.is_empty()) {
            if !flush(&mut writer, &mut stats, &mut shutdown, stop, &flushed, batch).await {
                break; // shutting down while QuestDB is unreachable: uncommitted, re-read next start
            }
            stats.readings += batch.0;
            stats.events += batch.1;
            batch = (0, 0);
            commit(&consumer, &pending);
            pending.clear();
            oldest = None;
        }
        if stop {
            break;
        }
    }
    info!(?stats, "sink stopped");
    Ok(stats)
}

/// A record, or one reading of a record, the sink cannot store: for the dead-letter topic.
struct Refused {
    key: String,
    payload: Vec<u8>,
    headers: OwnedHeaders,
    reason: String,
}

impl Refused {
    /// The whole record, refused for `reason`.
    fn record(msg: &BorrowedMessage<'_>, at: &str, reason: &str, error: &str) -> Refused {
        let key = msg.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default();
        let (key, headers) = refused_record(key, reason, error, at, "sink");
        warn!(record = %at, reason, error, "record not stored; sent to the dead-letter topic");
        Refused { key, payload: msg.payload().unwrap_or_default().to_vec(), headers, reason: reason.to_string() }
    }
}

/// Buffers the rows of one record; returns (readings, events) buffered. What cannot be stored
/// is added to `refused`.
fn rows(
    msg: &BorrowedMessage<'_>,
    readings_topic: &str,
    registry: &Registry,
    limits: &Limits,
    writer: &mut IlpWriter,
    refused: &mut Vec<Refused>,
) -> (u64, u64) {
    let payload = msg.payload().unwrap_or_default();
    let at = format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset());
    if msg.topic() == readings_topic && is_control(msg.headers()) {
        // An officer's command or a rules-host input (clock tick, reload) for the rules workers;
        // what they cause is stored as alert events.
        (0, 0)
    } else if msg.topic() == readings_topic {
        let site = msg.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default();
        match decode_reading_record(site, payload, msg.headers(), registry, limits) {
            Ok(d) => {
                let mut n = 0;
                for r in &d.readings {
                    match writer.add_reading(r) {
                        Ok(()) => n += 1,
                        Err(e) => refused.push(Refused::record(
                            msg,
                            &at,
                            "not_writable",
                            &format!("reading of {} at {}: {e}", r.sensor.as_str(), r.ts.millis()),
                        )),
                    }
                }
                // Readings this process's registry refuses (a JSON record checked again here):
                // each with its own bytes, as ingest dead-letters them.
                for item in &d.rejected {
                    // As ingest would have dead-lettered it: the MQTT topic and arrival time
                    // the record carries, the item's own bytes.
                    let mqtt_topic = header_str(msg.headers(), header::MQTT_TOPIC)
                        .map_or_else(|| riskwatch_core::wire::topic::batch_topic(site), str::to_string);
                    let received = received_at(msg.headers()).map_or_else(Timestamp::now, Timestamp);
                    let dl = DeadLetter::new(
                        received,
                        &mqtt_topic,
                        &item.error,
                        item.index,
                        item.sensor.clone(),
                        item.raw.clone().into_bytes(),
                    );
                    let (key, headers) = dead_letter_record(&dl);
                    let headers = headers
                        .insert(Header { key: header::SOURCE, value: Some(&at) })
                        .insert(Header { key: header::REFUSED_BY, value: Some("sink") });
                    warn!(record = %at, reason = dl.reason, error = %dl.error, "reading refused by the sink's registry; sent to the dead-letter topic");
                    refused.push(Refused { key, payload: dl.raw.clone(), headers, reason: dl.reason.to_string() });
                }
                (n, 0)
            }
            Err(e) => {
                refused.push(Refused::record(msg, &at, e.code(), &e.to_string()));
                (0, 0)
            }
        }
    } else {
        let event = match serde_json::from_slice::<AlertEvent>(payload) {
            Ok(ev) => ev,
            Err(e) => {
                refused.push(Refused::record(msg, &at, "bad_record", &format!("not an alert event: {e}")));
                return (0, 0);
            }
        };
        match writer.add_event(&event) {
            Ok(()) => (0, 1),
            Err(e) => {
                refused.push(Refused::record(msg, &at, "not_writable", &e.to_string()));
                (0, 0)
            }
        }
    }
}

/// Produces the refused records to the dead-letter topic and waits until Kafka has each,
/// retrying with jittered backoff (200 ms doubling to 10 s); false if asked to stop before
/// they were all delivered.
async fn dead_letter(
    producer: &FutureProducer,
    topic: &str,
    refused: &mut Vec<Refused>,
    stats: &mut SinkStats,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &riskwatch_service::metrics::Metrics,
) -> bool {
    let mut backoff = retry::delays(Duration::from_millis(200), Duration::from_secs(10));
    while let Some(r) = refused.first() {
        let record = FutureRecord::to(topic).key(&r.key).payload(&r.payload).headers(r.headers.clone());
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => {
                stats.dead_lettered += 1;
                metrics
                    .counter(
                        "riskwatch_sink_dead_letters_total",
                        "Records or readings the sink could not store, sent to the dead-letter topic, by reason.",
                        &[("reason", &r.reason)],
                    )
                    .inc();
                refused.remove(0);
                backoff = retry::delays(Duration::from_millis(200), Duration::from_secs(10));
            }
            Err((e, _)) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "dead letter not accepted by Kafka; retrying");
                if *shutdown.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    true
}

/// Flushes, retrying with jittered backoff (200 ms doubling to 10 s); false if asked to stop
/// before a flush succeeded.
async fn flush(
    writer: &mut IlpWriter,
    stats: &mut SinkStats,
    shutdown: &mut watch::Receiver<bool>,
    stopping: bool,
    observe: &impl Fn(usize, usize, Duration, bool),
    (readings, events): (u64, u64),
) -> bool {
    let mut backoff = retry::delays(Duration::from_millis(200), Duration::from_secs(10));
    let mut attempts_while_stopping = 0;
    loop {
        let delay = backoff.next().unwrap_or(Duration::from_secs(10));
        let began = Instant::now();
        let result = tokio::task::block_in_place(|| writer.flush());
        observe(readings as usize, events as usize, began.elapsed(), result.is_ok());
        match result {
            Ok(()) => {
                stats.flushes += 1;
                return true;
            }
            Err(e) => {
                stats.flush_failures += 1;
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, rows = writer.rows(), "QuestDB flush failed; retrying");
            }
        }
        if stopping || *shutdown.borrow() {
            attempts_while_stopping += 1;
            if attempts_while_stopping >= 3 {
                return false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn commit(consumer: &StreamConsumer<crate::metrics::LagContext>, pending: &BTreeMap<(String, i32), i64>) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), next) in pending {
        if tpl.add_partition_offset(topic, *p, Offset::Offset(*next)).is_err() {
            return;
        }
    }
    // Asynchronous: a synchronous commit waits, without a timeout, for a group coordinator,
    // and so held the process (and its shutdown) for as long as Kafka was away. An offset not
    // committed (Kafka away, or the partition lost in a rebalance) only means its records are
    // read again after a restart, and QuestDB dedups them.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        warn!(error = %e, "offset commit refused");
    }
}
