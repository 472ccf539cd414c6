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
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Slot {
    /// Event time of the latest reading in the slot, ms.
    ts: i64,
    /// Latest value in the slot.
    last: f64,
    /// Sum of the values in the slot.
    sum: f64,
}

/// The sliding history of one (rule, sensor) binding.
///
/// A reading reads the oldest two slots (the rate's reference, and whether the oldest is due
/// to go) and the newest (which it usually updates). Those three live inline, in the binding
/// itself; only the slots between them are in a heap ring, touched when a slot is added or
/// dropped (every few readings), not on every reading. Logically the history is
/// `head[..min(len, 2)]`, then `middle`, then `tail` when `len >= 3`. Serialised as the plain
/// list of slots.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct Window {
    /// Slots 0 and 1 (as far as `len` goes).
    head: [Slot; 2],
    /// The newest slot, when there are three or more.
    tail: Slot,
    /// Slots held.
    len: usize,
    /// Slots 2 ..= len − 2.
    middle: VecDeque<Slot>,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        struct Slots<'a>(&'a Window);
        impl Serialize for Slots<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter())
            }
        }
        let mut st = serializer.serialize_struct("Window", 1)?;
        st.serialize_field("slots", &Slots(self))?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Window")]
        struct Repr {
            slots: Vec<Slot>,
        }
        let slots = Repr::deserialize(deserializer)?.slots;
        let mut w = Window { len: slots.len(), ..Window::default() };
        for (inline, s) in w.head.iter_mut().zip(&slots) {
            *inline = *s;
        }
        if let [_, _, middle @ .., last] = &slots[..] {
            w.tail = *last;
            w.middle = middle.iter().copied().collect();
        }
        Ok(w)
    }
}

impl Window {
    /// Adds a reading (event times non-decreasing) and forgets what is older than `keep_ms`
    /// before it, keeping one slot beyond that as the reference for rates.
    pub fn push(&mut self, ts: i64, v: f64, resolution_ms: i64, keep_ms: i64) {
        match self.back_mut() {
            Some(s) if ts - s.ts < resolution_ms && ts / resolution_ms == s.ts / resolution_ms => {
                s.ts = ts;
                s.last = v;
                s.sum += v;
            }
            _ => self.push_slot(Slot { ts, last: v, sum: v }, resolution_ms, keep_ms),
        }
        while self.len >= 2 && self.head[1].ts <= ts - keep_ms {
            self.pop_front();
        }
    }

    /// Appends a slot.
    fn push_slot(&mut self, slot: Slot, resolution_ms: i64, keep_ms: i64) {
        match self.len {
            0 | 1 => self.head[self.len] = slot,
            2 => self.tail = slot,
            _ => {
                if self.middle.len() == self.middle.capacity() {
                    // Grow by doubling as usual, but never past the most slots the window can
                    // hold (one per resolution step, plus the reference and the newest, less
                    // the three held inline): this is held per binding, for every sensor.
                    let most = usize::try_from(keep_ms / resolution_ms.max(1))
                        .unwrap_or(usize::MAX)
                        .saturating_add(2)
                        .saturating_sub(3);
                    let len = self.middle.len();
                    self.middle.reserve_exact((len * 2).max(4).min(most.max(len + 1)) - len);
                }
                self.middle.push_back(std::mem::replace(&mut self.tail, slot));
            }
        }
        self.len += 1;
    }

    /// Drops the oldest slot (`len >= 2`).
    fn pop_front(&mut self) {
        self.head[0] = self.head[1];
        match self.len {
            2 => {}
            3 => self.head[1] = self.tail,
            _ => {
                if let Some(s) = self.middle.pop_front() {
                    self.head[1] = s;
                }
            }
        }
        self.len -= 1;
    }

    /// Slot `i`, oldest first.
    #[inline]
    fn get(&self, i: usize) -> Option<&Slot> {
        if i >= self.len {
            None
        } else if i < 2 {
            Some(&self.head[i])
        } else if i == self.len - 1 {
            Some(&self.tail)
        } else {
            self.middle.get(i - 2)
        }
    }

