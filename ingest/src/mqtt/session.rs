//! One connection to the broker: MQTT 3.1.1 over TCP or TLS, on a socket this module owns,
//! spoken with rumqttc's packet codec (`rumqttc::mqttbytes`).
//!
//! Why not rumqttc's event loop: it writes and flushes the socket once per acknowledgement it is
//! asked for, so a gateway publishing one reading per message cost one `writev` per reading, and
//! every acknowledgement travelled through two tasks and a channel. Here:
//! - one `read` takes whatever the socket holds (up to [`READ_CHUNK`] bytes, hundreds of
//!   single-reading messages), and every complete message in it goes downstream as one
//!   [`Delivery`]; a steady stream of small segments is read once per coalescing period
//!   instead of segment by segment ([`super::coalesce`]);
//! - deliveries are confirmed downstream in order (after the store committed them, or Kafka
//!   took them); the PUBACKs of every delivery confirmed by then go out in **one write**, in
//!   arrival order as MQTT requires;
//! - overload becomes back-pressure: at most `max_unacked` messages are handed downstream and
//!   not yet acknowledged; at that many, or while the next stage's queue is full, the socket is
//!   not read (beyond one [`READ_CHUNK`] already read), so the broker holds the rest (its own
//!   in-flight window and queue limits apply), never this process's memory.

use super::coalesce::Coalesce;
use super::decode::Decoder;
use super::delivery::Delivery;
use super::unacked::Unacked;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Disconnect, Packet, PingReq, Publish, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::tokio_rustls::TlsConnector;
use rumqttc::{TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes asked of the socket per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long connecting, the broker's CONNACK and SUBACK may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP connect or socket I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS set-up (certificates, server name) or handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker answered CONNECT with a refusal.
    #[error("the broker refused the connection: {0}")]
    Refused(String),
    /// The broker refused a subscription (for example an ACL denies the filter).
    #[error("the broker refused the subscription to {0}")]
    SubscriptionRefused(String),
    /// A packet the codec cannot read, or one too large.
    #[error("unreadable MQTT packet from the broker: {0:?}")]
    Packet(rumqttc::mqttbytes::Error),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// No answer to a ping within the keep-alive interval.
    #[error("no answer from the broker for {0:?}")]
    Silent(Duration),
    /// A step of the handshake took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Something else the broker did that MQTT does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A delivery was dropped unconfirmed downstream: its messages must not be acknowledged,
    /// and neither may later ones (acknowledgements go out in order), so the connection is
    /// given up and the broker re-delivers them.
    #[error("a delivery was not confirmed downstream; reconnecting so the broker re-delivers it")]
    Unconfirmed,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach the broker and what to ask of it.
pub(super) struct Dial<'a> {
    pub host: &'a str,
    pub port: u16,
    pub client_id: &'a str,
    pub clean_session: bool,
    pub keep_alive: Duration,
    pub credentials: Option<(&'a str, &'a str)>,
    pub transport: Option<&'a Transport>,
    pub filters: &'a [String],
    pub max_packet_bytes: usize,
    /// Receive coalescing's read period ([`super::coalesce`]); zero reads every segment.
    pub read_coalesce: Duration,
}

/// An open, subscribed connection.
pub(super) struct Link {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet: usize,
    keep_alive: Duration,
    /// Messages that arrived before the SUBACK.
    early: Vec<Publish>,
    /// Timed reads of a steady stream (plain TCP with a non-zero period only).
    coalesce: Option<Coalesce>,
    /// Whether the broker kept our session (and so our subscriptions).
    pub session_present: bool,
}

