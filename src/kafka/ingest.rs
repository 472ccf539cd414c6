//! `riskwatch ingest`: MQTT readings → validated → Kafka readings topic (keyed and partitioned by
//! site); rejects → dead-letter topic (reason in headers, original bytes) and a rejection notice
//! on MQTT for the gateway. Forecasts (wire-format.md §14) and officers' commands travel on
//! the readings topic too, on their site's partition, marked by a `riskwatch-record` header.
//!
//! At-least-once: a QoS 1 message is acknowledged to the broker only after Kafka confirmed
//! every record it produced (idempotent producer, `acks=all`). Records are enqueued in arrival
//! order, so one sensor's readings stay in order on its partition.

use super::command_route;
use crate::topology::Topology;
use anyhow::{bail, Context, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use riskwatch_bus::records::{
    command_headers, dead_letter_record, forecast_headers, reading_headers, reading_records, RecordFormat,
};
use riskwatch_bus::{admin, partition::site_partition};
use riskwatch_core::wire::{forecast, topic, Limits};
use riskwatch_core::{DeadLetter, Reading, Registry, Timestamp};
use riskwatch_ingest::{Delivery, IngestEvent, Message, MqttSource, MqttSourceConfig};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Counters of a running ingest.
#[derive(Default, Debug)]
pub struct IngestStats {
    /// MQTT messages confirmed (written to Kafka and acknowledged).
    pub messages: AtomicU64,
    /// Readings records produced.
    pub records: AtomicU64,
    /// Dead letters produced.
    pub dead_letters: AtomicU64,
}

/// Runs ingest until `shutdown` turns true; returns an error if Kafka refused a record for good
/// (the message stays unacknowledged, so the broker re-delivers it to the next ingest).
pub async fn run(
    t: &Topology,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
    obs: &crate::metrics::Observability,
) -> Result<Arc<IngestStats>> {
    let k = t.kafka.clone().context("ingest needs a [kafka] section")?;
    admin::ensure_topics(&k, Duration::from_secs(60)).await?;
    let partitions = admin::partition_count(&k, &k.readings_topic, Duration::from_secs(30))?;
    let producer: FutureProducer = k.producer().set("client.id", format!("{}-ingest", t.instance)).create()?;
    let tls = t.mqtt.tls()?;
    let notices = MqttAlertPublisher::connect_with(
        &t.mqtt.host,
        t.mqtt.port,
        &format!("{}-ingest-notices", t.instance),
        t.mqtt.credentials(),
        tls.clone(),
    );
    let shared = |f: &str| match &t.mqtt.share_group {
        Some(g) => format!("$share/{g}/{f}"),
        None => f.to_string(),
    };
    let mut mqtt = MqttSourceConfig::new(&t.mqtt.host, t.mqtt.port, &format!("{}-ingest", t.instance));
    mqtt.filters = vec![
        shared(topic::READINGS_FILTER),
        shared(topic::GATEWAY_READINGS_FILTER),
        shared(topic::COMMANDS_TOPIC),
        shared(forecast::FORECASTS_FILTER),
        shared(forecast::GATEWAY_FORECASTS_FILTER),
    ];
    mqtt.inflight = t.mqtt.inflight;
    mqtt.read_coalesce = t.mqtt.read_coalesce;
    mqtt.credentials = t.mqtt.credentials().map(|(u, p)| (u.to_string(), p.to_string()));
    mqtt.transport = tls.map(riskwatch_ingest::Tls);
    let source = MqttSource::new(mqtt, Arc::clone(&registry), Limits::default());
    let registry = source.registry_handle();
    tokio::spawn(follow_registry(t.registry.clone(), Arc::clone(&registry), shutdown.clone()));
    crate::metrics::mqtt_source(&obs.metrics, &source.stats());
    let m = &obs.metrics;
    let produced = |topic: &str| {
        m.counter(
            "riskwatch_kafka_records_produced_total",
            "Records written to Kafka (confirmed or pending).",
            &[("topic", topic)],
        )
    };
    let (readings_out, dead_out) = (produced(&k.readings_topic), produced(&k.dead_letter_topic));
    let (tx, mut rx) = mpsc::channel::<Delivery>(64);
    let (stop_source, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = watch::channel(false);
    // SL 651 stations, if configured: their readings go the same way, acknowledged once Kafka
    // confirmed them.
    let sl651_task = match t.sl651.address()? {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("sl651.listen: cannot listen for SL 651 stations on {addr}"))?;
            let server =
                riskwatch_ingest::Sl651Server::new(listener, Arc::clone(&registry)).with_limits(t.sl651.limits());
            crate::metrics::sl651_source(&obs.metrics, &server.stats());
            info!(%addr, "SL 651 source listening");
            Some(tokio::spawn(server.run(tx.clone(), stop_rx.clone())))
        }
        None => None,
    };
    let source_task = tokio::spawn(source.run_confirmed(tx, stop_rx, ready_tx));
    obs.readiness.follow("ingest", ready_rx.clone());
    let stats = Arc::new(IngestStats::default());
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    let mut announced = false;
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            Some(reason) = fatal_rx.recv() => break Err(anyhow::anyhow!(reason)),
            r = ready_rx.changed(), if !announced => {
                if r.is_ok() && *ready_rx.borrow() {
                    announced = true;
                    println!("riskwatch ingest ready: MQTT {}:{} → Kafka {} ({} partitions)", t.mqtt.host, t.mqtt.port, k.readings_topic, partitions);
                }
            }
            d = rx.recv() => {
                let Some(d) = d else { break Ok(()) };
                let (messages, confirmation) = d.split();
                let count = messages.len() as u64;
                let mut waits: Vec<DeliveryFuture> = Vec::new();
                for out in outputs(messages, k.record_format) {
                    match out {
                        Output::Readings { site, topic: topic_name, received, value } => {
                            let rec = FutureRecord::to(&k.readings_topic)
                                .key(&site)
                                .payload(&value)
                                .partition(site_partition(&site, partitions))
                                .headers(reading_headers(&topic_name, received, k.record_format));
                            waits.push(enqueue(&producer, rec).await?);
                            stats.records.fetch_add(1, Ordering::Relaxed);
                            readings_out.inc();
                        }
                        Output::Forecast { site, topic: topic_name, received, value } => {
                            let rec = FutureRecord::to(&k.readings_topic)
                                .key(&site)
                                .payload(&value)
                                .partition(site_partition(&site, partitions))
                                .headers(forecast_headers(&topic_name, received));
                            waits.push(enqueue(&producer, rec).await?);
                            stats.records.fetch_add(1, Ordering::Relaxed);
                            readings_out.inc();
                        }
                        Output::DeadLetter(dl) => {
                            if let Err(e) = notices.publish_rejection(&dl).await {
                                warn!(error = %e, "could not publish rejection notice");
                            }
                            let (key, headers) = dead_letter_record(&dl);
                            let rec = FutureRecord::to(&k.dead_letter_topic).key(&key).payload(&dl.raw).headers(headers);
                            waits.push(enqueue(&producer, rec).await?);
                            stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                            dead_out.inc();
                            crate::metrics::rejection(m, dl.reason);
                        }
                        // Commands travel with the readings of their alert's site, so the worker
                        // owning that site applies them in order with its readings. A network
                        // composite's alert has the composite's id for its site (no registry
                        // site): its commands go to the network host.
                        Output::Command { raw, topic: topic_name, received } => {
                            let routed = {
                                let registry = registry.read().unwrap_or_else(|e| e.into_inner());
                                command_route::route(&raw, &registry)
                                    .map(|site| {
                                        let known = registry.site(&site).is_some();
                                        (site, known)
                                    })
                            };
                            match routed {
                                Ok((site, known)) => {
                                    let (to, partition) = if known {
                                        (&k.readings_topic, site_partition(&site, partitions))
                                    } else {
                                        (&k.network_topic, 0)
                                    };
                                    let rec = FutureRecord::to(to)
                                        .key(&site)
                                        .payload(&raw)
                                        .partition(partition)
                                        .headers(command_headers(&topic_name, received));
                                    waits.push(enqueue(&producer, rec).await?);
                                }
                                Err(refused) => {
                                    warn!(code = refused.code, error = %refused.error, "command refused at ingest");
                                    let report = refused.report(Timestamp::from_millis(received));
                                    if let Err(e) = notices.publish_command_error(report).await {
                                        warn!(error = %e, "could not publish command error");
                                    }
                                }
                            }
                        }
                    }
                }
                let fatal = fatal_tx.clone();
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    for w in waits {
                        match w.await {
                            Ok(Ok(_)) => {}
                            Ok(Err((e, _))) => {
                                error!(error = %e, "Kafka refused a record; not acknowledging the MQTT messages");
                                let _ = fatal.try_send(format!("Kafka refused a record: {e}"));
                                return;
                            }
                            Err(_) => {
                                let _ = fatal.try_send("Kafka producer closed".into());
                                return;
                            }
                        }
                    }
                    stats.messages.fetch_add(count, Ordering::Relaxed);
                    confirmation.confirm();
                });
            }
        }
    };
    let _ = stop_source.send(true);
    // Let the source hand over what it already has and acknowledge what Kafka confirms.
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        drop(d); // not written: left unacknowledged, so the broker re-delivers it
    }
    let _ = producer.flush(Duration::from_secs(10));
    let _ = tokio::time::timeout(Duration::from_secs(15), source_task).await;
    if let Some(task) = sl651_task {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    notices.close(Duration::from_secs(2)).await;
    info!(?stats, "ingest stopped");
    outcome.map(|()| stats)
}

