//! Receive coalescing: reading a steady stream of small messages a period's worth at a time.
//!
//! A broker that sends each message as soon as it has it (Mosquitto with `set_tcp_nodelay
//! true`, as riskwatch's deploy config ships it) hands a single-reading stream to ingest in
//! segments of a few messages each. Reading every segment as it arrives costs a wake-up, a
//! read, a hand-over downstream, a journal entry and a confirmation per few readings — on a
//! 2-core machine most of riskwatch's CPU per reading (docs/benchmarks.md, thirteenth round).
//!
//! So, once reads come faster than one per `period` (a steady stream), the source asks the
//! kernel (`SO_RCVLOWAT`) not to wake it before [`LOWAT`] bytes are waiting, and reads the
//! socket every `period` instead; the first read that finds nothing ends the stream and
//! restores the ordinary wake-up on every byte. A message waits at most one period (plus the
//! timer's millisecond resolution) in the socket; at low rates nothing waits. Plain TCP only:
//! a TLS connection is read as its records arrive.

use bytes::BytesMut;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// While streaming, the kernel wakes the source once this many bytes are waiting (about 300
/// single-reading messages) even before the period is over, so a fast stream is not held to
/// one read per period.
pub const LOWAT: usize = 32 * 1024;

/// A socket's coalescing state.
pub(super) struct Coalesce {
    /// The connection's socket (a second descriptor of it): read directly, so a timed read
    /// does not depend on the runtime having been told the socket is readable.
    sock: socket2::Socket,
    period: Duration,
    /// The time of the last read that brought data.
    last_read: Option<Instant>,
    /// While streaming: when to read next.
    next: Option<Instant>,
}

impl Coalesce {
    /// Coalescing for `tcp` with reads every `period`; `None` when `period` is zero.
    pub fn new(tcp: &TcpStream, period: Duration) -> io::Result<Option<Self>> {
        if period.is_zero() {
            return Ok(None);
        }
        let sock = socket2::Socket::from(tcp.as_fd().try_clone_to_owned()?);
        Ok(Some(Coalesce { sock, period, last_read: None, next: None }))
    }

    /// While streaming, when the next timed read is due.
    pub fn due(&self) -> Option<Instant> {
        self.next
    }

    /// A read brought data at `now`: a second read within a period starts the stream.
    pub fn read_at(&mut self, now: Instant) -> io::Result<()> {
        let steady = self.last_read.is_some_and(|t| now.duration_since(t) < self.period);
        self.last_read = Some(now);
        if self.next.is_none() && steady {
            self.set_lowat(LOWAT)?;
        }
        if self.next.is_some() || steady {
            self.next = Some(now + self.period);
        }
        Ok(())
    }

    /// The timed read: appends what the socket holds to `buf` (`Ok(0)`: nothing, and the stream
    /// has ended; the socket wakes the source on every byte again).
    pub fn read(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        buf.reserve(chunk);
        let spare = buf.spare_capacity_mut();
        let n = match self.sock.recv(spare) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        if n == 0 {
            self.next = None;
            self.last_read = None;
            self.set_lowat(1)?;
        } else {
            self.read_at(Instant::now())?;
        }
        Ok(n)
    }

    fn set_lowat(&self, bytes: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: a plain setsockopt on a descriptor this struct owns, with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (client, peer)
    }

    #[tokio::test]
    async fn a_steady_stream_is_read_on_the_timer_and_a_quiet_socket_ends_it() {
        let (client, mut peer) = pair().await;
        let period = Duration::from_millis(50);
        let mut c = Coalesce::new(&client, period).unwrap().expect("a non-zero period coalesces");
        let t = Instant::now();
        c.read_at(t).unwrap();
        assert_eq!(c.due(), None, "one read is not a stream");
        c.read_at(t + Duration::from_millis(10)).unwrap();
        assert_eq!(c.due(), Some(t + Duration::from_millis(10) + period), "a second read within the period starts one");

        // While streaming, a few waiting bytes do not wake the reader …
        peer.write_all(&[1; 100]).await.unwrap();
        let woke = tokio::time::timeout(Duration::from_millis(300), client.readable()).await;
        assert!(woke.is_err(), "the socket woke its reader for 100 bytes while streaming");
        // … the timed read takes them, and the stream goes on.
        let mut buf = BytesMut::new();
        assert_eq!(c.read(&mut buf, 4096).unwrap(), 100);
        assert_eq!(&buf[..], &[1; 100][..]);
        assert!(c.due().is_some());

        // A timed read that finds nothing ends the stream: every byte wakes the reader again.
        assert_eq!(c.read(&mut buf, 4096).unwrap(), 0);
        assert_eq!(c.due(), None);
        peer.write_all(&[2; 10]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), client.readable())
            .await
            .expect("10 bytes wake the reader once the stream has ended")
            .unwrap();
    }

    #[tokio::test]
    async fn a_closed_socket_is_an_error_and_a_zero_period_does_not_coalesce() {
        let (client, peer) = pair().await;
        assert!(Coalesce::new(&client, Duration::ZERO).unwrap().is_none());
        let mut c = Coalesce::new(&client, Duration::from_millis(5)).unwrap().unwrap();
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match c.read(&mut BytesMut::new(), 4096) {
                Err(e) => break e,
                Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
                Ok(n) => panic!("still reading {n} bytes from a closed socket"),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
