//! STA/LTA: the standard automatic detector of seismic arrivals, as streaming numerics.
//!
//! A seismometer records background noise most of the time; an earthquake's P wave arrives as
//! a sudden rise in amplitude. STA/LTA follows the signal energy x² with two averages: a
//! short-term average (STA), which reacts to that rise within a fraction of a second, and a
//! long-term average (LTA), which stands for the current noise level. Their ratio, the
//! *characteristic function*, hovers around 1 in stationary noise and jumps at an arrival.
//! Because it is a ratio it adapts by itself to noisy and quiet stations and to day/night
//! cultural noise, which a fixed amplitude threshold cannot. A [`Trigger`] turns the ratio into
//! events with hysteresis: on when it reaches the *on* threshold, off once it drops below the
//! lower *off* threshold, so one arrival is one event rather than a flicker.
//!
//! Two averages are provided, both from ObsPy's `obspy.signal.trigger`:
//! - **classic** ([`classic_sta_lta`], [`ClassicStaLta`]): moving means of x² over exactly the
//!   last `nsta` and `nlta` samples; zero for the first `nlta − 1` samples.
//! - **recursive** ([`recursive_sta_lta`], [`RecursiveStaLta`]): exponential averages
//!   `sta ← c·x² + (1−c)·sta` with `c = 1/nsta`, the LTA likewise with `1/nlta`; zero for the
//!   first `nlta` samples. No sample buffer, so it is the cheaper one for many channels.
//!
//! Typical parameters (docs/domain.md §5; window lengths in samples are seconds × sample rate):
//!
//! | method    | STA   | LTA  | on  | off | at 100 Hz             |
//! |-----------|-------|------|-----|-----|-----------------------|
//! | classic   | 5 s   | 10 s | 1.5 | 0.5 | `nsta 500, nlta 1000` |
//! | recursive | 0.5 s | 10 s | 3.5 | 1.0 | `nsta 50, nlta 1000`  |
//!
//! SeisComP's picker triggers at 3 and re-arms at 1.5 (`on 3.0, off 1.5`). A trigger here is one
//! station's vote: orange and red need coincidence of several stations (≥ 3 within a window),
//! never a single trigger — that is decided by the rules built on top of this module.
//!
//! **Reference.** ObsPy, `obspy/signal/trigger.py` (`classic_sta_lta`, `recursive_sta_lta`,
//! `trigger_onset`) with its C kernels `obspy/signal/src/stalta.c` and `recstalta.c`. The batch
//! functions reproduce ObsPy's numbers bit for bit (the classic one by doing the same
//! running-sum arithmetic), and the streaming types give exactly the batch numbers however a
//! record is split into packets. They differ from ObsPy only where ObsPy yields NaN, garbage
//! or an exception, because a live system must not:
//! - a sample that is not finite or exceeds ±1e100 (corruption, not ground motion) counts as
//!   0, so it cannot poison the averages for good, and the state stays finite and snapshotable;
//! - recursive: the LTA starts at `f64::MIN_POSITIVE` as in ObsPy's `recursive_sta_lta_py`
//!   (the C version starts at 0 and returns 0/0 = NaN on leading zeros), and the ratio divides
//!   by at least that, so on a flatlined channel, where the averages sink into subnormals, it
//!   falls to about 0 (ObsPy's settles at 1, or 0/0 for the shortest windows); the first `nlta` ratios
//!   are always 0 (ObsPy's C leaves them when the record is shorter than `nlta`);
//! - classic: a window holding only zeros has a sum of exactly 0 and gives ratio 0 (ObsPy's
//!   running sums keep rounding residues after activity, so a channel that goes dead reads the
//!   ratio of two residues — O(1), of either sign — for good); a record shorter than `nlta`
//!   gives zeros, not an error.
//!
//! Like ObsPy, the first sample of a stream is not fed to the recursive averages, and a
//! trigger turns on at `ratio >= on` and holds while `ratio >= off`.
//!
//! ```
//! use riskwatch_rules::detectors::sta_lta::{RecursiveStaLta, Trigger, TriggerEvent};
//!
//! // 100 Hz: STA 0.5 s, LTA 10 s, on 3.5, off 1.0, at most 30 s per event.
//! let mut ratio = RecursiveStaLta::new(50, 1000)?;
//! let mut trigger = Trigger::new(3.5, 1.0, 3000)?;
//! let (mut cft, mut events) = (Vec::new(), Vec::new());
//! for second in 0..20u64 {
//!     let packet: Vec<f64> = (0..100)
//!         .map(|k| if second >= 15 { 50.0 } else { 1.0 } * if k % 2 == 0 { 1.0 } else { -1.0 })
//!         .collect();
//!     cft.clear();
//!     ratio.process(&packet, &mut cft);
//!     trigger.feed(second * 100, &cft, &mut events);
//! }
//! assert_eq!(events, [TriggerEvent::On { index: 1500 }]);
//! # Ok::<(), riskwatch_rules::detectors::sta_lta::StaLtaError>(())
//! ```

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest sample magnitude taken as data; anything beyond (or not finite) counts as 0.
const MAX_SAMPLE: f64 = 1e100;

