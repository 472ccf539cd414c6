//! Recent history of a measure, for rate-of-change and accumulation conditions.
//!
//! Samples are coalesced into slots of `resolution` (1/24 of the shortest window), so memory
//! stays bounded by window / resolution however fast a sensor reports: a 1-s gas detector with
//! a 1-hour rate keeps at most ~26 slots. Sums are exact for readings spaced at least one slot
//! apart (5-minute rainfall in a 1-hour window: every reading has its own slot) and otherwise
//! accurate to one slot at the window's far edge.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One slot: the readings that fell into it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Slot {
    /// Event time of the latest reading in the slot, ms.
    ts: i64,
    /// Latest value in the slot.
    last: f64,
    /// Sum of the values in the slot.
    sum: f64,
}

/// The sliding history of one (rule, sensor) binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    slots: VecDeque<Slot>,
}

impl Window {
    /// Adds a reading (event times non-decreasing) and forgets what is older than `keep_ms`
    /// before it, keeping one slot beyond that as the reference for rates.
    pub fn push(&mut self, ts: i64, v: f64, resolution_ms: i64, keep_ms: i64) {
        match self.slots.back_mut() {
            Some(s) if ts - s.ts < resolution_ms && ts / resolution_ms == s.ts / resolution_ms => {
                s.ts = ts;
                s.last = v;
                s.sum += v;
            }
            _ => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by doubling as usual, but never past the most slots the window can
                    // hold (one per resolution step, plus the reference and the newest): this
                    // is held per binding, for every sensor.
                    let most = usize::try_from(keep_ms / resolution_ms.max(1)).unwrap_or(usize::MAX).saturating_add(2);
                    let len = self.slots.len();
                    self.slots.reserve_exact((len * 2).max(4).min(most.max(len + 1)) - len);
                }
                self.slots.push_back(Slot { ts, last: v, sum: v });
            }
        }
        while self.slots.len() >= 2 && self.slots[1].ts <= ts - keep_ms {
            self.slots.pop_front();
        }
    }

    /// Sum of the values with event time in `(now − window, now]`.
    pub fn sum(&self, now: i64, window_ms: i64) -> f64 {
        self.slots.iter().rev().take_while(|s| s.ts > now - window_ms).map(|s| s.sum).sum()
    }

    /// Change per hour over about `window_ms`: against the newest sample at least a window
    /// old, or — while history is shorter — the oldest one if it spans at least half the
    /// window. `None` while there is not enough history.
    pub fn rate_per_hour(&self, now: i64, window_ms: i64) -> Option<f64> {
        let latest = self.slots.back()?;
        // Slots are in event-time order, so "the newest one at least a window old" is one
        // bisection — and usually the first slot (the window is the whole history kept), which
        // `push` has just looked at — rather than a walk back through the window per reading.
        let cut = now - window_ms;
        let older = match self.slots.get(1) {
            Some(second) if second.ts > cut => usize::from(self.slots[0].ts <= cut),
            _ => self.slots.partition_point(|s| s.ts <= cut),
        };
        let reference = older.checked_sub(1).and_then(|i| self.slots.get(i)).or_else(|| {
            let oldest = self.slots.front()?;
            (now - oldest.ts >= window_ms / 2).then_some(oldest)
        })?;
        let dt_ms = latest.ts - reference.ts;
        (dt_ms > 0).then(|| (latest.last - reference.last) * 3_600_000.0 / dt_ms as f64)
    }

    /// Starts loading the slots the next reading will read: the oldest two and the newest.
    /// A hint only.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let (a, b) = self.slots.as_slices();
        if let Some(first) = a.first() {
            crate::prefetch::line(first);
            crate::prefetch::line(a.get(1).or(b.first()).unwrap_or(first));
        }
        if let Some(last) = b.last().or(a.last()) {
            crate::prefetch::line(last);
        }
    }

    /// Slots held (for state-size accounting).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIN: i64 = 60_000;

    #[test]
    fn sums_rainfall_over_windows_exactly_at_reading_spacing() {
        let mut w = Window::default();
        // 5-minute rainfall of 3 mm for two hours.
        for i in 0..24 {
            w.push(i * 5 * MIN, 3.0, 60 * MIN / 24, 3 * 60 * MIN);
        }
        let now = 23 * 5 * MIN;
        assert!((w.sum(now, 60 * MIN) - 36.0).abs() < 1e-9, "12 readings in the last hour");
        assert!((w.sum(now, 3 * 60 * MIN) - 72.0).abs() < 1e-9, "all 24 in three hours");
    }

    #[test]
    fn rate_per_hour_and_bounded_memory_for_fast_sensors() {
        let mut w = Window::default();
        // 1-s readings rising 0.5 per hour, for three hours, with a 1-h rate window.
        for s in 0..3 * 3600 {
            w.push(s * 1000, 10.0 + 0.5 * s as f64 / 3600.0, 3_600_000 / 24, 3_600_000);
        }
        let r = w.rate_per_hour(3 * 3_600_000 - 1000, 3_600_000).unwrap();
        assert!((r - 0.5).abs() < 0.01, "rate {r}");
        assert!(w.len() <= 27, "slots kept: {}", w.len());
    }

    #[test]
    fn no_rate_before_half_a_window_of_history() {
        let mut w = Window::default();
        w.push(0, 1.0, 150_000, 3_600_000);
        w.push(600_000, 2.0, 150_000, 3_600_000);
        assert_eq!(w.rate_per_hour(600_000, 3_600_000), None);
        w.push(1_800_000, 3.0, 150_000, 3_600_000);
        assert!((w.rate_per_hour(1_800_000, 3_600_000).unwrap() - 4.0).abs() < 1e-9);
    }
}