/// What one delivery's messages become on Kafka, in order.
enum Output {
    /// One site's readings.
    Readings {
        site: String,
        topic: String,
        received: i64,
        value: Vec<u8>,
    },
    DeadLetter(DeadLetter),
    Command {
        raw: Vec<u8>,
        topic: String,
        received: i64,
    },
    /// One validated forecast, re-encoded in the wire shape.
    Forecast {
        site: String,
        topic: String,
        received: i64,
        value: Vec<u8>,
    },
}

/// The records of a delivery: the readings of consecutive messages gathered into one record
/// per site (a gateway publishing one reading per message would otherwise cost one Kafka record
/// per reading), a command keeping its place after the readings before it. A record gathering
/// several messages names its site's batch topic as its MQTT topic.
fn outputs(messages: Vec<Message>, format: RecordFormat) -> Vec<Output> {
    let mut out = Vec::new();
    let mut gathered: Vec<Reading> = Vec::new();
    let mut topics: Vec<String> = Vec::new();
    let mut received = 0;
    let flush = |gathered: &mut Vec<Reading>, topics: &mut Vec<String>, received: i64, out: &mut Vec<Output>| {
        for (site, value) in reading_records(gathered, format) {
            let topic = match topics.as_slice() {
                [one] => one.clone(),
                _ => topic::batch_topic(&site),
            };
            out.push(Output::Readings { site, topic, received, value });
        }
        gathered.clear();
        topics.clear();
    };
    for message in messages {
        received = message.received_at.millis();
        for ev in message.events {
            match ev {
                IngestEvent::Readings(mut readings) => {
                    gathered.append(&mut readings);
                    if topics.last() != Some(&message.topic) {
                        topics.push(message.topic.clone());
                    }
                }
                IngestEvent::DeadLetter(dl) => out.push(Output::DeadLetter(dl)),
                IngestEvent::Command(raw) => {
                    flush(&mut gathered, &mut topics, received, &mut out);
                    out.push(Output::Command { raw, topic: message.topic.clone(), received });
                }
                // A forecast keeps its place after the readings before it, on its site's
                // partition, so the worker owning the site applies it in order.
                IngestEvent::Forecast(f) => {
                    flush(&mut gathered, &mut topics, received, &mut out);
                    out.push(Output::Forecast {
                        site: f.site.to_string(),
                        topic: message.topic.clone(),
                        received,
                        value: forecast::encode_forecast(&f),
                    });
                }
            }
        }
    }
    flush(&mut gathered, &mut topics, received, &mut out);
    out
}

