//! Publishes alert events and rejections on MQTT (QoS 1).
//!
//! Alert events go to `riskwatch/v1/alerts/{level}/{site}/{subject}` so officers can subscribe
//! by colour or by site with wildcards; rejections go to `riskwatch/v1/rejections/{site}` so a
//! gateway integrator sees at once why a message was refused. Each active alert's current
//! state is also kept as a retained message on `riskwatch/v1/state/{site}/{subject}/{alert_id}`
//! (removed when the alert clears), so a console or app that connects late sees every active
//! alert at once.

use riskwatch_core::wire::topic;
use riskwatch_core::{AlertChange, AlertEvent, Board, DeadLetter};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, Request};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::warn;

/// A connected publisher. Publishing queues the message; [`MqttAlertPublisher::close`] waits
/// until the broker has acknowledged everything queued. The queue is bounded (about 2 × 1 024
/// messages while the broker is away); publishing then waits.
///
/// Nothing queued is lost to a broker restart: the publisher keeps every message until the
/// broker acknowledges it, and when it reconnects to a broker that has no session for it
/// (rumqttc then drops what it had taken: in flight, and queued at the disconnection) it sends
/// exactly those messages again, ahead of the rest, so that they keep their order. A message
/// the broker took but could not acknowledge before it died may still arrive twice; alert
/// events carry stable `event_id`s for that.
pub struct MqttAlertPublisher {
    client: AsyncClient,
    unacked: Unacked,
    /// Held while a message is queued: `unacked` lists messages in the order rumqttc takes them.
    queueing: tokio::sync::Mutex<()>,
    pending: Arc<AtomicI64>,
    sent: AtomicU64,
    acked: Arc<AtomicU64>,
    driver: JoinHandle<()>,
    board: Mutex<Board>,
}

