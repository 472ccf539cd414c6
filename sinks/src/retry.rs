//! Retry delays for the webhook deliveries and the Kafka sink's QuestDB flushes and dead
//! letters: exponential from a base delay with jitter (so that receivers coming back are not
//! hit by every sender at the same instant), capped; and a rate-limited receiver's HTTP
//! `Retry-After` (seconds or an HTTP date).

// backon: maintained, small, and gives the jittered schedule as a plain iterator the retry
// loops drive beside their shutdown signals (the `backoff` crate is no longer maintained).
use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured; a receiver asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Delays before successive retries, without end: the n-th is random in
/// `[base·2ⁿ, base·2ⁿ⁺¹)`, and never below `base` nor above `cap`.
pub fn delays(base: Duration, cap: Duration) -> impl Iterator<Item = Duration> + Send {
    let base = base.max(Duration::from_millis(1));
    let cap = cap.max(base);
    // backon's jitter adds up to the current delay again, so its own ceiling is half the cap.
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay((cap / 2).max(base))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |d| d.clamp(base, cap))
}

/// A `Retry-After` value as a wait from `now`: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`; a date in the past is no wait). `None` if it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before the next attempt: the backoff delay, or longer if the receiver asked
/// (`Retry-After`, at most [`MAX_RETRY_AFTER`]).
pub fn next_wait(backoff: Duration, asked: Option<Duration>) -> Duration {
    asked.map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_differ_and_stay_between_base_and_cap() {
        // 1/8 s: exact in binary, so the bounds below hold to the nanosecond.
        let (base, cap) = (Duration::from_millis(125), Duration::from_secs(60));
        for _ in 0..50 {
            let d: Vec<Duration> = delays(base, cap).take(20).collect();
            assert!(d.iter().all(|x| (base..=cap).contains(x)), "{d:?}");
            // Exponential: the n-th is in [base·2ⁿ, base·2ⁿ⁺¹) until the cap.
            for (n, x) in d.iter().enumerate().take(8) {
                assert!(*x >= base * (1 << n) && *x <= base * (2 << n), "delay {n}: {x:?}");
            }
        }
        // Jitter: two schedules differ, and the first delays of many schedules are not all equal.
        let firsts: std::collections::HashSet<Duration> = (0..20).map(|_| delays(base, cap).next().unwrap()).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
        let a: Vec<Duration> = delays(base, cap).take(10).collect();
        let b: Vec<Duration> = delays(base, cap).take(10).collect();
        assert_ne!(a, b);
        // A base above half the cap still stays within [base, cap].
        let d: Vec<Duration> = delays(Duration::from_secs(8), Duration::from_secs(10)).take(10).collect();
        assert!(d.iter().all(|x| (Duration::from_secs(8)..=Duration::from_secs(10)).contains(x)), "{d:?}");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        let ms = Duration::from_millis;
        assert_eq!(next_wait(ms(20), None), ms(20));
        assert_eq!(next_wait(ms(20), Some(ms(1000))), ms(1000));
        assert_eq!(next_wait(ms(5000), Some(ms(1000))), ms(5000), "never sooner than the backoff");
        assert_eq!(next_wait(ms(20), Some(Duration::from_secs(86_400))), MAX_RETRY_AFTER);
    }
}
