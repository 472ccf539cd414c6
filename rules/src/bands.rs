//! Four-level threshold bands with deadband hysteresis and an on-delay.
//!
//! The raise condition for a level is `value ≥ threshold` (rising) or `value ≤ threshold`
//! (falling). A level is only entered once its raise condition has held for the on-delay
//! (N consecutive samples and/or T seconds of event time), which keeps one spike from paging
//! anyone. Once in a level, the alert stays there until the value leaves the level's
//! *deadband* (`threshold − deadband` when rising), so noise around a threshold cannot make it
//! flap. Leaving drops to the highest lower level whose deadband still holds, or clears — and
//! only once that lower state has itself held for the off-delay, so a turbulent gas plume or
//! a seismic coda does not bounce an alert up and down the ladder.

use riskwatch_core::{Level, Timestamp};
use std::num::NonZeroU32;

/// Whether higher or lower values are worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Alarm at or above thresholds (water level, gas concentration).
    Rising,
    /// Alarm at or below thresholds (reservoir low level, oxygen deficiency).
    Falling,
}

/// How long a condition must hold before it takes effect (on-delay for raising, off-delay for
/// de-escalating and clearing). Both parts must be met; the default takes effect at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// Consecutive samples that must satisfy the condition (0 or 1 = immediately).
    #[serde(default)]
    pub samples: u32,
    /// Event-time seconds the condition must have held (0 = immediately).
    #[serde(default)]
    pub seconds: u32,
}

/// Resolved band parameters for one (rule, sensor) binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BandSpec {
    /// Which side is dangerous.
    pub direction: Direction,
    /// Threshold per level, blue..red; `None` where the rule has no such level.
    pub thresholds: [Option<f64>; 4],
    /// Hysteresis width (≥ 0), in the measure's unit.
    pub deadband: f64,
    /// Confirmation before entering a level.
    pub on_delay: Delay,
    /// Confirmation before leaving a level downwards.
    pub off_delay: Delay,
}

/// Running streak of samples satisfying one level's raise condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Streak {
    since: Timestamp,
    /// Never zero (a streak starts at its first sample), which lets `Option<Streak>` take 16
    /// bytes rather than 24: every binding and data-quality test of every sensor holds five.
    /// Serialised as the plain number.
    samples: NonZeroU32,
}

/// The mutable state of one binding: current level and per-level confirmation streaks.
///
/// Held as plain arrays (streak `i` of levels blue..red, and index 4 the streak of going
/// down): 64 bytes rather than 88, one cache line, for a state every reading of every binding
/// reads. A streak that is not running has zero samples and time 0. Serialised as
/// `{level, streaks: [4 × streak or null], down: streak or null}`.
#[derive(Clone, Debug, PartialEq)]
pub struct BandState {
    /// Current level, `None` when no alert is active.
    pub level: Option<Level>,
    samples: [u32; 5],
    since: [Timestamp; 5],
}

impl Default for BandState {
    fn default() -> Self {
        BandState { level: None, samples: [0; 5], since: [Timestamp(0); 5] }
    }
}

/// Index of the down streak in [`BandState`]'s arrays.
const DOWN: usize = 4;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "BandState")]
struct BandStateRepr {
    level: Option<Level>,
    streaks: [Option<Streak>; 4],
    down: Option<Streak>,
}

impl serde::Serialize for BandState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BandStateRepr { level: self.level, streaks: std::array::from_fn(|i| self.streak(i)), down: self.streak(DOWN) }
            .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for BandState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = BandStateRepr::deserialize(deserializer)?;
        let mut state = BandState { level: repr.level, ..BandState::default() };
        for (i, s) in repr.streaks.into_iter().enumerate() {
            state.set_streak(i, s);
        }
        state.set_streak(DOWN, repr.down);
        Ok(state)
    }
}

impl BandState {
    #[inline]
    fn streak(&self, i: usize) -> Option<Streak> {
        NonZeroU32::new(self.samples[i]).map(|samples| Streak { since: self.since[i], samples })
    }

    #[inline]
    fn set_streak(&mut self, i: usize, s: Option<Streak>) {
        match s {
            Some(s) => {
                self.samples[i] = s.samples.get();
                self.since[i] = s.since;
            }
            None => {
                self.samples[i] = 0;
                self.since[i] = Timestamp(0);
            }
        }
    }
}

