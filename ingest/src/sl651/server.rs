//! The SL 651 TCP source: remote terminal units connect, send frames, and get the centre's
//! acknowledgement of each report once its readings (or its dead letter) are safe downstream.
//!
//! Each read from a station's socket becomes one [`Delivery`]: the frames it completed, as
//! readings and dead letters. The connection reads nothing more until the pipeline confirms
//! that delivery (the embedded wiring: committed to SQLite; `riskwatch ingest`: written to
//! Kafka); then the acknowledgements go out, in frame order. A report whose delivery is never
//! confirmed (the store failed, riskwatch stopped) is never acknowledged, so the station sends
//! it again. Frames that fail the CRC or framing checks are dead-lettered and not acknowledged
//! (their serial number cannot be trusted); a checked report whose body cannot be read is
//! dead-lettered and acknowledged, as a malformed MQTT message is dead-lettered and PUBACKed.
//!
//! The port faces the field network, so a peer gets bounded room ([`Sl651Limits`]): a
//! connection that sends no checked frame within the idle timeout — silent, stalled or
//! trickling inside a frame, or sending only garbage — is closed (what it held of a frame is
//! dead-lettered, as when a station hangs up mid-frame), as is one that reads no
//! acknowledgement for as long; the wait for the pipeline's confirmation does not count.
//! Beyond `max_connections` a new connection is closed at once, and the stations already
//! connected keep reporting.

use super::frame::{encode, Decoded, FrameDecoder, STX};
use super::limits::{RefusalLog, Sl651Limits};
use super::readings::{dead_letter, frame_events, rejected, topic};
use super::report;
use crate::{Delivery, IngestEvent, Message, RegistryHandle};
use riskwatch_core::Timestamp;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info};

/// Counters of a running SL 651 source.
#[derive(Debug, Default)]
pub struct Sl651Stats {
    /// Stations connected now.
    pub connections: AtomicU64,
    /// Checked frames received.
    pub frames: AtomicU64,
    /// Acknowledgements sent.
    pub acks: AtomicU64,
    /// Readings handed to the pipeline.
    pub readings: AtomicU64,
    /// Dead letters handed to the pipeline.
    pub rejected: AtomicU64,
    /// Connections closed at once because `max_connections` were connected.
    pub refused: AtomicU64,
    /// Connections closed because they sent no checked frame (or read no acknowledgement)
    /// within the idle timeout.
    pub idle_closed: AtomicU64,
}

/// The SL 651 source, ready to accept stations.
pub struct Sl651Server {
    listener: std::net::TcpListener,
    registry: RegistryHandle,
    stats: Arc<Sl651Stats>,
    limits: Sl651Limits,
}

impl Sl651Server {
    /// A source accepting on `listener`, mapping stations through the registry `registry`
    /// holds (replaced there when the registry is reloaded), with the default limits.
    pub fn new(listener: std::net::TcpListener, registry: RegistryHandle) -> Self {
        Sl651Server { listener, registry, stats: Arc::default(), limits: Sl651Limits::default() }
    }

