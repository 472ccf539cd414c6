//! `riskwatch sink`: Kafka readings and alert events → QuestDB (questdb-rs, ILP over HTTP).
//!
//! Rows are batched by count and age; offsets are committed only after a flush succeeded. A
//! failed flush is retried with backoff (nothing more is consumed meanwhile), so a QuestDB
//! outage delays data but loses none. Re-delivered records land once thanks to QuestDB's
//! `DEDUP UPSERT KEYS` (docs/questdb.md).

use crate::topology::Topology;
use anyhow::{Context, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use riskwatch_bus::admin;
use riskwatch_bus::records::{decode_reading_record, is_control};
use riskwatch_core::wire::Limits;
use riskwatch_core::{AlertEvent, Registry};
use riskwatch_sinks::questdb::IlpWriter;
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
    /// Records that could not be turned into rows (logged; their offsets still advance).
    pub unusable: u64,
    /// Successful flushes.
    pub flushes: u64,
    /// Failed flush attempts (each retried).
    pub flush_failures: u64,
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
    admin::ensure_topics(&k, Duration::from_secs(60)).await?;
    let lag = crate::metrics::LagContext { metrics: obs.metrics.clone(), group: k.sink_group.clone() };
    let consumer: StreamConsumer<crate::metrics::LagContext> =
        k.consumer(&k.sink_group, &format!("{}-sink", t.instance)).create_with_context(lag)?;
    consumer.subscribe(&[&k.readings_topic, &k.alerts_topic]).context("subscribing to readings and alerts")?;
    let mut writer = IlpWriter::new(&q.conf).context("questdb.conf")?;
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
                        let (r, e) = rows(&msg, &k.readings_topic, &registry, &limits, &mut writer, &mut stats);
                        batch.0 += r;
                        batch.1 += e;
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

/// Buffers the rows of one record; returns (readings, events) buffered.
fn rows(
    msg: &BorrowedMessage<'_>,
    readings_topic: &str,
    registry: &Registry,
    limits: &Limits,
    writer: &mut IlpWriter,
    stats: &mut SinkStats,
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
                        Err(e) => {
                            stats.unusable += 1;
                            warn!(record = %at, error = %e, "reading not writable")
                        }
                    }
                }
                stats.unusable += d.rejected.len() as u64;
                (n, 0)
            }
            Err(e) => {
                stats.unusable += 1;
                warn!(record = %at, reason = e.code(), error = %e, "readings record not decodable");
                (0, 0)
            }
        }
    } else {
        match serde_json::from_slice::<AlertEvent>(payload)
            .map_err(|e| e.to_string())
            .and_then(|ev| writer.add_event(&ev).map_err(|e| e.to_string()))
        {
            Ok(()) => (0, 1),
            Err(e) => {
                stats.unusable += 1;
                warn!(record = %at, error = %e, "alert record not writable");
                (0, 0)
            }
        }
    }
}

/// Flushes, retrying with backoff; false if asked to stop before a flush succeeded.
async fn flush(
    writer: &mut IlpWriter,
    stats: &mut SinkStats,
    shutdown: &mut watch::Receiver<bool>,
    stopping: bool,
    observe: &impl Fn(usize, usize, Duration, bool),
    (readings, events): (u64, u64),
) -> bool {
    let mut backoff = Duration::from_millis(200);
    let mut attempts_while_stopping = 0;
    loop {
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
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, rows = writer.rows(), "QuestDB flush failed; retrying");
            }
        }
        if stopping || *shutdown.borrow() {
            attempts_while_stopping += 1;
            if attempts_while_stopping >= 3 {
                return false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
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
