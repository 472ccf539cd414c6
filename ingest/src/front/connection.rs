//! One gateway's connection through the front.
//!
//! The gateway's CONNECT goes to the broker behind the front with the longest keep-alive, and
//! the broker's answers come back packet by packet. From then on, each PUBLISH on a reading
//! topic is taken out of the stream and handed to the pipeline, many per read, and its PUBACK
//! (PUBREC for QoS 2) is written only once the pipeline confirmed it (stored), in arrival order;
//! a QoS 0 copy goes on to the broker for live subscribers (the console's charts, third-party
//! dashboards). The front answers the gateway's PINGREQs, and PUBRELs of what it took, itself,
//! and watches the gateway's keep-alive. Every other packet — subscriptions, other topics,
//! acknowledgements of what the broker sends — passes through unchanged.
//!
//! Back-pressure: the gateway's socket is not read while it has `per_gateway` messages
//! unacknowledged, while the front as a whole has its limit of messages in the pipeline
//! (`Shared::in_flight`), while the pipeline's queue is full, or while [`OUT_CAP`] bytes wait
//! to be written to the broker. Its TCP window then closes and the gateway holds the rest, as a
//! broker's `max_inflight_messages` makes it do.

use super::frame;
use super::Shared;
use crate::mqtt::unacked::Unacked;
use crate::Delivery;
use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::{Packet, PingReq, PingResp, PubComp, Publish};
use rumqttc::mqttbytes::{PacketType, QoS};
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, AcquireError, OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Instant;

/// Bytes asked of a socket per read.
const READ: usize = 16 * 1024;
/// Bytes waiting to be written to either side, at most, before the other side is not read.
const OUT_CAP: usize = 256 * 1024;
/// How long a gateway may take to send CONNECT, and the broker to accept the connection.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How often the front pings the broker on a gateway's behalf (its answers are not passed on).
const BROKER_PING: Duration = Duration::from_secs(60);
/// How long a stopping front waits for the pipeline to confirm what it took.
const DRAIN: Duration = Duration::from_secs(10);

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum Ended {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed MQTT packet: {0:?}")]
    Packet(rumqttc::mqttbytes::Error),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("no packet from the gateway within 1.5 × its keep-alive ({0:?})")]
    Silent(Duration),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("the pipeline did not take a delivery; closing so that the gateway sends it again")]
    Unconfirmed,
}

impl From<rumqttc::mqttbytes::Error> for Ended {
    fn from(e: rumqttc::mqttbytes::Error) -> Self {
        Ended::Packet(e)
    }
}

type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Serves one accepted gateway connection until it ends; logs how it ended.
pub(super) async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Delivery>,
    shutdown: watch::Receiver<bool>,
) {
    let stats = &shared.decoder.stats;
    stats.gateways.fetch_add(1, Ordering::Relaxed);
    let ended = run(client, &shared, tx, shutdown).await;
    stats.gateways.fetch_sub(1, Ordering::Relaxed);
    match ended {
        Ok(()) => tracing::debug!(%peer, "gateway connection closed"),
        Err(e @ (Ended::Packet(_) | Ended::Protocol(_))) => {
            tracing::warn!(%peer, error = %e, "gateway connection closed: it broke the MQTT protocol")
        }
        Err(e) => tracing::info!(%peer, error = %e, "gateway connection closed"),
    }
}