/// Messages (topic, payload, retain) queued and not yet acknowledged, oldest first.
type Unacked = Arc<Mutex<VecDeque<(String, Vec<u8>, bool)>>>;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
#[error("MQTT publish: {0}")]
pub struct PublishError(#[from] rumqttc::ClientError);

impl MqttAlertPublisher {
    /// Connects to the broker at `host:port` with the given client id.
    pub fn connect(host: &str, port: u16, client_id: &str) -> Self {
        Self::connect_as(host, port, client_id, None)
    }

    /// Connects with a username and password (brokers with `allow_anonymous false`).
    pub fn connect_as(host: &str, port: u16, client_id: &str, credentials: Option<(&str, &str)>) -> Self {
        Self::connect_with(host, port, client_id, credentials, None)
    }

    /// Connects with optional login and transport (TLS).
    pub fn connect_with(
        host: &str,
        port: u16,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        transport: Option<rumqttc::Transport>,
    ) -> Self {
        let mut opts = MqttOptions::new(client_id, host, port);
        if let Some(t) = transport {
            opts.set_transport(t);
        }
        opts.set_keep_alive(Duration::from_secs(15)).set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        // Small messages go out at once, not after the previous one's TCP acknowledgement.
        eventloop.network_options.set_tcp_nodelay(true);
        let pending = Arc::new(AtomicI64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let unacked: Unacked = Arc::default();
        let p = Arc::clone(&pending);
        let a = Arc::clone(&acked);
        let u = Arc::clone(&unacked);
        let driver = tokio::spawn(async move {
            let mut connected_before = false;
            // Messages rumqttc holds for the next session (in flight, and queued, when the
            // connection broke): the oldest unacknowledged ones. A broker without our session
            // makes rumqttc drop them.
            let mut held_for_session = 0;
            let mut outage = riskwatch_core::outage::OutageLog::new("alert publisher");
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        // QoS 1 acknowledgements come in publishing order.
                        u.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        p.fetch_sub(1, Ordering::AcqRel);
                        a.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        outage.connected(std::time::Instant::now());
                        if connected_before && !ack.session_present && held_for_session > 0 {
                            // Sent again ahead of what is still queued (rumqttc sends its
                            // pending requests first), so acknowledgements keep their order.
                            let again: Vec<Request> = u
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .iter()
                                .take(held_for_session)
                                .map(|(t, payload, retain)| {
                                    let mut p = Publish::new(t, QoS::AtLeastOnce, payload.clone());
                                    p.retain = *retain;
                                    Request::Publish(p)
                                })
                                .collect();
                            warn!(
                                messages = again.len(),
                                "broker lost our session; sending unacknowledged messages again"
                            );
                            eventloop.pending.extend(again);
                        }
                        held_for_session = 0;
                        connected_before = true;
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        held_for_session =
                            eventloop.pending.iter().filter(|r| matches!(r, Request::Publish(_))).count();
                        outage.failed(std::time::Instant::now(), &e);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        MqttAlertPublisher {
            client,
            unacked,
            queueing: tokio::sync::Mutex::new(()),
            pending,
            sent: AtomicU64::new(0),
            acked,
            driver,
            board: Mutex::new(Board::new()),
        }
    }

    /// Queues one alert event, and the alert's retained state: its current
    /// [`riskwatch_core::AlertState`] while active, an empty retained message (which removes
    /// it) once cleared or resolved.
    pub async fn publish_event(&self, e: &AlertEvent) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(e).unwrap_or_default();
        self.send(topic::alert_topic(e), payload, false).await?;
        let state = self.board.lock().unwrap_or_else(|e| e.into_inner()).apply(e);
        let state_topic = topic::state_topic(e.site.as_str(), e.subject.as_str(), &e.alert_id);
        match state {
            Some(s) if s.active && !s.resolved => {
                self.send(state_topic, serde_json::to_vec(&s).unwrap_or_default(), true).await
            }
            // Cleared (or resolved without a clear this publisher saw): remove the retained state.
            Some(_) if matches!(e.change, AlertChange::Cleared | AlertChange::Resolved) => {
                self.send(state_topic, Vec::new(), true).await
            }
            _ => Ok(()),
        }
    }

    /// Publishes again the retained state of alerts known from before a restart (the embedded
    /// broker keeps no retained messages across restarts): folds `events` (each alert's events,
    /// oldest first) into the board and sends the retained state of every alert still active.
    /// Returns how many states were sent.
    pub async fn restore_retained(&self, events: &[AlertEvent]) -> Result<usize, PublishError> {
        let states: Vec<riskwatch_core::AlertState> = {
            let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
            for e in events {
                board.apply(e);
            }
            let mut ids: Vec<&str> = events.iter().map(|e| e.alert_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter().filter_map(|id| board.get(id)).filter(|s| s.active && !s.resolved).cloned().collect()
        };
        for s in &states {
            let state_topic = topic::state_topic(s.site.as_str(), s.subject.as_str(), &s.alert_id);
            self.send(state_topic, serde_json::to_vec(s).unwrap_or_default(), true).await?;
        }
        Ok(states.len())
    }

    /// Queues a rejection notice for the gateway that sent it.
    pub async fn publish_rejection(&self, d: &DeadLetter) -> Result<(), PublishError> {
        let site = topic::parse_reading_topic(&d.topic)
            .map(|t| t.site.to_string())
            .or_else(|_| riskwatch_core::wire::forecast::parse_forecast_topic(&d.topic).map(|t| t.site.to_string()))
            .unwrap_or_else(|_| "_unknown".into());
        let payload = serde_json::to_vec(d).unwrap_or_default();
        self.send(topic::rejection_topic(&site), payload, false).await
    }

    /// Reports a refused command to officers on [`topic::COMMAND_ERRORS_TOPIC`].
    pub async fn publish_command_error(&self, payload: Vec<u8>) -> Result<(), PublishError> {
        self.send(topic::COMMAND_ERRORS_TOPIC.to_string(), payload, false).await
    }

    async fn send(&self, topic: String, payload: Vec<u8>, retain: bool) -> Result<(), PublishError> {
        let _queueing = self.queueing.lock().await;
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.unacked.lock().unwrap_or_else(|e| e.into_inner()).push_back((topic.clone(), payload.clone(), retain));
        match self.client.publish(topic, QoS::AtLeastOnce, retain, payload).await {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                self.unacked.lock().unwrap_or_else(|e| e.into_inner()).pop_back();
                self.pending.fetch_sub(1, Ordering::AcqRel);
                Err(PublishError(e))
            }
        }
    }

    /// Messages queued so far. The broker acknowledges QoS 1 messages in order, so once
    /// [`MqttAlertPublisher::acked`] reaches a value `sent` had, everything queued up to then
    /// has been delivered.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Acknowledgements received so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Messages queued but not yet acknowledged by the broker.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits (up to `deadline`) for every queued message to be acknowledged, then disconnects.
    /// Returns the number still unacknowledged (0 when everything was delivered).
    pub async fn close(self, deadline: Duration) -> i64 {
        let waited = tokio::time::timeout(deadline, async {
            while self.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let left = if waited.is_ok() { 0 } else { self.pending() };
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), self.driver).await;
        left
    }
}