/// Why an STA/LTA filter or trigger cannot be built or restored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StaLtaError {
    /// The windows must satisfy 1 ≤ nsta ≤ nlta.
    #[error("STA/LTA windows need 1 <= nsta <= nlta, got nsta {nsta}, nlta {nlta}")]
    Windows {
        /// STA length, samples.
        nsta: usize,
        /// LTA length, samples.
        nlta: usize,
    },
    /// The thresholds must be finite with off ≤ on.
    #[error("trigger thresholds need finite values with off <= on, got on {on}, off {off}")]
    Thresholds {
        /// On threshold.
        on: f64,
        /// Off threshold.
        off: f64,
    },
    /// A restored classic filter's sample ring does not match its LTA length.
    #[error("classic STA/LTA state holds {ring} samples, but nlta is {nlta}")]
    Ring {
        /// Samples in the restored ring.
        ring: usize,
        /// LTA length, samples.
        nlta: usize,
    },
}

fn check_windows(nsta: usize, nlta: usize) -> Result<(), StaLtaError> {
    if nsta == 0 || nsta > nlta {
        return Err(StaLtaError::Windows { nsta, nlta });
    }
    Ok(())
}

/// x², or 0 for a corrupt sample.
fn energy(x: f64) -> f64 {
    if x.abs() <= MAX_SAMPLE {
        x * x
    } else {
        0.0
    }
}

/// Classic STA/LTA of a whole record, as ObsPy's `classic_sta_lta`: the mean of x² over the
/// last `nsta` samples divided by the mean over the last `nlta` samples; 0 for the first
/// `nlta − 1` samples.
///
/// # Panics
/// Unless 1 ≤ `nsta` ≤ `nlta` (build a [`ClassicStaLta`] to validate configured lengths).
pub fn classic_sta_lta(a: &[f64], nsta: usize, nlta: usize) -> Vec<f64> {
    match ClassicStaLta::new(nsta, nlta) {
        Ok(mut filter) => run(a, |s, out| filter.process(s, out)),
        Err(e) => panic!("classic_sta_lta: {e}"),
    }
}

/// Recursive STA/LTA of a whole record, as ObsPy's `recursive_sta_lta`: exponential averages
/// of x² with weights `1/nsta` and `1/nlta`; 0 for the first `nlta` samples.
///
/// # Panics
/// Unless 1 ≤ `nsta` ≤ `nlta` (build a [`RecursiveStaLta`] to validate configured lengths).
pub fn recursive_sta_lta(a: &[f64], nsta: usize, nlta: usize) -> Vec<f64> {
    match RecursiveStaLta::new(nsta, nlta) {
        Ok(mut filter) => run(a, |s, out| filter.process(s, out)),
        Err(e) => panic!("recursive_sta_lta: {e}"),
    }
}

fn run(a: &[f64], mut process: impl FnMut(&[f64], &mut Vec<f64>)) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len());
    process(a, &mut out);
    out
}

/// Trigger on/off pairs of a characteristic function, exactly as ObsPy's `trigger_onset`.
///
/// An event starts at the first sample of a run at or above `thres1` and ends at the *last*
/// sample at or above `thres2` before the function drops below it (or at the record's last
/// sample). Re-crossings of `thres1` inside an event belong to it. An event longer than
/// `max_len` samples is cut to `[on, on + max_len]` and the next event needs a fresh upward
/// crossing of `thres1`; with `max_len_delete` such events are dropped instead. Pass
/// `usize::MAX` for no length limit.
pub fn trigger_onset(
    charfct: &[f64],
    thres1: f64,
    thres2: f64,
    max_len: usize,
    max_len_delete: bool,
) -> Vec<[usize; 2]> {
    let n = charfct.len();
    let at_or_above = |i: usize, t: f64| charfct[i] >= t;
    // Event starts: the first sample of each run at or above thres1.
    let mut ons: VecDeque<i64> = (0..n)
        .filter(|&i| at_or_above(i, thres1) && (i == 0 || !at_or_above(i - 1, thres1)))
        .map(|i| i as i64)
        .collect();
    let Some(&last_on) = ons.back() else { return Vec::new() };
    // Candidate ends: the last sample of each run at or above thres2, after a -1 sentinel.
    let ends = (0..n).filter(|&i| at_or_above(i, thres2) && (i + 1 == n || !at_or_above(i + 1, thres2)));
    let mut offs: VecDeque<i64> = std::iter::once(-1).chain(ends.map(|i| i as i64)).collect();
    // No sample reaches thres2 (only possible with thres2 > thres1): ObsPy raises here.
    let Some(&last_end) = offs.back().filter(|&&e| e >= 0) else { return Vec::new() };
    if max_len_delete {
        offs.push_back(i64::MAX);
        ons.push_back(last_on);
    } else {
        offs.push_back(last_end);
    }
    offs.push_back(n as i64);
    let max_len = i64::try_from(max_len).unwrap_or(i64::MAX);

    let mut picks = Vec::new();
    while let (Some(&last), Some(&current_off)) = (ons.back(), offs.front()) {
        if last <= current_off {
            break;
        }
        // Onsets inside the previous event are part of it.
        while ons.front().is_some_and(|&o| o <= current_off) {
            ons.pop_front();
        }
        let Some(&on) = ons.front() else { break };
        while offs.front().is_some_and(|&f| f < on) {
            offs.pop_front();
        }
        let Some(&off) = offs.front() else { break };
        let off = if off - on > max_len {
            if max_len_delete {
                ons.pop_front();
                continue;
            }
            offs.push_front(on + max_len);
            on + max_len
        } else {
            off
        };
        picks.push([on as usize, off as usize]);
    }
    picks
}

