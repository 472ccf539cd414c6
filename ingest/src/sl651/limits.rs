//! What the SL 651 source allows a peer on its field-facing port (`[sl651] idle_timeout`,
//! `max_connections`; docs/operations.md), and the rate-limited warning for refused
//! connections (a flood of them must not flood the log).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::warn;

/// The SL 651 source's limits on its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sl651Limits {
    /// A connection that sends no checked frame for this long is closed: one that sends
    /// nothing, one stalled (or trickling) inside a frame, one sending only garbage. Time spent
    /// waiting for the pipeline to confirm a frame does not count.
    pub idle_timeout: Duration,
    /// Connections served at once; beyond this a new one is closed at once.
    pub max_connections: usize,
}

impl Sl651Limits {
    /// Default idle timeout: 70 minutes. RTUs that hold their connection report at least
    /// hourly (the timed report, or the link-keep frame more often), so a healthy station is
    /// never cut; one that reports less often just reconnects for its next report.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(70 * 60);
    /// Default connection limit.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
}

impl Default for Sl651Limits {
    fn default() -> Self {
        Sl651Limits { idle_timeout: Self::DEFAULT_IDLE_TIMEOUT, max_connections: Self::DEFAULT_MAX_CONNECTIONS }
    }
}

/// How often, at most, a refused connection is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Logs refused connections: the first at once, then at most one line per minute with the
/// count refused since the last line.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// Notes one refused connection from `peer`, logging it if the last line is old enough.
    pub(crate) fn refused(&mut self, peer: SocketAddr, max: usize) {
        self.unlogged += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return;
        }
        warn!(
            %peer,
            refused = self.unlogged,
            max_connections = max,
            "SL 651 connection refused: sl651.max_connections stations are already connected \
             (at most one such line a minute; `refused` counts since the last)"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_a_minute_and_counted_in_between() {
        let mut log = RefusalLog::default();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        log.refused(peer, 1);
        assert_eq!(log.unlogged, 0, "the first refusal is logged at once");
        log.refused(peer, 1);
        log.refused(peer, 1);
        assert_eq!(log.unlogged, 2, "the next ones wait for the minute");
        log.last = Some(Instant::now() - WARN_EVERY);
        log.refused(peer, 1);
        assert_eq!(log.unlogged, 0, "a minute later the count is logged");
    }
}