/// Ladders that are almost always at rest — a sensor's data-quality tests, which raise an alert
/// only when the data goes bad — held without a heap allocation until one of them moves, so
/// that the thousands of healthy sensors do not each carry them.
#[derive(Clone, Debug, Default)]
pub(crate) struct RestingLadders<const N: usize>(Option<Box<[BandState; N]>>);

impl<const N: usize> RestingLadders<N> {
    /// Whether ladder `i` has no level and nothing pending.
    pub(crate) fn at_rest(&self, i: usize) -> bool {
        self.0.as_ref().is_none_or(|all| all[i] == BandState::default())
    }

    /// The level ladder `i` holds.
    pub(crate) fn level(&self, i: usize) -> Option<riskwatch_core::Level> {
        self.0.as_ref().and_then(|all| all[i].level)
    }

    /// Ladder `i`, to step.
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut BandState {
        &mut self.0.get_or_insert_with(|| Box::new(std::array::from_fn(|_| BandState::default())))[i]
    }

    /// Sets ladder `i` (no allocation for a ladder at rest).
    pub(crate) fn set(&mut self, i: usize, state: BandState) {
        if self.0.is_some() || state != BandState::default() {
            *self.get_mut(i) = state;
        }
    }

    /// All ladders.
    pub(crate) fn to_array(&self) -> [BandState; N] {
        self.0.as_deref().cloned().unwrap_or_else(|| std::array::from_fn(|_| BandState::default()))
    }
}

impl<const N: usize> PartialEq for RestingLadders<N> {
    fn eq(&self, other: &Self) -> bool {
        self.to_array() == other.to_array()
    }
}

/// What one sample says about each level: whether its raise condition holds, and whether an
/// alert already at that level may stay there (its condition inside the deadband). `None` for
/// levels the rule does not use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelInputs {
    /// Raise condition per level, blue..red.
    pub raises: [Option<bool>; 4],
    /// Hold condition per level, blue..red.
    pub holds: [Option<bool>; 4],
}

impl LevelInputs {
    /// Inputs for a one-level alarm (data-quality, stale, sensor-fault): raise and hold
    /// conditions for `level` only.
    pub fn single(level: Level, raises: bool, holds: bool) -> Self {
        let mut inputs = LevelInputs::default();
        inputs.raises[level.index()] = Some(raises);
        inputs.holds[level.index()] = Some(holds);
        inputs
    }
}

impl BandState {
    /// Feeds one sample's per-level conditions and returns `(from, to)` when the level changes.
    /// This is the whole ladder logic (on-delay per level, deadband via `holds`, off-delay for
    /// going down) for any kind of condition: thresholds, rates, accumulations, composites.
    pub fn step(
        &mut self,
        ts: Timestamp,
        inputs: &LevelInputs,
        on_delay: Delay,
        off_delay: Delay,
    ) -> Option<(Option<Level>, Option<Level>)> {
        // Written with plain indices: this runs for every reading of every binding.
        let need_samples = on_delay.samples.max(1);
        let need_ms = i64::from(on_delay.seconds) * 1000;
        let mut target: Option<Level> = None;
        // Nothing raised and no streak running (the usual quiet reading): the loop below would
        // change nothing and find no target.
        let quiet = !inputs.raises.contains(&Some(true)) && self.samples[..DOWN] == [0; 4];
        for i in 0..if quiet { 0 } else { 4 } {
            let Some(raise) = inputs.raises[i] else { continue };
            if raise {
                let s = match self.streak(i) {
                    Some(s) => Streak { since: s.since, samples: s.samples.saturating_add(1) },
                    None => Streak { since: ts, samples: NonZeroU32::MIN },
                };
                self.set_streak(i, Some(s));
                if s.samples.get() >= need_samples && ts.millis() - s.since.millis() >= need_ms {
                    target = Some(Level::ALL[i]);
                }
            } else {
                self.set_streak(i, None);
            }
        }
        // Staying: the highest level at or below the current one whose hold condition holds.
        if let Some(current) = self.level {
            let mut i = current.index() + 1;
            while i > 0 {
                i -= 1;
                if inputs.holds[i] == Some(true) {
                    target = target.max(Some(Level::ALL[i]));
                    break;
                }
            }
        }
        if target < self.level {
            let down = extend(self.streak(DOWN), ts);
            self.set_streak(DOWN, down);
            if !confirmed(off_delay, down, ts) {
                return None;
            }
        }
        self.set_streak(DOWN, None);
        if target == self.level {
            return None;
        }
        let from = self.level;
        self.level = target;
        Some((from, target))
    }
}