/// Streaming recursive STA/LTA of one channel; the same numbers as [`recursive_sta_lta`] over
/// the concatenation of all packets fed so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RecursiveFields")]
pub struct RecursiveStaLta {
    /// STA length, samples (weight 1/nsta).
    nsta: usize,
    /// LTA length, samples (weight 1/nlta); also the warm-up during which the ratio is 0.
    nlta: usize,
    /// Short-term exponential average of x².
    sta: f64,
    /// Long-term exponential average of x².
    lta: f64,
    /// Samples fed so far.
    seen: u64,
}

#[derive(Deserialize)]
struct RecursiveFields {
    nsta: usize,
    nlta: usize,
    sta: f64,
    lta: f64,
    seen: u64,
}

impl TryFrom<RecursiveFields> for RecursiveStaLta {
    type Error = StaLtaError;
    fn try_from(f: RecursiveFields) -> Result<Self, StaLtaError> {
        check_windows(f.nsta, f.nlta)?;
        Ok(RecursiveStaLta { nsta: f.nsta, nlta: f.nlta, sta: f.sta, lta: f.lta, seen: f.seen })
    }
}

impl RecursiveStaLta {
    /// A filter with `nsta`-sample STA and `nlta`-sample LTA; needs 1 ≤ nsta ≤ nlta.
    pub fn new(nsta: usize, nlta: usize) -> Result<Self, StaLtaError> {
        check_windows(nsta, nlta)?;
        Ok(RecursiveStaLta { nsta, nlta, sta: 0.0, lta: f64::MIN_POSITIVE, seen: 0 })
    }

    /// STA and LTA lengths, samples.
    pub fn windows(&self) -> (usize, usize) {
        (self.nsta, self.nlta)
    }

    /// Feeds the next samples of the stream and appends one ratio per sample to `out`.
    pub fn process(&mut self, samples: &[f64], out: &mut Vec<f64>) {
        let (csta, clta) = self.weights();
        out.reserve(samples.len());
        for &x in samples {
            out.push(self.step(x, csta, clta));
        }
    }

    /// Feeds the next samples of the stream, replacing each by its ratio (no second buffer:
    /// a pre-filtered packet is turned into ratios where it lies).
    pub fn process_in_place(&mut self, samples: &mut [f64]) {
        let (csta, clta) = self.weights();
        for x in samples {
            *x = self.step(*x, csta, clta);
        }
    }

    /// A function taking the stream's next sample to its ratio, for a caller's own loop
    /// (`SosFilter::process_with` runs a pre-filter and this in one pass).
    pub fn stepper(&mut self) -> impl FnMut(f64) -> f64 + '_ {
        let (csta, clta) = self.weights();
        move |x| self.step(x, csta, clta)
    }

    fn weights(&self) -> (f64, f64) {
        (1.0 / self.nsta as f64, 1.0 / self.nlta as f64)
    }

    #[inline]
    fn step(&mut self, x: f64, csta: f64, clta: f64) -> f64 {
        let index = self.seen;
        self.seen += 1;
        if index == 0 {
            return 0.0;
        }
        let e = energy(x);
        self.sta = csta * e + (1.0 - csta) * self.sta;
        self.lta = clta * e + (1.0 - clta) * self.lta;
        let warm = index >= self.nlta as u64;
        if warm {
            self.sta / self.lta.max(f64::MIN_POSITIVE)
        } else {
            0.0
        }
    }
}

/// Streaming classic STA/LTA of one channel; the same numbers as [`classic_sta_lta`] over the
/// concatenation of all packets fed so far. O(1) per sample: running sums over a ring of the
/// last `nlta` squares, allocated once at construction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ClassicFields")]
pub struct ClassicStaLta {
    /// STA length, samples.
    nsta: usize,
    /// LTA length, samples.
    nlta: usize,
    /// x² of the last `nlta` samples; sample k sits at k mod nlta (zeros before the first).
    ring: Vec<f64>,
    /// Running sum of x² over the last `nsta` samples.
    sta_sum: f64,
    /// Running sum of x² over the last `nlta` samples.
    lta_sum: f64,
    /// Non-zero squares in the STA window: at 0 the sum is exactly 0, whatever rounding left.
    /// Derived from the ring, so not stored in snapshots.
    #[serde(skip)]
    sta_nonzero: usize,
    /// Non-zero squares in the LTA window, likewise.
    #[serde(skip)]
    lta_nonzero: usize,
    /// Samples fed so far.
    seen: u64,
}

#[derive(Deserialize)]
struct ClassicFields {
    nsta: usize,
    nlta: usize,
    ring: Vec<f64>,
    sta_sum: f64,
    lta_sum: f64,
    seen: u64,
}