/// Enqueues a record, waiting while the producer's queue is full.
pub async fn enqueue(producer: &FutureProducer, mut rec: FutureRecord<'_, String, Vec<u8>>) -> Result<DeliveryFuture> {
    loop {
        match producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => bail!("cannot produce to Kafka: {e}"),
        }
    }
}

/// Takes in an edited registry file (a new sensor without a restart): checked every 2 s, used
/// for the next message once it parses; a broken edit keeps the running registry. The rules
/// workers reload it too, as an input of each partition.
async fn follow_registry(
    path: std::path::PathBuf,
    handle: riskwatch_ingest::RegistryHandle,
    mut stop: watch::Receiver<bool>,
) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut loaded = modified(&path);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let now = modified(&path);
        if now.is_none() || now == loaded {
            continue;
        }
        loaded = now;
        match crate::settings::load_registry(&path) {
            Ok(r) => {
                *handle.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
                println!("registry reloaded from {}", path.display());
            }
            Err(e) => println!(
                "registry file {} changed but cannot be used; keeping the running registry: {e:#}",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::reading::Value;
    use riskwatch_core::{Quality, SensorId, SensorKind, SiteId};

    fn message(topic: &str, site: &str, sensor: &str, ts: i64) -> Message {
        let r = Reading {
            sensor: SensorId::new(sensor),
            site: SiteId::new(site),
            kind: SensorKind::WaterLevel,
            ts: Timestamp::from_millis(ts),
            value: Value::Scalar(5.0),
            unit: Arc::from("m"),
            quality: Quality::Good,
            exercise: false,
        };
        Message {
            topic: topic.into(),
            received_at: Timestamp::from_millis(7),
            events: vec![IngestEvent::Readings(vec![r])],
        }
    }

    fn sensors(value: &[u8]) -> Vec<String> {
        riskwatch_core::wire::binary::decode_readings(value).unwrap().iter().map(|r| r.sensor.to_string()).collect()
    }

    /// Single-reading messages of a delivery become one record per site; a command keeps its
    /// place after the readings that came before it, and so does a forecast.
    #[test]
    fn readings_of_consecutive_messages_share_a_record_per_site_and_a_command_keeps_its_place() {
        let command = Message {
            topic: topic::COMMANDS_TOPIC.into(),
            received_at: Timestamp::from_millis(7),
            events: vec![IngestEvent::Command(br#"{"site":"s1"}"#.to_vec())],
        };
        let forecast = Message {
            topic: "riskwatch/v1/forecasts/s2/c".into(),
            received_at: Timestamp::from_millis(7),
            events: vec![IngestEvent::Forecast(Box::new(riskwatch_core::Forecast {
                sensor: SensorId::new("c"),
                site: SiteId::new("s2"),
                kind: SensorKind::WaterLevel,
                unit: Arc::from("m"),
                issued: Timestamp::from_millis(1),
                valid: vec![Timestamp::from_millis(2)],
                members: vec![vec![5.5]],
            }))],
        };
        let out = outputs(
            vec![
                message("riskwatch/v1/readings/s1/a", "s1", "a", 1),
                message("riskwatch/v1/readings/s1/b", "s1", "b", 1),
                message("riskwatch/v1/readings/s2/c", "s2", "c", 1),
                command,
                message("riskwatch/v1/readings/s1/a", "s1", "a", 2),
                forecast,
            ],
            RecordFormat::Binary,
        );
        let shape: Vec<String> = out
            .iter()
            .map(|o| match o {
                Output::Readings { site, topic, value, .. } => format!("{site} {topic} {:?}", sensors(value)),
                Output::Command { .. } => "command".into(),
                Output::Forecast { site, topic, .. } => format!("forecast {site} {topic}"),
                Output::DeadLetter(_) => "dead letter".into(),
            })
            .collect();
        assert_eq!(
            shape,
            [
                r#"s1 riskwatch/v1/readings/s1 ["a", "b"]"#,
                r#"s2 riskwatch/v1/readings/s2 ["c"]"#,
                "command",
                r#"s1 riskwatch/v1/readings/s1/a ["a"]"#,
                "forecast s2 riskwatch/v1/forecasts/s2/c",
            ]
        );
    }
}