    /// The same source with `limits` on its peers.
    pub fn with_limits(self, limits: Sl651Limits) -> Self {
        Sl651Server { limits, ..self }
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<Sl651Stats> {
        Arc::clone(&self.stats)
    }

    /// Accepts stations until `shutdown` turns true; then returns once every connection has
    /// closed (each first waits for the confirmation of what it already handed over).
    pub async fn run(self, tx: mpsc::Sender<Delivery>, shutdown: watch::Receiver<bool>) {
        let (registry, stats, limits) = (self.registry, self.stats, self.limits);
        let refused_stats = Arc::clone(&stats);
        let mut refusals = RefusalLog::default();
        crate::accept::serve_at_most(
            self.listener,
            "the SL 651 source",
            limits.max_connections,
            move |stream, peer| {
                drop(stream);
                refused_stats.refused.fetch_add(1, Ordering::Relaxed);
                refusals.refused(peer, limits.max_connections);
            },
            shutdown,
            move |stream, peer, shutdown| {
                let conn = Connection {
                    peer,
                    registry: Arc::clone(&registry),
                    stats: Arc::clone(&stats),
                    tx: tx.clone(),
                    idle_timeout: limits.idle_timeout,
                };
                conn.serve(stream, shutdown)
            },
        )
        .await;
    }
}

/// One station's connection.
struct Connection {
    peer: SocketAddr,
    registry: RegistryHandle,
    stats: Arc<Sl651Stats>,
    tx: mpsc::Sender<Delivery>,
    idle_timeout: std::time::Duration,
}

impl Connection {
    async fn serve(self, mut stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        info!(peer = %self.peer, "SL 651 station connected");
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        // Moved on each checked frame only: bytes that complete no frame (a stalled or
        // trickling frame, garbage) do not keep a connection open.
        let mut idle_until = Instant::now() + self.idle_timeout;
        loop {
            let n = tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(idle_until) => {
                    self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    info!(
                        peer = %self.peer,
                        held = decoder.buffered(),
                        idle_timeout = ?self.idle_timeout,
                        "SL 651 connection closed: no checked frame within sl651.idle_timeout"
                    );
                    0
                }
                r = stream.read(&mut buf) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "SL 651 connection failed");
                        0
                    }
                },
            };
            if n == 0 {
                // Closed: whatever is left is a cut frame or garbage.
                if let Some(r) = decoder.finish() {
                    let now = Timestamp::now();
                    let msg = self.message(vec![rejected(now, &self.peer.to_string(), r)], now);
                    let _ = self.deliver(vec![msg]).await;
                }
                break;
            }
            decoder.push(&buf[..n]);
            let (messages, acks, framed) = self.decode(&mut decoder);
            if messages.is_empty() {
                continue;
            }
            if !self.deliver(messages).await {
                break;
            }
            // The wait for the pipeline above is not the station's idleness.
            if framed {
                idle_until = Instant::now() + self.idle_timeout;
            }
            let mut out = Vec::new();
            for a in &acks {
                out.extend(encode(a).unwrap_or_default());
            }
            if !out.is_empty() {
                // A peer that does not read its acknowledgements (its window stays shut) is
                // closed after the idle timeout too, not waited for.
                match tokio::time::timeout(self.idle_timeout, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(peer = %self.peer, error = %e, "SL 651 acknowledgement not sent");
                        break;
                    }
                    Err(_) => {
                        self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                        info!(
                            peer = %self.peer,
                            idle_timeout = ?self.idle_timeout,
                            "SL 651 connection closed: it read no acknowledgement within sl651.idle_timeout"
                        );
                        break;
                    }
                }
                self.stats.acks.fetch_add(acks.len() as u64, Ordering::Relaxed);
            }
        }
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        info!(peer = %self.peer, "SL 651 station disconnected");
    }

    /// The frames completed so far, as messages, the acknowledgements they call for, and
    /// whether any of them was a checked frame.
    fn decode(&self, decoder: &mut FrameDecoder) -> (Vec<Message>, Vec<super::frame::Frame>, bool) {
        let now = Timestamp::now();
        let registry = Arc::clone(&self.registry.read().unwrap_or_else(|e| e.into_inner()));
        let (mut messages, mut acks, mut framed) = (Vec::new(), Vec::new(), false);
        for d in decoder.by_ref() {
            match d {
                Decoded::Frame(frame, raw) => {
                    self.stats.frames.fetch_add(1, Ordering::Relaxed);
                    framed = true;
                    let station = frame.station_hex();
                    if frame.down {
                        let dl = dead_letter(
                            now,
                            topic(&station),
                            "sl651_framing",
                            "a down frame (flag 8) from a station; stations send up frames (flag 0)".into(),
                            None,
                            raw,
                        );
                        messages.push(self.message(vec![IngestEvent::DeadLetter(dl)], now));
                        continue;
                    }
                    let events = frame_events(now, &frame, &raw, &registry);
                    if report::is_report(frame.function) && frame.start == STX {
                        if let Some(serial) = report::serial(&frame) {
                            acks.push(report::acknowledgement(&frame, serial, now));
                        }
                    }
                    messages.push(Message { topic: topic(&station), received_at: now, events });
                }
                Decoded::Rejected(r) => {
                    debug!(peer = %self.peer, reason = %r.error, "SL 651 bytes rejected");
                    messages.push(self.message(vec![rejected(now, &self.peer.to_string(), r)], now));
                }
            }
        }
        for ev in messages.iter().flat_map(|m| &m.events) {
            match ev {
                IngestEvent::Readings(r) => self.stats.readings.fetch_add(r.len() as u64, Ordering::Relaxed),
                _ => self.stats.rejected.fetch_add(1, Ordering::Relaxed),
            };
        }
        (messages, acks, framed)
    }

    fn message(&self, events: Vec<IngestEvent>, at: Timestamp) -> Message {
        Message { topic: format!("sl651/peer/{}", self.peer), received_at: at, events }
    }

    /// Hands `messages` to the pipeline and waits for their confirmation; false if they were
    /// dropped unconfirmed (the pipeline stopped or failed).
    async fn deliver(&self, messages: Vec<Message>) -> bool {
        let (confirm, confirmed) = oneshot::channel();
        if self.tx.send(Delivery::new(messages, confirm, None)).await.is_err() {
            return false;
        }
        confirmed.await.is_ok()
    }
}
