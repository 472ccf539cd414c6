//! The SL 651 source's limits on its field-facing port, over real TCP sockets: a silent
//! connection, a half frame that stalls, one that trickles and one sending only garbage are closed
//! after `idle_timeout` while other stations keep reporting; the wait for the pipeline's
//! confirmation is not idleness; beyond `max_connections` a new connection is closed at once
//! and the stations already connected keep reporting.

use riskwatch_core::{Registry, Timestamp};
use riskwatch_ingest::sl651::frame::encode;
use riskwatch_ingest::sl651::report::{self, Element, Outgoing};
use riskwatch_ingest::sl651::{Decoded, Frame, FrameDecoder};
use riskwatch_ingest::{Delivery, IngestEvent, Sl651Limits, Sl651Server, Sl651Stats};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"

[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
sl651 = { station = "0012345678", element = "39" }

[[sensors]]
id = "wuhan-wl"
site = "hankou"
kind = "water_level"
unit = "m"
sl651 = { station = "0087654321", element = "39" }
"#;

const HANKOU: [u8; 5] = [0x00, 0x12, 0x34, 0x56, 0x78];
const WUHAN: [u8; 5] = [0x00, 0x87, 0x65, 0x43, 0x21];

/// Dead letters the pipeline took: (reason, raw bytes).
type DeadLetters = Arc<Mutex<Vec<(&'static str, Vec<u8>)>>>;

/// A running source and the test's end of its pipeline.
struct Centre {
    addr: SocketAddr,
    stats: Arc<Sl651Stats>,
    dead: DeadLetters,
    _shutdown: watch::Sender<bool>,
}

impl Centre {
    /// A source with `limits`; its deliveries are confirmed at once, or, with `held`, sent
    /// there for the test to confirm.
    fn start(limits: Sl651Limits, held: Option<mpsc::UnboundedSender<Delivery>>) -> Centre {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(RwLock::new(Arc::new(Registry::from_toml(REGISTRY).unwrap())));
        let server = Sl651Server::new(listener, registry).with_limits(limits);
        let stats = server.stats();
        let (tx, mut rx) = mpsc::channel::<Delivery>(16);
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(server.run(tx, shutdown_rx));
        let dead = DeadLetters::default();
        let seen = Arc::clone(&dead);
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                for ev in d.messages.iter().flat_map(|m| &m.events) {
                    if let IngestEvent::DeadLetter(dl) = ev {
                        seen.lock().unwrap().push((dl.reason, dl.raw.clone()));
                    }
                }
                match &held {
                    Some(h) => {
                        let _ = h.send(d);
                    }
                    None => d.confirm(),
                }
            }
        });
        Centre { addr, stats, dead, _shutdown: shutdown }
    }
}

fn limits(idle_ms: u64, max_connections: usize) -> Sl651Limits {
    Sl651Limits { idle_timeout: Duration::from_millis(idle_ms), max_connections }
}

/// A station's end of a connection.
struct Station {
    stream: TcpStream,
    station: [u8; 5],
    serial: u16,
    decoder: FrameDecoder,
}

impl Station {
    async fn connect(centre: &Centre, station: [u8; 5]) -> Station {
        let stream = TcpStream::connect(centre.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Station { stream, station, serial: 0, decoder: FrameDecoder::new() }
    }

    /// The bytes of the next report (a water level).
    fn next_report(&mut self) -> Vec<u8> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let at = Timestamp::parse_rfc3339("2020-07-12T08:00:00+08:00").unwrap();
        let out = Outgoing {
            serial: self.serial,
            sent_at: at,
            station: self.station,
            category: 0x48,
            observed_at: at,
            elements: vec![Element::number(0x39, Some(28.77), 4, 3).unwrap()],
        };
        encode(&out.frame(1, 0, 0x32)).unwrap()
    }