impl TryFrom<ClassicFields> for ClassicStaLta {
    type Error = StaLtaError;
    fn try_from(f: ClassicFields) -> Result<Self, StaLtaError> {
        check_windows(f.nsta, f.nlta)?;
        if f.ring.len() != f.nlta {
            return Err(StaLtaError::Ring { ring: f.ring.len(), nlta: f.nlta });
        }
        let (n, next) = (f.nlta, (f.seen % f.nlta as u64) as usize);
        let sta_nonzero = (1..=f.nsta).filter(|back| f.ring[(next + n - back) % n] != 0.0).count();
        let lta_nonzero = f.ring.iter().filter(|&&e| e != 0.0).count();
        Ok(ClassicStaLta {
            sta_nonzero,
            lta_nonzero,
            nsta: f.nsta,
            nlta: f.nlta,
            ring: f.ring,
            sta_sum: f.sta_sum,
            lta_sum: f.lta_sum,
            seen: f.seen,
        })
    }
}

impl ClassicStaLta {
    /// A filter with `nsta`-sample STA and `nlta`-sample LTA; needs 1 ≤ nsta ≤ nlta.
    pub fn new(nsta: usize, nlta: usize) -> Result<Self, StaLtaError> {
        check_windows(nsta, nlta)?;
        Ok(ClassicStaLta {
            nsta,
            nlta,
            ring: vec![0.0; nlta],
            sta_sum: 0.0,
            lta_sum: 0.0,
            sta_nonzero: 0,
            lta_nonzero: 0,
            seen: 0,
        })
    }

    /// STA and LTA lengths, samples.
    pub fn windows(&self) -> (usize, usize) {
        (self.nsta, self.nlta)
    }

    /// Feeds the next samples of the stream and appends one ratio per sample to `out`.
    pub fn process(&mut self, samples: &[f64], out: &mut Vec<f64>) {
        let n = self.nlta;
        // ObsPy scales the ratio of sums rather than dividing each sum; same order here.
        let frac = self.nlta as f64 / self.nsta as f64;
        out.reserve(samples.len());
        for &x in samples {
            let e = energy(x);
            let slot = (self.seen % n as u64) as usize;
            let leaving_lta = self.ring[slot];
            let leaving_sta = self.ring[(slot + n - self.nsta) % n];
            self.ring[slot] = e;
            self.sta_sum += e - leaving_sta;
            self.lta_sum += e - leaving_lta;
            self.sta_nonzero = self.sta_nonzero + usize::from(e != 0.0) - usize::from(leaving_sta != 0.0);
            self.lta_nonzero = self.lta_nonzero + usize::from(e != 0.0) - usize::from(leaving_lta != 0.0);
            if self.sta_nonzero == 0 {
                self.sta_sum = 0.0;
            }
            if self.lta_nonzero == 0 {
                self.lta_sum = 0.0;
            }
            self.seen += 1;
            let warm = self.seen >= n as u64 && self.lta_nonzero > 0;
            out.push(if warm { self.sta_sum / self.lta_sum * frac } else { 0.0 });
        }
    }
}

/// A change of a [`Trigger`], at an absolute sample index of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerEvent {
    /// The ratio reached the on threshold at this sample: the event's onset.
    On {
        /// Sample index of the onset.
        index: u64,
    },
    /// The event ended; `index` is its last sample (ObsPy's convention: the last sample at or
    /// above the off threshold).
    Off {
        /// Sample index of the event's last sample.
        index: u64,
        /// Cut at `max_len` samples while the ratio still held at or above the off threshold.
        forced: bool,
    },
}

/// Streaming trigger with hysteresis and a maximum event length: the online form of
/// [`trigger_onset`] (without `max_len_delete`, which needs the future). Its `On`/`Off` pairs
/// are exactly `trigger_onset`'s; the onset is reported as soon as its sample arrives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TriggerFields")]
pub struct Trigger {
    /// On threshold: an event starts where the ratio rises to at least this.
    on: f64,
    /// Off threshold: the event ends before the first sample below this.
    off: f64,
    /// Longest event, samples after the onset; a longer one is cut there.
    max_len: u64,
    /// Onset of the event in progress.
    active_since: Option<u64>,
    /// Whether the previous sample was at or above `on` (a new onset needs an upward crossing).
    above_on: bool,
}

#[derive(Deserialize)]
struct TriggerFields {
    on: f64,
    off: f64,
    max_len: u64,
    active_since: Option<u64>,
    above_on: bool,
}

impl TryFrom<TriggerFields> for Trigger {
    type Error = StaLtaError;
    fn try_from(f: TriggerFields) -> Result<Self, StaLtaError> {
        let mut trigger = Trigger::new(f.on, f.off, f.max_len)?;
        trigger.active_since = f.active_since;
        trigger.above_on = f.above_on;
        Ok(trigger)
    }
}

impl Trigger {
    /// A trigger turning on at `ratio >= on`, holding while `ratio >= off`, and cut after
    /// `max_len` samples (`u64::MAX` for no limit). Needs finite thresholds with off ≤ on.
    pub fn new(on: f64, off: f64, max_len: u64) -> Result<Self, StaLtaError> {
        if !(on.is_finite() && off.is_finite() && off <= on) {
            return Err(StaLtaError::Thresholds { on, off });
        }
        Ok(Trigger { on, off, max_len, active_since: None, above_on: false })
    }

    /// Onset of the event in progress, if any.
    pub fn active_since(&self) -> Option<u64> {
        self.active_since
    }

