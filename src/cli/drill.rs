//! `riskwatch replay --drill`: a recorded flood published into the live pipeline as an
//! exercise. Every reading goes out with `"exercise": true` (wire-format.md §4.1), paced by the
//! replay's speed factor and keeping its original event time, one batch per site and time step
//! as a gateway would send it; the pipeline evaluates it apart from live data and marks every
//! alert it causes (rules/src/drill.rs).

use anyhow::{bail, Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use riskwatch_bus::records::{reading_headers, RecordFormat};
use riskwatch_bus::{admin, partition::site_partition, KafkaConfig};
use riskwatch_core::wire::{encode_batch, topic};
use riskwatch_core::{Reading, Timestamp};
use riskwatch_simulators::fleet::{self, PlanPublishConfig};
use riskwatch_simulators::plan::Message;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Client id the drill publishes with.
pub const DRILL_CLIENT: &str = "riskwatch-drill";

/// The drill's MQTT messages: consecutive readings with the same event time are grouped per
/// site into one batch (`riskwatch/v1/readings/{site}`), each reading marked as an exercise.
/// `due_ms` counts from the first reading's event time. Batches must come in event-time order.
pub fn messages(batches: impl IntoIterator<Item = Vec<Reading>>) -> impl Iterator<Item = Message> {
    let client: Arc<str> = Arc::from(DRILL_CLIENT);
    let mut start: Option<Timestamp> = None;
    let mut step: Vec<Reading> = Vec::new();
    let mut batches = batches.into_iter();
    let mut ready: std::vec::IntoIter<Message> = Vec::new().into_iter();
    std::iter::from_fn(move || loop {
        if let Some(m) = ready.next() {
            return Some(m);
        }
        // Gather one time step (all readings sharing the next event time), or finish.
        let next = match batches.next() {
            Some(b) => b,
            None if step.is_empty() => return None,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let last = next.is_empty();
        for mut r in next {
            r.exercise = true;
            if step.first().is_some_and(|s| s.ts != r.ts) {
                flush(&mut step, &mut start, &client, &mut out);
            }
            step.push(r);
        }
        if last {
            flush(&mut step, &mut start, &client, &mut out);
        }
        ready = out.into_iter();
    })
}

fn flush(step: &mut Vec<Reading>, start: &mut Option<Timestamp>, client: &Arc<str>, out: &mut Vec<Message>) {
    let Some(ts) = step.first().map(|r| r.ts) else { return };
    let t0 = *start.get_or_insert(ts);
    let mut sites: BTreeMap<&str, Vec<&Reading>> = BTreeMap::new();
    for r in step.iter() {
        sites.entry(r.site.as_str()).or_default().push(r);
    }
    for (site, readings) in sites {
        // The wire format's batch limit (1 000 readings).
        for chunk in readings.chunks(1000) {
            out.push(Message {
                due_ms: ts.millis() - t0.millis(),
                client: Arc::clone(client),
                topic: topic::batch_topic(site),
                payload: encode_batch(chunk.iter().copied()),
                readings: chunk.len() as u32,
            });
        }
    }
    step.clear();
}

/// What a drill published.
pub struct Published {
    /// Messages published.
    pub messages: u64,
    /// Readings in them.
    pub readings: u64,
    /// Messages the broker acknowledged.
    pub acked: u64,
}

/// Publishes the drill to `host:port` at `speed` (event ms per wall ms; `f64::INFINITY` = as
/// fast as the broker takes them) until the stream ends or Ctrl-C.
pub async fn publish<B>(batches: B, host: String, port: u16, speed: f64) -> Result<Published>
where
    B: IntoIterator<Item = Vec<Reading>> + Send + 'static,
    B::IntoIter: Send,
{
    if speed.is_nan() || speed <= 0.0 {
        bail!("--speed must be a positive number");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = PlanPublishConfig {
        host,
        port,
        speed,
        ack_timeout: Duration::from_secs(60),
        credentials: crate::settings::mqtt_credentials_from_env()?,
        transport: crate::mqtt_tls::from_env()?,
    };
    let mut task = tokio::spawn(fleet::publish_plan(messages(batches), cfg, stop_rx));
    let stats = tokio::select! {
        s = &mut task => s.context("drill publisher panicked")?,
        _ = crate::shutdown::shutdown_signal() => {
            let _ = stop_tx.send(true);
            task.await.context("drill publisher panicked")?
        }
    };
    Ok(Published {
        messages: stats.published.load(Ordering::Relaxed),
        readings: stats.readings.load(Ordering::Relaxed),
        acked: stats.acked.load(Ordering::Relaxed),
    })
}

/// Produces the drill straight onto the Kafka readings topic (as `riskwatch ingest` would after
/// validating the MQTT messages), paced like [`publish`]; waits until every record is
/// confirmed by the brokers.
pub async fn produce<B>(batches: B, k: &KafkaConfig, speed: f64) -> Result<Published>
where
    B: IntoIterator<Item = Vec<Reading>>,
{
    if speed.is_nan() || speed <= 0.0 {
        bail!("--speed must be a positive number");
    }
    let partitions = admin::partition_count(k, &k.readings_topic, Duration::from_secs(30))?;
    let producer: FutureProducer = k.producer().set("client.id", DRILL_CLIENT).create()?;
    let began = tokio::time::Instant::now();
    let (mut messages, mut readings, mut waits) = (0u64, 0u64, Vec::new());
    let mut stop = std::pin::pin!(crate::shutdown::shutdown_signal());
    for m in self::messages(batches) {
        let due = began + Duration::from_secs_f64((m.due_ms.max(0) as f64 / speed / 1000.0).min(1e9));
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = &mut stop => break,
        }
        let site = m.topic.rsplit('/').next().unwrap_or_default().to_string();
        let rec = FutureRecord::to(&k.readings_topic)
            .key(&site)
            .payload(&m.payload)
            .partition(site_partition(&site, partitions))
            .headers(reading_headers(&m.topic, Timestamp::now().millis(), RecordFormat::Json));
        waits.push(crate::kafka::ingest::enqueue(&producer, rec).await?);
        messages += 1;
        readings += u64::from(m.readings);
    }
    let mut acked = 0;
    for w in waits {
        match w.await {
            Ok(Ok(_)) => acked += 1,
            Ok(Err((e, _))) => bail!("Kafka refused a drill record: {e}"),
            Err(_) => bail!("Kafka producer closed before confirming the drill"),
        }
    }
    Ok(Published { messages, readings, acked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::{Quality, SensorKind, Value};

    fn wl(site: &str, minute: i64, v: f64) -> Reading {
        Reading {
            sensor: format!("{site}-wl").as_str().into(),
            site: site.into(),
            kind: SensorKind::WaterLevel,
            ts: Timestamp(1_594_080_000_000 + minute * 60_000),
            value: Value::Scalar(v),
            unit: "m".into(),
            quality: Quality::Good,
            exercise: false,
        }
    }

    #[test]
    fn one_marked_batch_per_site_and_time_step_across_input_batches() {
        let input = vec![
            vec![wl("hankou", 0, 27.0), wl("nanjing", 0, 8.0)],
            vec![wl("hankou", 60, 27.1)],
            vec![wl("nanjing", 60, 8.1), wl("hankou", 120, 27.2)],
        ];
        let out: Vec<Message> = messages(input).collect();
        let summary: Vec<(i64, &str, u32)> = out.iter().map(|m| (m.due_ms, m.topic.as_str(), m.readings)).collect();
        assert_eq!(
            summary,
            [
                (0, "riskwatch/v1/readings/hankou", 1),
                (0, "riskwatch/v1/readings/nanjing", 1),
                (3_600_000, "riskwatch/v1/readings/hankou", 1),
                (3_600_000, "riskwatch/v1/readings/nanjing", 1),
                (7_200_000, "riskwatch/v1/readings/hankou", 1),
            ]
        );
        for m in &out {
            let j: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(j["readings"][0]["exercise"], serde_json::json!(true), "{j}");
            assert_eq!(&*m.client, DRILL_CLIENT);
        }
    }
}