/// A change of level caused by one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// Level before.
    pub from: Option<Level>,
    /// Level after (`None` = cleared).
    pub to: Option<Level>,
    /// The threshold that decided it: the entered level's raise threshold when going up, the
    /// left level's clear threshold (threshold ∓ deadband) when going down.
    pub threshold: f64,
}

/// The band state machine (stateless; state lives in [`BandState`]).
pub struct ThresholdBands;

impl BandSpec {
    fn raises(&self, v: f64, t: f64) -> bool {
        match self.direction {
            Direction::Rising => v >= t,
            Direction::Falling => v <= t,
        }
    }

    fn clear_threshold(&self, t: f64) -> f64 {
        match self.direction {
            Direction::Rising => t - self.deadband,
            Direction::Falling => t + self.deadband,
        }
    }

    /// Whether a value still holds a level already entered (inside its deadband).
    fn holds(&self, v: f64, t: f64) -> bool {
        self.raises(v, self.clear_threshold(t))
    }
}

fn confirmed(delay: Delay, s: Option<Streak>, now: Timestamp) -> bool {
    s.is_some_and(|s| {
        s.samples.get() >= delay.samples.max(1) && now.millis() - s.since.millis() >= i64::from(delay.seconds) * 1000
    })
}

fn extend(s: Option<Streak>, ts: Timestamp) -> Option<Streak> {
    Some(s.map_or(Streak { since: ts, samples: NonZeroU32::MIN }, |s| Streak {
        samples: s.samples.saturating_add(1),
        ..s
    }))
}