    /// Sends a report and waits up to `within` for its acknowledgement.
    async fn report(&mut self, within: Duration) -> io::Result<Frame> {
        let bytes = self.next_report();
        self.stream.write_all(&bytes).await?;
        self.acknowledgement(within).await
    }

    async fn acknowledgement(&mut self, within: Duration) -> io::Result<Frame> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 512];
        loop {
            for d in self.decoder.by_ref() {
                if let Decoded::Frame(f, _) = d {
                    if f.down && report::serial(&f) == Some(self.serial) {
                        return Ok(f);
                    }
                }
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no acknowledgement"))??;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the centre closed the connection"));
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Whether the centre closes the connection within `within` (acknowledgements read on the
    /// way are dropped).
    async fn closed_within(&mut self, within: Duration) -> bool {
        closed_within(&mut self.stream, within).await
    }
}

async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

const ACK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_idle_timeout_while_another_station_keeps_reporting() {
    let centre = Centre::start(limits(1000, 10), None);
    let mut silent = Station::connect(&centre, HANKOU).await;
    silent.report(ACK).await.expect("its report is acknowledged before it falls silent");
    let silent_since = Instant::now();
    let mut busy = Station::connect(&centre, WUHAN).await;
    let deadline = silent_since + Duration::from_secs(10);
    let mut busy_reports = 0;
    loop {
        busy.report(ACK).await.expect("the busy station's reports go through");
        busy_reports += 1;
        if silent.closed_within(Duration::from_millis(250)).await {
            break;
        }
        assert!(Instant::now() < deadline, "the silent connection was not closed within 10 s");
    }
    let silent_for = silent_since.elapsed();
    assert!(silent_for >= Duration::from_millis(900), "closed after {silent_for:?}, before the idle timeout");
    assert!(busy_reports >= 3, "{busy_reports}");
    busy.report(ACK).await.expect("the busy station is still served after the silent one was closed");
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 1);
    assert_eq!(centre.stats.acks.load(Ordering::Relaxed), 1 + busy_reports + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_half_frame_a_trickling_frame_and_garbage_without_frames_are_closed() {
    let centre = Centre::start(limits(1000, 10), None);
    // Half a report, then nothing.
    let mut stalled = Station::connect(&centre, HANKOU).await;
    let report = stalled.next_report();
    let half = report[..report.len() / 2].to_vec();
    stalled.stream.write_all(&half).await.unwrap();
    let since = Instant::now();
    assert!(stalled.closed_within(Duration::from_secs(10)).await, "a stalled half frame keeps its connection");
    assert!(since.elapsed() >= Duration::from_millis(900), "closed after {:?}", since.elapsed());

    // A report one byte every 100 ms: bytes arrive, but no frame completes within 1 s.
    let mut trickling = Station::connect(&centre, WUHAN).await;
    let report = trickling.next_report();
    let mut sent = 0;
    let closed = loop {
        if sent == report.len() {
            break false;
        }
        if trickling.stream.write_all(&report[sent..sent + 1]).await.is_err() {
            break true;
        }
        sent += 1;
        if closed_within(&mut trickling.stream, Duration::from_millis(100)).await {
            break true;
        }
    };
    assert!(closed, "a connection trickling a frame byte by byte was never closed");
    assert!(sent < report.len(), "closed only after the whole frame ({sent} bytes)");
    assert!(sent >= 8, "closed after {sent} bytes (~{} ms), before the idle timeout", sent * 100);
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 2);
    assert_eq!(centre.stats.acks.load(Ordering::Relaxed), 0);

    // What each held of its frame is a dead letter, as when a station hangs up mid-frame.
    let deadline = Instant::now() + Duration::from_secs(5);
    while centre.dead.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "dead letters: {:?}", centre.dead.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = centre.dead.lock().unwrap().clone();
    assert_eq!(dead[0], ("sl651_framing", half));
    assert_eq!(dead[1], ("sl651_framing", report[..sent].to_vec()));

    // Garbage, 4 KiB every 200 ms: each chunk fills the decoder and is dead-lettered at once
    // (a delivery each), but none is a frame.
    let mut garbage = Station::connect(&centre, WUHAN).await;
    let mut chunks = 0;
    let closed = loop {
        if chunks == 50 {
            break false;
        }
        if garbage.stream.write_all(&[0x55; 4096]).await.is_err() {
            break true;
        }
        chunks += 1;
        if closed_within(&mut garbage.stream, Duration::from_millis(200)).await {
            break true;
        }
    };
    assert!(closed, "a connection sending only garbage was never closed ({chunks} chunks of 4 KiB)");
    assert!(chunks >= 4, "closed after {chunks} chunks (~{} ms), before the idle timeout", chunks * 200);
    let garbage_letters = centre.dead.lock().unwrap().len() - 2;
    assert!(garbage_letters >= 3, "the garbage was dead-lettered as it came: {garbage_letters} dead letters");
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_acknowledgements_is_closed() {
    let centre = Centre::start(limits(1000, 10), None);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(centre.addr).await.unwrap();
    let mut peer = Station { stream, station: HANKOU, serial: 0, decoder: FrameDecoder::new() };
    // Reports, a thousand at a time, never reading: once the acknowledgements fill both
    // socket buffers the centre's write waits, and so does this peer's.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batch: Vec<u8> = (0..1000).flat_map(|_| peer.next_report()).collect();
        match tokio::time::timeout(Duration::from_millis(500), peer.stream.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => break,
        }
        assert!(Instant::now() < deadline, "the centre's acknowledgements never backed up");
    }
    // Without reading: the centre gives up on the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while centre.stats.connections.load(Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "a peer that reads nothing held its connection for 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_pipeline_to_confirm_a_report_is_not_idleness() {
    let (held_tx, mut held) = mpsc::unbounded_channel();
    let centre = Centre::start(limits(500, 10), Some(held_tx));
    let mut station = Station::connect(&centre, HANKOU).await;
    let bytes = station.next_report();
    station.stream.write_all(&bytes).await.unwrap();
    let delivery = tokio::time::timeout(ACK, held.recv()).await.expect("the report reaches the pipeline").unwrap();
    // The store is slow: three idle timeouts pass before it confirms.
    assert!(
        !station.closed_within(Duration::from_millis(1500)).await,
        "the connection was closed while its report waited for the pipeline"
    );
    delivery.confirm();
    station.acknowledgement(ACK).await.expect("the report is acknowledged once confirmed");
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 0);
    // From then on the station is idle, and closed for it.
    assert!(station.closed_within(Duration::from_secs(10)).await);
    assert_eq!(centre.stats.idle_closed.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_new_connection_is_closed_at_once_and_the_first_ones_keep_reporting() {
    let centre = Centre::start(limits(60_000, 2), None);
    let mut first = Station::connect(&centre, HANKOU).await;
    let mut second = Station::connect(&centre, WUHAN).await;
    first.report(ACK).await.expect("the first station is served");
    second.report(ACK).await.expect("the second station is served");

    let mut third = Station::connect(&centre, HANKOU).await;
    let bytes = third.next_report();
    let _ = third.stream.write_all(&bytes).await;
    assert!(third.closed_within(Duration::from_secs(5)).await, "the third connection is closed at once");
    assert!(third.acknowledgement(Duration::from_millis(1)).await.is_err(), "and its report not acknowledged");
    assert_eq!(centre.stats.refused.load(Ordering::Relaxed), 1);

    first.report(ACK).await.expect("the first station still reports");
    second.report(ACK).await.expect("the second station still reports");
    assert_eq!(centre.stats.connections.load(Ordering::Relaxed), 2);

    // A station that leaves frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = Station::connect(&centre, HANKOU).await;
        if next.report(Duration::from_secs(1)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed after a station left");
    }
    second.report(ACK).await.expect("the second station still reports");
}