    /// Feeds ratios whose first sample has absolute index `start_index` (packets contiguous,
    /// in order) and appends the resulting events to `events`.
    pub fn feed(&mut self, start_index: u64, cft: &[f64], events: &mut Vec<TriggerEvent>) {
        for (index, &ratio) in (start_index..).zip(cft) {
            // Written as a negated `>=` so that a NaN ratio ends an event, as in ObsPy.
            let holds = ratio >= self.off;
            if self.active_since.is_some() && !holds {
                events.push(TriggerEvent::Off { index: index.saturating_sub(1), forced: false });
                self.active_since = None;
            }
            let above_on = ratio >= self.on;
            if self.active_since.is_none() && above_on && !self.above_on {
                events.push(TriggerEvent::On { index });
                self.active_since = Some(index);
            }
            self.above_on = above_on;
            if let Some(onset) = self.active_since.filter(|&onset| index.saturating_sub(onset) >= self.max_len) {
                events.push(TriggerEvent::Off { index: onset.saturating_add(self.max_len), forced: true });
                self.active_since = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;
    use std::f64::consts::PI;
    use std::ops::Range;

    /// NumPy's legacy `RandomState`: MT19937 seeded as by `np.random.seed(n)`, 53-bit uniforms
    /// from two draws, normals by the polar method keeping the spare. It regenerates ObsPy's test
    /// data (`np.random.seed(815); np.random.randn(...)`) and serves as the tests' noise source.
    struct NumpyRandom {
        mt: [u32; 624],
        pos: usize,
        spare: Option<f64>,
    }

    impl NumpyRandom {
        fn seed(seed: u32) -> Self {
            let mut mt = [seed; 624];
            for i in 1..624 {
                let prev = mt[i - 1];
                mt[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
            }
            NumpyRandom { mt, pos: 624, spare: None }
        }

        fn next_u32(&mut self) -> u32 {
            if self.pos == 624 {
                for i in 0..624 {
                    let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                    let twist = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                    self.mt[i] = self.mt[(i + 397) % 624] ^ (y >> 1) ^ twist;
                }
                self.pos = 0;
            }
            let mut y = self.mt[self.pos];
            self.pos += 1;
            y ^= y >> 11;
            y ^= (y << 7) & 0x9d2c_5680;
            y ^= (y << 15) & 0xefc6_0000;
            y ^ (y >> 18)
        }

        fn uniform(&mut self) -> f64 {
            let (a, b) = (self.next_u32() >> 5, self.next_u32() >> 6);
            (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
        }

        fn normal(&mut self) -> f64 {
            if let Some(spare) = self.spare.take() {
                return spare;
            }
            loop {
                let x1 = 2.0 * self.uniform() - 1.0;
                let x2 = 2.0 * self.uniform() - 1.0;
                let r2 = x1 * x1 + x2 * x2;
                if r2 < 1.0 && r2 != 0.0 {
                    let f = (-2.0 * r2.ln() / r2).sqrt();
                    self.spare = Some(f * x1);
                    return f * x2;
                }
            }
        }

        fn normals(&mut self, n: usize) -> Vec<f64> {
            (0..n).map(|_| self.normal()).collect()
        }

        /// A random split of `len` samples into packets of 0..=`max` samples.
        fn packets(&mut self, len: usize, max: usize) -> Vec<Range<usize>> {
            let mut packets = Vec::new();
            let mut start = 0;
            while start < len {
                let size = ((self.uniform() * (max + 1) as f64) as usize).min(len - start);
                packets.push(start..start + size);
                start += size;
            }
            packets
        }
    }

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
        serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
    }

    /// ObsPy's C `stalta` kernel as a plain loop: the same running sums, added in the same order.
    fn obspy_c_classic(a: &[f64], nsta: usize, nlta: usize) -> Vec<f64> {
        let sq = |i: usize| a[i] * a[i];
        let frac = nlta as f64 / nsta as f64;
        let mut sta: f64 = (0..nsta).map(sq).fold(0.0, |sum, e| sum + e);
        let mut lta = sta;
        for i in nsta..nlta {
            lta += sq(i);
            sta += sq(i) - sq(i - nsta);
        }
        let mut out = vec![0.0; nlta - 1];
        out.push(sta / lta * frac);
        for i in nlta..a.len() {
            sta += sq(i) - sq(i - nsta);
            lta += sq(i) - sq(i - nlta);
            out.push(sta / lta * frac);
        }
        out
    }

    /// The classic definition itself, without running sums: window means of x² (ndarray).
    fn windowed_means(a: &[f64], nsta: usize, nlta: usize) -> Vec<f64> {
        let sq = Array1::from_iter(a.iter().map(|x| x * x));
        let means = |n: usize| -> Vec<f64> { sq.windows(n).into_iter().map(|w| w.mean().unwrap()).collect() };
        let (sta, lta) = (means(nsta), means(nlta));
        (0..a.len()).map(|i| if i + 1 < nlta { 0.0 } else { sta[i + 1 - nsta] / lta[i + 1 - nlta] }).collect()
    }

    /// ObsPy's recursive recurrence (the C loop from the second sample; LTA starting at `tiny`
    /// as in `recursive_sta_lta_py`), ratios zeroed over the first `nlta` samples.
    fn obspy_recursive(a: &[f64], nsta: usize, nlta: usize) -> Vec<f64> {
        let (csta, clta) = (1.0 / nsta as f64, 1.0 / nlta as f64);
        let (mut sta, mut lta) = (0.0, f64::MIN_POSITIVE);
        let mut out = vec![0.0];
        for &x in &a[1..] {
            sta = csta * (x * x) + (1.0 - csta) * sta;
            lta = clta * (x * x) + (1.0 - clta) * lta;
            out.push(sta / lta);
        }
        out[..nlta.min(a.len())].fill(0.0);
        out
    }

    #[test]
    fn batch_filters_reproduce_obspys_reference_values() {
        // obspy/signal/tests/test_trigger.py: np.random.seed(815); randn(1e5); nsta 5, nlta 10;
        // ratios at samples 99..=102 (classic: test_classic_sta_lta_c_python, recursive:
        // test_rec_sta_lta_c). Only the first 103 samples matter.
        let data = NumpyRandom::seed(815).normals(103);
        let expected = [
            (classic_sta_lta(&data, 5, 10), [0.38012302, 0.37704431, 0.47674533, 0.67992292]),
            (recursive_sta_lta(&data, 5, 10), [0.80810165, 0.75939449, 0.91763978, 0.97465004]),
        ];
        for (ratios, reference) in expected {
            for (got, want) in ratios[99..].iter().zip(reference) {
                assert!((got - want).abs() < 1e-8, "{got} vs ObsPy {want}");
            }
        }
    }

    #[test]
    fn batch_filters_match_obspys_arithmetic_bit_for_bit_and_the_definition() {
        let data = NumpyRandom::seed(815).normals(20_000);
        for (nsta, nlta) in [(5, 10), (50, 1000), (500, 1000), (1, 1), (7, 7)] {
            let classic = classic_sta_lta(&data, nsta, nlta);
            assert_eq!(classic, obspy_c_classic(&data, nsta, nlta), "classic {nsta}/{nlta}");
            assert_eq!(
                recursive_sta_lta(&data, nsta, nlta),
                obspy_recursive(&data, nsta, nlta),
                "recursive {nsta}/{nlta}"
            );
            // ObsPy checks its C kernel against its moving-mean Python version to rtol 1e-10.
            for (got, want) in classic.iter().zip(windowed_means(&data, nsta, nlta)) {
                assert!((got - want).abs() <= 1e-10 * want.abs(), "{got} vs {want} ({nsta}/{nlta})");
            }
        }
    }

    #[test]
    fn streaming_filters_equal_batch_for_any_packet_split_and_snapshot() {
        let mut rng = NumpyRandom::seed(7);
        let mut record = rng.normals(20_000);
        for (k, x) in record[12_000..13_000].iter_mut().enumerate() {
            *x *= 1.0 + 40.0 * (-(k as f64) / 300.0).exp();
        }
        for (nsta, nlta) in [(50, 1000), (500, 1000), (3, 40), (1, 1), (7, 7)] {
            let (classic, recursive) = (classic_sta_lta(&record, nsta, nlta), recursive_sta_lta(&record, nsta, nlta));
            let one_second = (0..record.len()).step_by(100).map(|s| s..(s + 100).min(record.len())).collect();
            for packets in [one_second, rng.packets(record.len(), 250), rng.packets(record.len(), 7)] {
                let mut c = ClassicStaLta::new(nsta, nlta).unwrap();
                let mut r = RecursiveStaLta::new(nsta, nlta).unwrap();
                let (mut c_out, mut r_out) = (Vec::new(), Vec::new());
                for (k, packet) in packets.iter().enumerate() {
                    if k % 41 == 3 {
                        (c, r) = (roundtrip(&c), roundtrip(&r));
                    }
                    c.process(&record[packet.clone()], &mut c_out);
                    r.process(&record[packet.clone()], &mut r_out);
                }
                assert_eq!(c_out, classic, "classic {nsta}/{nlta}");
                assert_eq!(r_out, recursive, "recursive {nsta}/{nlta}");
            }
        }
    }

    /// ObsPy's `test_trigger_onset` characteristic function: four copies of
    /// `np.sin(np.arange(0, 5 * np.pi, 0.1))`, offset by 1, 2.1, 0.4 and 1.
    fn obspy_sine_cft() -> Vec<f64> {
        // arange(0, 5π, 0.1) has ceil(5π / 0.1) = 158 points; NumPy computes the k-th as 0.1·k.
        let sine: Vec<f64> = (0..158).map(|k| (0.1 * f64::from(k)).sin()).collect();
        [1.0, 2.1, 0.4, 1.0].into_iter().flat_map(|offset| sine.iter().map(move |s| s + offset)).collect()
    }

    const OBSPY_PICKS: [[usize; 2]; 8] =
        [[6, 31], [69, 94], [131, 181], [215, 265], [278, 315], [480, 505], [543, 568], [605, 631]];

    /// Feeds `cft` to `trigger` packet by packet (through a snapshot each time) and pairs the
    /// events like `trigger_onset`, closing an event still open at the last sample.
    fn streamed_picks(mut trigger: Trigger, cft: &[f64], packets: &[Range<usize>]) -> Vec<[usize; 2]> {
        let mut events = Vec::new();
        for packet in packets {
            trigger = roundtrip(&trigger);
            trigger.feed(packet.start as u64, &cft[packet.clone()], &mut events);
        }
        let (mut picks, mut onset) = (Vec::new(), None);
        for event in events {
            match event {
                TriggerEvent::On { index } => assert_eq!(onset.replace(index as usize), None),
                TriggerEvent::Off { index, .. } => picks.push([onset.take().unwrap(), index as usize]),
            }
        }
        assert_eq!(trigger.active_since().map(|i| i as usize), onset);
        picks.extend(onset.map(|on| [on, cft.len() - 1]));
        picks
    }

    #[test]
    fn trigger_onset_reproduces_obspys_golden_picks() {
        let cft = obspy_sine_cft();
        assert_eq!(cft.len(), 632);
        assert_eq!(trigger_onset(&cft, 1.5, 1.0, 50, false), OBSPY_PICKS);
        // max_len_delete drops the events longer than 50 samples: ObsPy keeps picks 0, 1, 5, 6, 7.
        let kept: Vec<[usize; 2]> = [0, 1, 5, 6, 7].map(|k| OBSPY_PICKS[k]).to_vec();
        assert_eq!(trigger_onset(&cft, 1.5, 1.0, 50, true), kept);
    }

    #[test]
    fn streaming_trigger_gives_the_golden_picks_in_any_packet_split() {
        let cft = obspy_sine_cft();
        let mut events = Vec::new();
        Trigger::new(1.5, 1.0, 50).unwrap().feed(0, &cft, &mut events);
        let forced: Vec<bool> = events
            .iter()
            .filter_map(|e| if let TriggerEvent::Off { forced, .. } = e { Some(*forced) } else { None })
            .collect();
        // The last event, [605, 631], is still on at the record's end: no off event yet.
        assert_eq!(forced, [false, false, true, true, false, false, false]);
        let mut rng = NumpyRandom::seed(1);
        for _ in 0..20 {
            let packets = rng.packets(cft.len(), 40);
            assert_eq!(streamed_picks(Trigger::new(1.5, 1.0, 50).unwrap(), &cft, &packets), OBSPY_PICKS);
        }
    }

    #[test]
    fn streaming_trigger_equals_trigger_onset_on_random_ratios() {
        let mut rng = NumpyRandom::seed(2);
        // A wandering ratio on a 0.25 grid, so that values equal to a threshold occur.
        let mut level = 0.0;
        let cft: Vec<f64> = (0..20_000)
            .map(|_| {
                level = 0.95 * level + 0.5 * rng.normal();
                ((2.0 + level) * 4.0).round() / 4.0
            })
            .collect();
        for (on, off, max_len) in
            [(3.0, 1.5, 40), (3.5, 1.0, usize::MAX), (2.0, 2.0, 10), (3.0, 0.5, 0), (3.0, 2.5, 1), (4.0, 1.0, 300)]
        {
            let batch = trigger_onset(&cft, on, off, max_len, false);
            assert!(batch.len() > 10, "too few events to compare for on {on}, off {off}");
            let packets = rng.packets(cft.len(), 150);
            let streamed = streamed_picks(Trigger::new(on, off, max_len as u64).unwrap(), &cft, &packets);
            assert_eq!(streamed, batch, "on {on}, off {off}, max_len {max_len}");
        }
    }

    #[test]
    fn a_cut_event_needs_a_fresh_crossing_of_on_to_trigger_again() {
        let cft: Vec<f64> = (0..1500)
            .map(|i| match i {
                10..1010 | 1020..1100 => 5.0,
                1010..1020 => 2.0,
                _ => 0.5,
            })
            .collect();
        let mut events = Vec::new();
        Trigger::new(3.5, 1.0, 300).unwrap().feed(0, &cft, &mut events);
        use TriggerEvent::{Off, On};
        let expected = [
            On { index: 10 },
            Off { index: 310, forced: true },
            On { index: 1020 },
            Off { index: 1099, forced: false },
        ];
        assert_eq!(events, expected);
        assert_eq!(trigger_onset(&cft, 3.5, 1.0, 300, false), [[10, 310], [1020, 1099]]);
        // With max_len_delete ObsPy drops the long event together with the re-crossing inside it.
        assert!(trigger_onset(&cft, 3.5, 1.0, 300, true).is_empty());
    }

    const RATE: usize = 100;

    /// `seconds` of unit-variance noise at 100 Hz plus a 5 Hz sine of amplitude 10 over `burst`.
    fn record(seed: u32, seconds: usize, burst: Range<usize>) -> Vec<f64> {
        let mut rng = NumpyRandom::seed(seed);
        (0..seconds * RATE)
            .map(|i| {
                let signal =
                    if burst.contains(&i) { 10.0 * (2.0 * PI * 5.0 * i as f64 / RATE as f64).sin() } else { 0.0 };
                rng.normal() + signal
            })
            .collect()
    }

    /// The typical recursive setup (STA 0.5 s, LTA 10 s, on 3.5, off 1.0) fed 1-s packets.
    fn detect(samples: &[f64], max_len: u64) -> Vec<TriggerEvent> {
        let mut sta_lta = RecursiveStaLta::new(RATE / 2, 10 * RATE).unwrap();
        let mut trigger = Trigger::new(3.5, 1.0, max_len).unwrap();
        let (mut ratio, mut events) = (Vec::with_capacity(RATE), Vec::new());
        for (k, packet) in samples.chunks(RATE).enumerate() {
            ratio.clear();
            sta_lta.process(packet, &mut ratio);
            trigger.feed((k * RATE) as u64, &ratio, &mut events);
        }
        events
    }

    #[test]
    fn a_burst_in_noise_triggers_once_at_its_onset() {
        let events = detect(&record(3, 60, 4000..4500), 30 * RATE as u64);
        let [TriggerEvent::On { index: on }, TriggerEvent::Off { index: off, forced: false }] = events[..] else {
            panic!("expected exactly one event, got {events:?}");
        };
        assert!((4000..4025).contains(&on), "onset {on} should be within 0.25 s of the burst at 4000");
        assert!((4500..4800).contains(&off), "end {off} should follow the burst's end at 4500");
    }

    #[test]
    fn noise_alone_never_triggers() {
        for seed in 10..13 {
            let events = detect(&record(seed, 600, 0..0), 30 * RATE as u64);
            assert!(events.is_empty(), "seed {seed}: {events:?}");
        }
    }

    #[test]
    fn a_never_ending_burst_is_cut_at_max_len() {
        let max_len = 10 * RATE as u64;
        let events = detect(&record(4, 60, 2000..6000), max_len);
        let [TriggerEvent::On { index: on }, off] = events[..] else {
            panic!("expected onset and cut, got {events:?}")
        };
        assert!((2000..2025).contains(&on), "onset {on}");
        assert_eq!(off, TriggerEvent::Off { index: on + max_len, forced: true });
    }

    #[test]
    fn silence_and_corrupt_samples_give_zero_not_nan() {
        // Leading silence: ObsPy's C kernels return 0/0 = NaN here.
        assert!(classic_sta_lta(&[0.0; 50], 5, 10).iter().all(|&r| r == 0.0));
        assert!(recursive_sta_lta(&[0.0; 50], 5, 10).iter().all(|&r| r == 0.0));

        // A channel that goes dead after activity.
        let mut record = NumpyRandom::seed(5).normals(200);
        record.resize(20_200, 0.0);
        let classic = classic_sta_lta(&record, 5, 10);
        assert!(classic[204..].iter().all(|&r| r == 0.0), "ratio is 0 once the STA window is silent");
        // ObsPy's running sums keep rounding residues, whose ratio is O(1) (here −2.7) for good.
        assert!(obspy_c_classic(&record, 5, 10)[209..].iter().all(|&r| r.abs() > 1.0));
        let (mut streamed, mut filter) = (Vec::new(), ClassicStaLta::new(5, 10).unwrap());
        for packet in record.chunks(37) {
            filter = roundtrip(&filter);
            filter.process(packet, &mut streamed);
        }
        assert_eq!(streamed, classic);
        // The averages sink into subnormals, where ObsPy's ratio settles at 1 (both stuck at the
        // smallest subnormal) or, with nsta = nlta = 1, turns 0/0 = NaN.
        let recursive = recursive_sta_lta(&record, 5, 10);
        assert!(recursive.iter().all(|r| r.is_finite()));
        assert!(recursive[20_000..].iter().all(|&r| r < 1e-15), "{:?}", recursive.last());
        assert_eq!(recursive_sta_lta(&[1.0, 1.0, 1.0, 0.0, 0.0], 1, 1), [0.0, 1.0, 1.0, 0.0, 0.0]);

        // Corrupt samples count as silence instead of poisoning the averages.
        let clean = NumpyRandom::seed(6).normals(300);
        let (mut broken, mut zeroed) = (clean.clone(), clean);
        for (k, bad) in [(100, f64::NAN), (150, f64::INFINITY), (160, -1e200)] {
            broken[k] = bad;
            zeroed[k] = 0.0;
        }
        assert_eq!(classic_sta_lta(&broken, 5, 10), classic_sta_lta(&zeroed, 5, 10));
        assert_eq!(recursive_sta_lta(&broken, 5, 10), recursive_sta_lta(&zeroed, 5, 10));
    }

    #[test]
    fn bad_parameters_and_corrupt_snapshots_are_rejected() {
        assert_eq!(RecursiveStaLta::new(0, 10), Err(StaLtaError::Windows { nsta: 0, nlta: 10 }));
        assert_eq!(ClassicStaLta::new(11, 10), Err(StaLtaError::Windows { nsta: 11, nlta: 10 }));
        assert_eq!(Trigger::new(1.0, 3.5, 100), Err(StaLtaError::Thresholds { on: 1.0, off: 3.5 }));
        assert!(Trigger::new(f64::NAN, 1.0, 100).is_err());

        let mut snapshot = serde_json::to_value(ClassicStaLta::new(5, 10).unwrap()).unwrap();
        snapshot["ring"].as_array_mut().unwrap().pop();
        let err = serde_json::from_value::<ClassicStaLta>(snapshot).unwrap_err();
        assert!(err.to_string().contains("holds 9 samples, but nlta is 10"), "{err}");
        let mut snapshot = serde_json::to_value(RecursiveStaLta::new(5, 10).unwrap()).unwrap();
        snapshot["nsta"] = 0.into();
        assert!(serde_json::from_value::<RecursiveStaLta>(snapshot).is_err());
        let mut snapshot = serde_json::to_value(Trigger::new(3.5, 1.0, 100).unwrap()).unwrap();
        snapshot["off"] = 4.0.into();
        assert!(serde_json::from_value::<Trigger>(snapshot).is_err());
    }

    #[test]
    #[should_panic(expected = "1 <= nsta <= nlta")]
    fn batch_functions_panic_on_impossible_windows() {
        classic_sta_lta(&[1.0; 10], 0, 5);
    }
}