impl Link {
    /// Connects, sends CONNECT and, unless the broker kept our session, subscribes.
    pub async fn open(d: &Dial<'_>) -> Result<Link, LinkError> {
        let (stream, coalesce) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_stream(d))
            .await
            .map_err(|_| LinkError::Timeout("the connection to the broker"))??;
        let mut link = Link {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(4096),
            max_packet: d.max_packet_bytes,
            keep_alive: d.keep_alive,
            early: Vec::new(),
            coalesce,
            session_present: false,
        };
        let mut connect = Connect::new(d.client_id);
        connect.keep_alive = d.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16;
        connect.clean_session = d.clean_session;
        if let Some((u, p)) = d.credentials {
            connect.set_login(u, p);
        }
        connect.write(&mut link.wbuf).map_err(LinkError::Packet)?;
        link.send().await?;
        let ack = match link.handshake_packet("the broker's CONNACK").await? {
            Packet::ConnAck(ack) => ack,
            other => return Err(LinkError::Protocol(format!("expected CONNACK, got {other:?}"))),
        };
        if ack.code != rumqttc::mqttbytes::v4::ConnectReturnCode::Success {
            return Err(LinkError::Refused(format!("{:?}", ack.code)));
        }
        link.session_present = ack.session_present && !d.clean_session;
        if !link.session_present && !d.filters.is_empty() {
            link.subscribe(d.filters).await?;
        }
        Ok(link)
    }

    async fn subscribe(&mut self, filters: &[String]) -> Result<(), LinkError> {
        const PKID: u16 = 1;
        let mut sub =
            Subscribe::new_many(filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)));
        sub.pkid = PKID;
        sub.write(&mut self.wbuf).map_err(LinkError::Packet)?;
        self.send().await?;
        loop {
            match self.handshake_packet("the broker's SUBACK").await? {
                Packet::SubAck(ack) if ack.pkid == PKID => {
                    if let Some(i) = ack.return_codes.iter().position(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        return Err(LinkError::SubscriptionRefused(filters.get(i).cloned().unwrap_or_default()));
                    }
                    return Ok(());
                }
                // A session the broker had after all, or retained messages: keep them.
                Packet::Publish(p) => self.early.push(p),
                _ => {}
            }
        }
    }

    /// The next packet, within the handshake timeout.
    async fn handshake_packet(&mut self, what: &'static str) -> Result<Packet, LinkError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                if let Some(p) = self.next_packet()? {
                    return Ok(p);
                }
                self.fill().await?;
            }
        })
        .await
        .map_err(|_| LinkError::Timeout(what))?
    }

    /// Reads what the socket holds (waiting for at least one byte).
    async fn fill(&mut self) -> Result<(), LinkError> {
        self.rbuf.reserve(READ_CHUNK);
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(LinkError::Closed);
        }
        Ok(())
    }

    /// [`Link::fill`] once subscribed: reads close together start receive coalescing (then
    /// the socket wakes this read only once [`super::coalesce::LOWAT`] bytes wait).
    async fn fill_serving(&mut self) -> Result<(), LinkError> {
        self.fill().await?;
        if let Some(c) = &mut self.coalesce {
            c.read_at(Instant::now())?;
        }
        Ok(())
    }

    /// While coalescing a steady stream: when the next timed read is due.
    fn read_due(&self) -> Option<Instant> {
        self.coalesce.as_ref().and_then(Coalesce::due)
    }

    /// The timed read of a steady stream: whatever the socket holds, without waiting; the
    /// bytes read.
    fn timed_fill(&mut self) -> Result<usize, LinkError> {
        let Some(c) = &mut self.coalesce else { return Ok(0) };
        match c.read(&mut self.rbuf, READ_CHUNK) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(LinkError::Closed),
            r => Ok(r?),
        }
    }

    /// The next complete packet in the read buffer, if there is one.
    fn next_packet(&mut self) -> Result<Option<Packet>, LinkError> {
        match Packet::read(&mut self.rbuf, self.max_packet) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(LinkError::Packet(e)),
        }
    }

    /// Writes out everything encoded into the write buffer.
    async fn send(&mut self) -> Result<(), LinkError> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends DISCONNECT, best effort.
    pub async fn disconnect(mut self) {
        if Disconnect.write(&mut self.wbuf).is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.send()).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.stream.shutdown()).await;
    }
}

async fn connect_stream(d: &Dial<'_>) -> Result<(Box<dyn Stream>, Option<Coalesce>), LinkError> {
    let tcp = TcpStream::connect((d.host, d.port)).await?;
    // Acknowledgements go out at once, not after the previous write's TCP acknowledgement.
    tcp.set_nodelay(true)?;
    match d.transport {
        None | Some(Transport::Tcp) => {
            let coalesce = Coalesce::new(&tcp, d.read_coalesce)?;
            Ok((Box::new(tcp), coalesce))
        }
        Some(Transport::Tls(tls)) => {
            let config = rustls_config(tls)?;
            let name = ServerName::try_from(d.host.to_string()).map_err(|e| LinkError::Tls(e.to_string()))?;
            let stream =
                TlsConnector::from(config).connect(name, tcp).await.map_err(|e| LinkError::Tls(e.to_string()))?;
            Ok((Box::new(stream), None))
        }
        #[allow(unreachable_patterns)]
        Some(_) => Err(LinkError::Tls("only TCP and TLS (rustls) transports are supported for ingest".into())),
    }
}

/// A rustls client configuration from PEM certificates (as `riskwatch_service::mqtt_tls`
/// builds them) or a ready one.
fn rustls_config(tls: &TlsConfiguration) -> Result<Arc<ClientConfig>, LinkError> {
    let err = |e: &dyn std::fmt::Display| LinkError::Tls(e.to_string());
    match tls {
        TlsConfiguration::Rustls(c) => Ok(Arc::clone(c)),
        TlsConfiguration::Simple { ca, alpn, client_auth } => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
            }
            if roots.is_empty() {
                return Err(LinkError::Tls("no CA certificate in the CA file".into()));
            }
            let builder = ClientConfig::builder().with_root_certificates(roots);
            let mut config = match client_auth {
                Some((cert, key)) => {
                    let chain =
                        CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>().map_err(|e| err(&e))?;
                    if chain.is_empty() {
                        return Err(LinkError::Tls("no certificate in the client certificate file".into()));
                    }
                    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| err(&e))?;
                    builder.with_client_auth_cert(chain, key).map_err(|e| err(&e))?
                }
                None => builder.with_no_client_auth(),
            };
            if let Some(alpn) = alpn {
                config.alpn_protocols.extend_from_slice(alpn);
            }
            Ok(Arc::new(config))
        }
        #[allow(unreachable_patterns)]
        _ => Err(LinkError::Tls("only rustls TLS configurations are supported for ingest".into())),
    }
}