async fn run(
    client: TcpStream,
    shared: &Shared,
    tx: mpsc::Sender<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Ended> {
    client.set_nodelay(true)?;
    let (mut cr, cw) = client.into_split();
    let mut crbuf = BytesMut::with_capacity(READ);
    let connect = tokio::time::timeout(HANDSHAKE, async {
        loop {
            if let Some(f) = frame::next(&crbuf, shared.max_packet)? {
                return Ok::<_, Ended>(f);
            }
            crbuf.reserve(READ);
            if cr.read_buf(&mut crbuf).await? == 0 {
                return Err(Ended::Protocol("closed before CONNECT"));
            }
        }
    })
    .await
    .map_err(|_| Ended::Timeout("the gateway's CONNECT"))??;
    if connect.kind != PacketType::Connect {
        return Err(Ended::Protocol("the first packet was not CONNECT"));
    }
    let mut connect = crbuf.split_to(connect.len);
    let keep_alive = frame::take_keep_alive(&mut connect).map(|s| Duration::from_secs(u64::from(s)));
    let upstream = tokio::time::timeout(HANDSHAKE, TcpStream::connect(shared.upstream))
        .await
        .map_err(|_| Ended::Timeout("the embedded broker"))??;
    upstream.set_nodelay(true)?;
    let (ur, uw) = upstream.into_split();
    let mut g = Gateway {
        shared,
        cr,
        cw,
        ur,
        uw,
        crbuf,
        cwbuf: BytesMut::new(),
        urbuf: BytesMut::new(),
        uwbuf: connect,
        unacked: Unacked::default(),
        exactly_once: HashSet::new(),
        batch: Vec::new(),
        acquiring: None,
        held: None,
        tx: Some(tx),
        connected: false,
        closing: false,
        disconnected: false,
        at_limit: false,
        client_open: true,
        upstream_open: true,
        keep_alive: keep_alive.filter(|k| !k.is_zero()),
        last_heard: Instant::now(),
    };
    g.run(&mut shutdown).await
}

/// The state of one connection.
struct Gateway<'a> {
    shared: &'a Shared,
    cr: OwnedReadHalf,
    cw: OwnedWriteHalf,
    ur: OwnedReadHalf,
    uw: OwnedWriteHalf,
    /// Read from the gateway, not yet handled.
    crbuf: BytesMut,
    /// To write to the gateway: the broker's packets, our PUBACKs and PINGRESPs.
    cwbuf: BytesMut,
    /// Read from the broker, not yet passed on.
    urbuf: BytesMut,
    /// To write to the broker: the gateway's packets the front does not take.
    uwbuf: BytesMut,
    unacked: Unacked,
    /// Packet ids of QoS 2 readings taken, until the gateway's PUBREL.
    exactly_once: HashSet<u16>,
    /// Readings taken from the gateway, not yet handed to the pipeline.
    batch: Vec<Publish>,
    /// Waiting for room under the front's limit for `batch`.
    acquiring: Option<Acquiring>,
    /// Handed over but waiting for room in the pipeline's queue.
    held: Option<Delivery>,
    /// `None` once stopping.
    tx: Option<mpsc::Sender<Delivery>>,
    /// The broker accepted the CONNECT (and the gateway was told).
    connected: bool,
    /// Ending: write what is owed, read nothing more.
    closing: bool,
    /// The gateway sent DISCONNECT: nothing after it counts.
    disconnected: bool,
    /// Stopped taking at the connection's limit (counted once per stop).
    at_limit: bool,
    client_open: bool,
    upstream_open: bool,
    keep_alive: Option<Duration>,
    last_heard: Instant,
}

