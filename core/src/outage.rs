//! Logging a connection that keeps failing without flooding the log.
//!
//! An MQTT client retries every few hundred milliseconds while its broker is down; a warning
//! per attempt buries everything else (and fills `docker logs`). [`OutageLog`] warns at the
//! first failure, then at most once per [`OutageLog::SUMMARY_EVERY`] with the number of
//! failures since, and logs at INFO when the connection is back. Each client keeps one.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// What [`OutageLog::failed`] logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// The first failure of an outage (WARN).
    First,
    /// A summary: this many failures since the outage began (WARN).
    Summary(u64),
    /// Nothing (a retry within the summary interval).
    Quiet,
}

/// One connection's outage state; `what` names the connection in every line
/// (`"alert publisher"`, `"ingest"`).
#[derive(Debug)]
pub struct OutageLog {
    what: &'static str,
    began: Option<Instant>,
    failures: u64,
    last_logged: Option<Instant>,
}

impl OutageLog {
    /// How often a continuing outage is summarised.
    pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

    /// No outage yet.
    pub fn new(what: &'static str) -> Self {
        OutageLog { what, began: None, failures: 0, last_logged: None }
    }

    /// A connection attempt (or the connection) failed at `now` with `error`.
    pub fn failed(&mut self, now: Instant, error: &dyn Display) -> Logged {
        self.failures += 1;
        let what = self.what;
        let Some(began) = self.began else {
            self.began = Some(now);
            self.last_logged = Some(now);
            tracing::warn!(connection = what, %error, "MQTT connection error; reconnecting (repeats are summarised every 60 s)");
            return Logged::First;
        };
        if self.last_logged.is_some_and(|t| now.saturating_duration_since(t) < Self::SUMMARY_EVERY) {
            tracing::debug!(connection = what, %error, "MQTT connection error; reconnecting");
            return Logged::Quiet;
        }
        self.last_logged = Some(now);
        let down_for_s = now.saturating_duration_since(began).as_secs();
        tracing::warn!(connection = what, failures = self.failures, down_for_s, %error, "MQTT connection still failing; reconnecting");
        Logged::Summary(self.failures)
    }

    /// Connected at `now`; after an outage logs at INFO how long it lasted and returns the
    /// number of failures it had.
    pub fn connected(&mut self, now: Instant) -> Option<u64> {
        let began = self.began.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.last_logged = None;
        let down_for_s = now.saturating_duration_since(began).as_secs();
        tracing::info!(connection = self.what, failures, down_for_s, "MQTT connection back");
        Some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_warns_once_then_summarises_per_interval_and_says_when_it_is_over() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut log = OutageLog::new("test");
        assert_eq!(log.connected(at(0)), None, "no outage, nothing to say");
        assert_eq!(log.failed(at(0), &"refused"), Logged::First);
        // A retry every 200 ms for a minute: quiet.
        for ms in (200..60_000).step_by(200) {
            assert_eq!(log.failed(at(ms), &"refused"), Logged::Quiet, "at {ms} ms");
        }
        assert_eq!(log.failed(at(60_000), &"refused"), Logged::Summary(301));
        assert_eq!(log.failed(at(60_200), &"refused"), Logged::Quiet);
        assert_eq!(log.failed(at(120_000), &"refused"), Logged::Summary(303));
        assert_eq!(log.connected(at(121_000)), Some(303));
        assert_eq!(log.connected(at(122_000)), None, "said once");
        // The next outage starts afresh.
        assert_eq!(log.failed(at(130_000), &"refused"), Logged::First);
        assert_eq!(log.failed(at(130_200), &"refused"), Logged::Quiet);
    }
}