/// How a served connection ended.
pub(super) enum Ended {
    /// Asked to stop, or the next stage is gone: acknowledge what gets confirmed, then
    /// disconnect ([`Drain::finish`]).
    Stop(Drain),
    /// The connection failed; reconnect.
    Lost(LinkError),
}

/// A connection being wound down.
pub(super) struct Drain {
    link: Link,
    unacked: Unacked,
}

impl Drain {
    /// Acknowledges deliveries as they are confirmed (up to `within`), then disconnects.
    pub async fn finish(mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.unacked.is_empty() {
            match tokio::time::timeout_at(deadline, self.unacked.front_confirmed()).await {
                Ok(Ok(())) => {
                    let more = self.unacked.take_confirmed(&mut self.link.wbuf);
                    if self.link.send().await.is_err() || !matches!(more, Ok(true)) {
                        break;
                    }
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if !self.unacked.is_empty() {
            tracing::warn!(
                unconfirmed = self.unacked.messages(),
                "messages not confirmed downstream; left unacknowledged for the broker to re-deliver"
            );
        }
        self.link.disconnect().await;
    }
}

/// Serves a subscribed connection until it fails, `shutdown` turns true or `tx` closes.
pub(super) async fn serve(
    mut link: Link,
    decode: &Decoder,
    tx: &mpsc::Sender<Delivery>,
    shutdown: &mut watch::Receiver<bool>,
    max_unacked: usize,
) -> Ended {
    let mut unacked = Unacked::default();
    let mut held: Option<Delivery> = None;
    let mut batch: Vec<Publish> = std::mem::take(&mut link.early);
    let mut last_sent = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(link.keep_alive));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    macro_rules! fail {
        ($e:expr) => {
            return Ended::Lost($e)
        };
    }
    loop {
        // Take the complete packets read so far, up to the unacknowledged limit (the rest stays
        // in the buffer until confirmations make room).
        while held.is_none() && unacked.messages() + batch.len() < max_unacked {
            match link.next_packet() {
                Ok(Some(Packet::Publish(p))) => batch.push(p),
                Ok(Some(Packet::PingResp)) => {}
                Ok(Some(Packet::Disconnect)) => fail!(LinkError::Closed),
                Ok(Some(other)) => tracing::debug!(packet = ?other, "MQTT packet ignored"),
                Ok(None) => break,
                Err(e) => fail!(e),
            }
        }
        // Hand them over (unless the next stage is still full from last time).
        if held.is_none() && !batch.is_empty() {
            let confirm = unacked.push(&batch);
            let delivery = decode.delivery(std::mem::take(&mut batch), confirm, None);
            match tx.try_send(delivery) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(d)) => held = Some(d),
                Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Stop(Drain { link, unacked }),
            }
        }
        let reading = held.is_none() && unacked.messages() < max_unacked;
        if !reading {
            // The broker's answer to a ping may sit unread behind held messages.
            ping_sent = None;
        }
        let read_due = link.read_due();
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ended::Stop(Drain { link, unacked }),
            confirmed = unacked.front_confirmed() => {
                if confirmed.is_err() {
                    fail!(LinkError::Unconfirmed);
                }
                let more = match unacked.take_confirmed(&mut link.wbuf) {
                    Ok(more) => more,
                    Err(e) => fail!(LinkError::Packet(e)),
                };
                if let Err(e) = link.send().await {
                    fail!(e);
                }
                last_sent = Instant::now();
                if !more {
                    fail!(LinkError::Unconfirmed);
                }
            }
            permit = tx.reserve(), if held.is_some() => match permit {
                Ok(permit) => permit.send(held.take().expect("held")),
                Err(_) => return Ended::Stop(Drain { link, unacked }),
            },
            filled = link.fill_serving(), if reading => {
                if let Err(e) = filled {
                    fail!(e);
                }
                ping_sent = None;
            }
            // Lazy: select! builds every branch's future each turn, and outside a stream there is
            // no timer to arm.
            _ = async { if let Some(due) = read_due { tokio::time::sleep_until(due).await } }, if reading && read_due.is_some() => {
                match link.timed_fill() {
                    Ok(0) => {}
                    Ok(_) => {
                        ping_sent = None;
                        decode.stats.coalesced_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => fail!(e),
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(sent) = ping_sent {
                    if now.duration_since(sent) > link.keep_alive {
                        fail!(LinkError::Silent(link.keep_alive));
                    }
                }
                if now.duration_since(last_sent) >= link.keep_alive / 2 {
                    if let Err(e) = PingReq.write(&mut link.wbuf) {
                        fail!(LinkError::Packet(e));
                    }
                    if let Err(e) = link.send().await {
                        fail!(e);
                    }
                    last_sent = now;
                    if reading && ping_sent.is_none() {
                        ping_sent = Some(now);
                    }
                }
            }
        }
    }
}