    /// The newest slot.
    #[inline]
    fn back(&self) -> Option<&Slot> {
        match self.len {
            0 => None,
            1 | 2 => Some(&self.head[self.len - 1]),
            _ => Some(&self.tail),
        }
    }

    #[inline]
    fn back_mut(&mut self) -> Option<&mut Slot> {
        match self.len {
            0 => None,
            1 | 2 => Some(&mut self.head[self.len - 1]),
            _ => Some(&mut self.tail),
        }
    }

    /// Every slot, oldest first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = &Slot> {
        self.head[..self.len.min(2)].iter().chain(self.middle.iter()).chain((self.len >= 3).then_some(&self.tail))
    }

    /// Sum of the values with event time in `(now − window, now]`.
    pub fn sum(&self, now: i64, window_ms: i64) -> f64 {
        self.iter().rev().take_while(|s| s.ts > now - window_ms).map(|s| s.sum).sum()
    }

    /// Change per hour over about `window_ms`: against the newest sample at least a window
    /// old, or — while history is shorter — the oldest one if it spans at least half the
    /// window. `None` while there is not enough history.
    pub fn rate_per_hour(&self, now: i64, window_ms: i64) -> Option<f64> {
        let latest = self.back()?;
        // Slots are in event-time order, so "the newest one at least a window old" is one
        // bisection — and usually the first slot (the window is the whole history kept), which
        // `push` has just looked at — rather than a walk back through the window per reading.
        let cut = now - window_ms;
        let older = match self.get(1) {
            Some(second) if second.ts > cut => usize::from(self.head[0].ts <= cut),
            _ => {
                let (mut lo, mut hi) = (0, self.len);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if self.get(mid).is_some_and(|s| s.ts <= cut) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        };
        let reference = older.checked_sub(1).and_then(|i| self.get(i)).or_else(|| {
            let oldest = self.get(0)?;
            (now - oldest.ts >= window_ms / 2).then_some(oldest)
        })?;
        let dt_ms = latest.ts - reference.ts;
        (dt_ms > 0).then(|| (latest.last - reference.last) * 3_600_000.0 / dt_ms as f64)
    }

    /// Starts loading the heap slots the next reading may touch: the ring's oldest (the next
    /// to move inline) and newest. A hint only.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let (a, b) = self.middle.as_slices();
        if let Some(first) = a.first() {
            crate::prefetch::line(first);
        }
        if let Some(last) = b.last().or(a.last()) {
            crate::prefetch::line(last);
        }
    }

    /// Slots held (for state-size accounting).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn inline_ends_hold_the_same_history_as_a_plain_list() {
        // A plain list of (ts, last, sum), pushed and trimmed as the window does.
        let mut plain: Vec<(i64, f64, f64)> = Vec::new();
        let mut w = Window::default();
        let (res, keep) = (150_000, 3_600_000);
        let mut ts = 0;
        for i in 0..2_000u64 {
            ts += [10_000, 60_000, 140_000, 300_000, 3_000_000][(i * 7 % 5) as usize];
            let v = (i as f64 * 0.37).sin();
            w.push(ts, v, res, keep);
            match plain.last_mut() {
                Some(s) if ts - s.0 < res && ts / res == s.0 / res => *s = (ts, v, s.2 + v),
                _ => plain.push((ts, v, v)),
            }
            while plain.len() >= 2 && plain[1].0 <= ts - keep {
                plain.remove(0);
            }
            let got: Vec<_> = w.iter().map(|s| (s.ts, s.last, s.sum)).collect();
            assert_eq!(got, plain, "after reading {i}");
            let json = serde_json::to_string(&w).unwrap();
            let back: Window = serde_json::from_str(&json).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.rate_per_hour(ts, keep), w.rate_per_hour(ts, keep));
            assert!(w.len() <= 26, "slots kept: {}", w.len());
        }
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