impl ThresholdBands {
    /// Feeds one value (already quality-checked and in event-time order) and returns the level
    /// change it causes, if any.
    pub fn step(spec: &BandSpec, state: &mut BandState, ts: Timestamp, v: f64) -> Option<Transition> {
        let mut inputs = LevelInputs::default();
        for (i, t) in spec.thresholds.iter().enumerate() {
            if let Some(t) = t {
                inputs.raises[i] = Some(spec.raises(v, *t));
                inputs.holds[i] = Some(spec.holds(v, *t));
            }
        }
        let (from, to) = state.step(ts, &inputs, spec.on_delay, spec.off_delay)?;
        let threshold = if to > from {
            to.and_then(|l| spec.thresholds[l.index()])
        } else {
            from.and_then(|l| spec.thresholds[l.index()]).map(|t| spec.clear_threshold(t))
        };
        Some(Transition { from, to, threshold: threshold.unwrap_or(f64::NAN) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    fn spec(deadband: f64, samples: u32, seconds: u32) -> BandSpec {
        BandSpec {
            direction: Direction::Rising,
            thresholds: [Some(10.0), Some(20.0), Some(30.0), Some(40.0)],
            deadband,
            on_delay: Delay { samples, seconds },
            off_delay: Delay::default(),
        }
    }

    /// Runs values at 1-minute spacing and returns the level after each sample.
    fn run(spec: &BandSpec, values: &[f64]) -> Vec<Option<Level>> {
        let mut st = BandState::default();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                ThresholdBands::step(spec, &mut st, Timestamp(i as i64 * 60_000), *v);
                st.level
            })
            .collect()
    }

    #[test]
    fn raises_escalates_de_escalates_and_clears() {
        let s = spec(1.0, 1, 0);
        let levels = run(&s, &[5.0, 12.0, 25.0, 45.0, 35.0, 15.0, 5.0]);
        assert_eq!(levels, vec![None, Some(Blue), Some(Yellow), Some(Red), Some(Orange), Some(Blue), None]);
    }

    #[test]
    fn jumping_straight_to_red_raises_red() {
        let s = spec(0.0, 1, 0);
        let mut st = BandState::default();
        let t = ThresholdBands::step(&s, &mut st, Timestamp(0), 41.0).unwrap();
        assert_eq!((t.from, t.to, t.threshold), (None, Some(Red), 40.0));
    }

    #[test]
    fn deadband_holds_level_until_value_leaves_it() {
        let s = spec(2.0, 1, 0);
        // Enters yellow at 20, stays while ≥ 18, drops to blue at 17.9.
        let levels = run(&s, &[21.0, 19.0, 18.0, 17.9]);
        assert_eq!(levels, vec![Some(Yellow), Some(Yellow), Some(Yellow), Some(Blue)]);
        let mut st = BandState::default();
        ThresholdBands::step(&s, &mut st, Timestamp(0), 21.0);
        let t = ThresholdBands::step(&s, &mut st, Timestamp(1), 17.9).unwrap();
        assert_eq!(t.threshold, 18.0, "a downgrade reports the clear threshold");
    }

    #[test]
    fn noise_around_a_threshold_does_not_flap() {
        let s = spec(0.5, 1, 0);
        // ±0.3 around the yellow threshold of 20 after entering yellow.
        let noisy: Vec<f64> = (0..200).map(|i| 20.0 + if i % 2 == 0 { 0.3 } else { -0.3 }).collect();
        let mut st = BandState::default();
        let changes: Vec<Transition> = noisy
            .iter()
            .enumerate()
            .filter_map(|(i, v)| ThresholdBands::step(&s, &mut st, Timestamp(i as i64 * 1000), *v))
            .collect();
        assert_eq!(changes.len(), 1, "one raise, no flapping: {changes:?}");
        assert_eq!(changes[0].to, Some(Yellow));
    }

    #[test]
    fn on_delay_in_samples_ignores_a_single_spike() {
        let s = spec(0.0, 3, 0);
        assert_eq!(run(&s, &[5.0, 50.0, 5.0, 5.0]), vec![None; 4]);
        assert_eq!(run(&s, &[25.0, 25.0, 25.0]), vec![None, None, Some(Yellow)]);
    }

    #[test]
    fn on_delay_in_seconds_uses_event_time() {
        let s = spec(0.0, 1, 120);
        // Samples one minute apart: the condition has held 120 s at the third sample.
        assert_eq!(run(&s, &[15.0, 15.0, 15.0]), vec![None, None, Some(Blue)]);
    }

    #[test]
    fn escalation_also_waits_for_its_on_delay() {
        let s = spec(0.0, 2, 0);
        assert_eq!(
            run(&s, &[25.0, 25.0, 45.0, 25.0, 45.0, 45.0]),
            vec![None, Some(Yellow), Some(Yellow), Some(Yellow), Some(Yellow), Some(Red)]
        );
    }

    #[test]
    fn off_delay_holds_a_level_through_short_dips() {
        let s = BandSpec { off_delay: Delay { samples: 0, seconds: 180 }, ..spec(0.0, 1, 0) };
        // Red, a two-minute dip to orange, red again; then a sustained fall clears after 3 min.
        let levels = run(&s, &[45.0, 35.0, 35.0, 45.0, 5.0, 5.0, 5.0, 5.0]);
        assert_eq!(levels, vec![Some(Red), Some(Red), Some(Red), Some(Red), Some(Red), Some(Red), Some(Red), None]);
    }

    #[test]
    fn falling_direction_alarms_on_low_values() {
        let s = BandSpec {
            direction: Direction::Falling,
            thresholds: [Some(19.5), Some(18.0), None, None],
            deadband: 0.2,
            on_delay: Delay::default(),
            off_delay: Delay::default(),
        };
        let levels = run(&s, &[20.9, 19.4, 17.5, 18.1, 18.3, 19.8]);
        assert_eq!(levels, vec![None, Some(Blue), Some(Yellow), Some(Yellow), Some(Blue), None]);
    }

    #[test]
    fn rules_without_some_levels_skip_them() {
        let s = BandSpec {
            direction: Direction::Rising,
            thresholds: [None, Some(25.0), Some(50.0), None],
            deadband: 0.0,
            on_delay: Delay::default(),
            off_delay: Delay::default(),
        };
        assert_eq!(run(&s, &[10.0, 30.0, 200.0]), vec![None, Some(Yellow), Some(Orange)]);
    }
}
