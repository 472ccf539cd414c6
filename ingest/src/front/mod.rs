//! The gateway front: the MQTT port gateways connect to in the embedded wiring.
//!
//! An embedded broker (rumqttd) acknowledges a PUBLISH as soon as it is in its in-memory log,
//! so a burst larger than riskwatch can store at once grew the process by hundreds of MB, and a
//! crash lost whatever the log held. The front sits in front of that broker: every gateway
//! connection is relayed to it, except the readings (PUBLISH on the reading topics), which the
//! front takes out of the stream, decodes and hands to the pipeline itself. Their PUBACKs go out
//! only once the store has committed them — one write per batch, in order — and the limits
//! below turn overload into back-pressure on the gateways' sockets ([`connection`]). A QoS 0
//! copy of each reading still reaches the broker for live subscribers. The broker behind serves
//! everything else: alert subscribers, the console, retained alert state, other topics.
//!
//! QoS 2 readings are acknowledged (PUBREC) once stored like QoS 1 ones; a gateway re-sending
//! one before its PUBREC is stored twice — the store's readings are at-least-once in any case.
//!
//! Limits (docs/operations.md, "Embedded broker limits"):
//! - `per_gateway`: messages one connection may have taken and not yet acknowledged (like a
//!   broker's `max_inflight_messages`);
//! - `total`: messages all connections together may have in the pipeline.

mod connection;
mod frame;

use crate::mqtt::{Decoder, MqttSource};
use crate::Delivery;
use riskwatch_core::wire::topic;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};

/// The front's limits on messages taken and not yet stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontLimits {
    /// Per gateway connection.
    pub per_gateway: usize,
    /// For all connections together.
    pub total: usize,
}

impl Default for FrontLimits {
    fn default() -> Self {
        FrontLimits { per_gateway: 1000, total: 20_000 }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    /// The broker behind the front.
    upstream: SocketAddr,
    decoder: Decoder,
    /// Permits for messages in the pipeline (`FrontLimits::total`).
    in_flight: Arc<Semaphore>,
    per_gateway: usize,
    /// Largest packet accepted from a gateway (as the broker's own limit).
    max_packet: usize,
}

impl Shared {
    /// Whether the front takes this (complete) PUBLISH packet itself: a reading or a forecast.
    fn takes(&self, pkt: &[u8]) -> bool {
        use riskwatch_core::wire::forecast::{FORECASTS_FILTER, GATEWAY_FORECASTS_FILTER};
        frame::publish_qos(pkt) <= 2
            && frame::publish_topic(pkt).is_some_and(|t| {
                [topic::READINGS_FILTER, topic::GATEWAY_READINGS_FILTER, FORECASTS_FILTER, GATEWAY_FORECASTS_FILTER]
                    .iter()
                    .any(|f| rumqttc::mqttbytes::matches(t, f))
            })
    }
}

/// The gateway front, ready to serve.
pub struct GatewayFront {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

impl GatewayFront {
    /// A front accepting on `listener`, relaying to the broker at `upstream`, decoding readings
    /// as `source` does (same registry, limits and counters).
    pub fn new(
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        source: &MqttSource,
        limits: FrontLimits,
        max_packet: usize,
    ) -> Self {
        let total = limits.total.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Shared {
            upstream,
            decoder: source.decoder(),
            in_flight: Arc::new(Semaphore::new(total)),
            per_gateway: limits.per_gateway.clamp(1, total),
            max_packet,
        };
        GatewayFront { listener, shared: Arc::new(shared) }
    }

    /// Accepts gateways until `shutdown` turns true; then lets each connection acknowledge
    /// what the pipeline confirms (up to 10 s) and returns once all are closed.
    pub async fn run(self, tx: mpsc::Sender<Delivery>, shutdown: watch::Receiver<bool>) {
        let shared = self.shared;
        crate::accept::serve_until_shutdown(
            self.listener,
            "the gateway front",
            shutdown,
            move |stream, peer, shutdown| connection::serve(stream, peer, Arc::clone(&shared), tx.clone(), shutdown),
        )
        .await;
    }
}