impl Gateway<'_> {
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), Ended> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_until: Option<Instant> = None;
        let mut pinged = Instant::now();
        loop {
            self.relay_broker_packets()?;
            self.take_gateway_packets()?;
            self.hand_over()?;
            for buf in [&mut self.crbuf, &mut self.urbuf, &mut self.cwbuf, &mut self.uwbuf] {
                release_if_empty(buf);
            }
            let owed = !self.cwbuf.is_empty() || (self.upstream_open && !self.uwbuf.is_empty());
            if !owed {
                if self.closing || !self.upstream_open {
                    return Ok(());
                }
                // A gateway that is gone still has everything it sent before handed over.
                if !self.client_open && !self.taking() {
                    return Ok(());
                }
                if drain_until.is_some() && self.unacked.is_empty() {
                    return Ok(());
                }
            }
            let reading_gateway = self.reading_gateway();
            let reading_broker = self.upstream_open && self.cwbuf.len() < OUT_CAP;
            tokio::select! {
                biased;
                _ = shutdown.changed(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + DRAIN);
                    // Nothing more goes to the pipeline; what it has is still acknowledged.
                    self.tx = None;
                    self.held = None;
                    self.acquiring = None;
                    self.batch.clear();
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                    return Ok(());
                }
                confirmed = self.unacked.front_confirmed() => {
                    if confirmed.is_err() {
                        return Err(Ended::Unconfirmed);
                    }
                    if !self.unacked.take_confirmed(&mut self.cwbuf)? {
                        self.closing = true;
                    }
                }
                permit = room(&mut self.acquiring), if self.acquiring.is_some() => {
                    self.acquiring = None;
                    match permit {
                        Ok(permit) => self.deliver(permit),
                        Err(_) => self.closing = true,
                    }
                }
                slot = queue_slot(self.tx.clone()), if self.held.is_some() && self.tx.is_some() => match slot {
                    Ok(slot) => {
                        slot.send(self.held.take().expect("held"));
                    }
                    Err(_) => self.closing = true,
                },
                n = self.cw.write(&self.cwbuf), if !self.cwbuf.is_empty() => {
                    self.cwbuf.advance(n?);
                }
                n = self.uw.write(&self.uwbuf), if self.upstream_open && !self.uwbuf.is_empty() => match n {
                    Ok(n) => self.uwbuf.advance(n),
                    Err(_) => self.upstream_open = false,
                },
                n = read(&mut self.cr, &mut self.crbuf), if reading_gateway => {
                    if n? == 0 {
                        self.client_open = false;
                    }
                    self.last_heard = Instant::now();
                }
                n = read(&mut self.ur, &mut self.urbuf), if reading_broker => {
                    if n.unwrap_or(0) == 0 {
                        self.upstream_open = false;
                    }
                }
                _ = tick.tick() => {
                    if !reading_gateway {
                        // Not reading: whatever the gateway sends waits in its socket.
                        self.last_heard = Instant::now();
                    }
                    if pinged.elapsed() >= BROKER_PING {
                        PingReq.write(&mut self.uwbuf)?;
                        pinged = Instant::now();
                    }
                    if let Some(k) = self.keep_alive {
                        if self.last_heard.elapsed() > k + k / 2 {
                            return Err(Ended::Silent(k));
                        }
                    }
                }
            }
        }
    }

    /// Whether readings received are still on their way to the pipeline.
    fn taking(&self) -> bool {
        !self.batch.is_empty()
            || self.acquiring.is_some()
            || self.held.is_some()
            || (!self.disconnected
                && self.tx.is_some()
                && matches!(frame::next(&self.crbuf, self.shared.max_packet), Ok(Some(_))))
    }

    fn reading_gateway(&self) -> bool {
        self.connected
            && self.client_open
            && !self.closing
            && self.tx.is_some()
            && self.batch.is_empty()
            && self.acquiring.is_none()
            && self.held.is_none()
            && self.unacked.messages() < self.shared.per_gateway
            && self.uwbuf.len() < OUT_CAP
    }

    /// Moves the broker's complete packets to the gateway's write buffer.
    fn relay_broker_packets(&mut self) -> Result<(), Ended> {
        while self.cwbuf.len() < OUT_CAP {
            let Some(f) = frame::next(&self.urbuf, self.shared.max_packet)? else { break };
            let pkt = self.urbuf.split_to(f.len);
            match f.kind {
                // The front answers the gateway's pings itself; these answer its own.
                PacketType::PingResp => {}
                PacketType::ConnAck if !self.connected => {
                    if frame::connack_code(&pkt) == Some(0) {
                        self.connected = true;
                    } else {
                        self.closing = true;
                    }
                    self.cwbuf.extend_from_slice(&pkt);
                }
                _ => self.cwbuf.extend_from_slice(&pkt),
            }
        }
        Ok(())
    }

    /// Takes the gateway's complete packets, up to the limits: readings into the batch, pings
    /// answered, the rest on to the broker.
    fn take_gateway_packets(&mut self) -> Result<(), Ended> {
        if !self.connected
            || self.closing
            || self.disconnected
            || self.tx.is_none()
            || self.acquiring.is_some()
            || self.held.is_some()
        {
            return Ok(());
        }
        while let Some(f) = frame::next(&self.crbuf, self.shared.max_packet)? {
            if self.unacked.messages() + self.batch.len() >= self.shared.per_gateway {
                // Messages wait in the socket until the store catches up.
                if !self.at_limit {
                    self.at_limit = true;
                    self.shared.decoder.stats.held_by_gateway_limit.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            self.at_limit = false;
            if self.uwbuf.len() >= OUT_CAP {
                break;
            }
            match f.kind {
                PacketType::Publish if self.shared.takes(&self.crbuf[..f.len]) => {
                    let mut pkt = self.crbuf.split_to(f.len);
                    let Packet::Publish(p) = Packet::read(&mut pkt, self.shared.max_packet)? else {
                        return Err(Ended::Protocol("a PUBLISH that does not decode as one"));
                    };
                    // For live subscribers: a copy without delivery guarantees.
                    let mut copy = Publish::from_bytes(p.topic.clone(), QoS::AtMostOnce, p.payload.clone());
                    copy.retain = p.retain;
                    copy.write(&mut self.uwbuf)?;
                    if p.qos == QoS::ExactlyOnce {
                        self.exactly_once.insert(p.pkid);
                    }
                    self.batch.push(p);
                }
                PacketType::PubRel if self.releases_ours(&self.crbuf[..f.len]) => {
                    let pkid = u16::from_be_bytes([self.crbuf[2], self.crbuf[3]]);
                    self.crbuf.advance(f.len);
                    self.exactly_once.remove(&pkid);
                    PubComp::new(pkid).write(&mut self.cwbuf)?;
                }
                PacketType::PingReq => {
                    self.crbuf.advance(f.len);
                    PingResp.write(&mut self.cwbuf)?;
                }
                PacketType::Connect => return Err(Ended::Protocol("a second CONNECT")),
                kind => {
                    self.uwbuf.extend_from_slice(&self.crbuf[..f.len]);
                    self.crbuf.advance(f.len);
                    if kind == PacketType::Disconnect {
                        self.disconnected = true;
                        self.client_open = false;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `pkt`, a PUBREL, releases a QoS 2 reading the front took.
    fn releases_ours(&self, pkt: &[u8]) -> bool {
        pkt.len() == 4 && self.exactly_once.contains(&u16::from_be_bytes([pkt[2], pkt[3]]))
    }

    /// Hands the batch to the pipeline once there is room under the front's limit.
    fn hand_over(&mut self) -> Result<(), Ended> {
        if self.batch.is_empty() || self.acquiring.is_some() || self.held.is_some() || self.tx.is_none() {
            return Ok(());
        }
        let n = u32::try_from(self.batch.len()).unwrap_or(u32::MAX);
        match Arc::clone(&self.shared.in_flight).try_acquire_many_owned(n) {
            Ok(permit) => self.deliver(permit),
            Err(TryAcquireError::NoPermits) => {
                self.shared.decoder.stats.held_by_total_limit.fetch_add(1, Ordering::Relaxed);
                self.acquiring = Some(Box::pin(Arc::clone(&self.shared.in_flight).acquire_many_owned(n)))
            }
            Err(TryAcquireError::Closed) => self.closing = true,
        }
        Ok(())
    }

    fn deliver(&mut self, permit: OwnedSemaphorePermit) {
        let confirm = self.unacked.push(&self.batch);
        let delivery = self.shared.decoder.delivery(std::mem::take(&mut self.batch), confirm, Some(permit));
        let Some(tx) = &self.tx else { return };
        match tx.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(d)) => {
                self.shared.decoder.stats.held_by_pipeline.fetch_add(1, Ordering::Relaxed);
                self.held = Some(d)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.closing = true,
        }
    }
}

/// Reads what the socket holds into `buf` (waiting for at least one byte). Room in `buf` is
/// made only once the socket is readable, so an idle connection holds no buffer.
async fn read(r: &mut OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        r.readable().await?;
        buf.reserve(READ);
        match r.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

/// Gives back an empty buffer's memory (an idle connection keeps none; a busy one allocates a
/// read's worth again, cheaply).
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Waits for the permit being acquired.
async fn room(acquiring: &mut Option<Acquiring>) -> Result<OwnedSemaphorePermit, AcquireError> {
    match acquiring {
        Some(a) => a.await,
        None => std::future::pending().await,
    }
}

/// Waits for room in the pipeline's queue.
async fn queue_slot(
    tx: Option<mpsc::Sender<Delivery>>,
) -> Result<mpsc::OwnedPermit<Delivery>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve_owned().await,
        None => std::future::pending().await,
    }
}
