//! Turning MQTT messages into what the pipeline takes: readings, dead letters with the reason,
//! or officers' commands. Shared by the MQTT source (messages from a broker) and the gateway
//! front (messages taken from gateways directly).

use super::delivery::{Delivery, Message};
use super::{RegistryHandle, SourceStats};
use crate::IngestEvent;
use riskwatch_core::wire::{decode, forecast, topic, Limits};
use riskwatch_core::{DeadLetter, Registry, Timestamp};
use rumqttc::mqttbytes::v4::Publish;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tracing::debug;

/// Decodes messages against the current registry and counts them.
#[derive(Clone)]
pub(crate) struct Decoder {
    pub registry: RegistryHandle,
    pub limits: Limits,
    pub stats: Arc<SourceStats>,
}

impl Decoder {
    /// The messages of one read as one delivery; `permit` (if any) is held until it is confirmed.
    pub fn delivery(
        &self,
        publishes: Vec<Publish>,
        confirm: oneshot::Sender<()>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Delivery {
        let registry = Arc::clone(&self.registry.read().unwrap_or_else(|e| e.into_inner()));
        let received_at = Timestamp::now();
        self.stats.messages.fetch_add(publishes.len() as u64, Ordering::Relaxed);
        let messages = publishes
            .into_iter()
            .map(|p| Message { events: self.handle(&registry, &p.topic, &p.payload), topic: p.topic, received_at })
            .collect();
        Delivery::new(messages, confirm, permit)
    }

    /// Decodes one message into what the pipeline should see.
    fn handle(&self, registry: &Registry, topic_name: &str, payload: &[u8]) -> Vec<IngestEvent> {
        if topic_name == topic::COMMANDS_TOPIC {
            return vec![IngestEvent::Command(payload.to_vec())];
        }
        let now = Timestamp::now();
        if forecast::is_forecast_topic(topic_name) {
            return self.forecast(registry, topic_name, payload, now);
        }
        let mut out = Vec::with_capacity(2);
        match decode(topic_name, payload, registry, &self.limits) {
            Ok(decoded) => {
                for rej in decoded.rejected {
                    debug!(topic = topic_name, reason = rej.error.code(), "reading rejected");
                    out.push(IngestEvent::DeadLetter(DeadLetter::new(
                        now,
                        topic_name,
                        &rej.error,
                        rej.index,
                        rej.sensor,
                        rej.raw.into_bytes(),
                    )));
                }
                if !decoded.readings.is_empty() {
                    self.stats.readings.fetch_add(decoded.readings.len() as u64, Ordering::Relaxed);
                    out.push(IngestEvent::Readings(decoded.readings));
                }
            }
            Err(e) => {
                debug!(topic = topic_name, reason = e.code(), "message rejected");
                let sensor = topic::parse_reading_topic(topic_name).ok().and_then(|t| t.sensor.map(str::to_string));
                out.push(IngestEvent::DeadLetter(DeadLetter::new(now, topic_name, &e, None, sensor, payload.to_vec())));
            }
        }
        let rejected = out.iter().filter(|ev| matches!(ev, IngestEvent::DeadLetter(_))).count();
        self.stats.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        out
    }

    /// A forecast message: accepted or refused whole.
    fn forecast(&self, registry: &Registry, topic_name: &str, payload: &[u8], now: Timestamp) -> Vec<IngestEvent> {
        match forecast::decode_forecast(topic_name, payload, registry, &forecast::ForecastLimits::default()) {
            Ok(f) => vec![IngestEvent::Forecast(Box::new(f))],
            Err(e) => {
                debug!(topic = topic_name, reason = e.code(), "forecast rejected");
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let sensor = forecast::parse_forecast_topic(topic_name).ok().map(|t| t.sensor.to_string());
                vec![IngestEvent::DeadLetter(DeadLetter::new(now, topic_name, &e, None, sensor, payload.to_vec()))]
            }
        }
    }
}
