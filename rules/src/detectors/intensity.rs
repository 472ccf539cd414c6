//! Instrumental seismic intensity after GB/T 17742-2020 appendix A, as a streaming meter.
//!
//! A strong-motion terminal publishes packets of 3-component acceleration. [`IntensityMeter`]
//! runs each component through the standard's processing chain and keeps the filter state
//! between packets, so a record gives the same numbers whether it arrives in 1-s packets, in
//! one piece or in arbitrary splits (and replay equals live):
//!
//! 1. band-pass 0.1–10 Hz: a 2nd-order Butterworth high-pass at 0.1 Hz followed by a 4th-order
//!    Butterworth low-pass at 10 Hz, as biquads from the bilinear transform with the corner
//!    frequencies pre-warped (so the −3 dB points sit exactly at 0.1 Hz and 10 Hz);
//! 2. velocity: trapezoidal integration of the filtered acceleration, then the same 0.1 Hz
//!    high-pass again, which removes the drift integration builds from any residual offset;
//! 3. vector combination per sample, √(e² + n² + z²), for acceleration and for velocity;
//!    PGA and PGV are the maxima of those magnitudes (m/s², m/s);
//! 4. [`instrumental_intensity`] turns PGA and PGV into the intensity I.
//!
//! Filter state starts as if the first sample of each component had been constant forever,
//! so a sensor's static offset (gravity leakage, a tilted mount) gives no start-up transient.
//! The meter is sans-IO numerics: no clock, no allocation after construction.

use riskwatch_core::{Level, Waveform};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Lower band edge of the standard's band-pass, Hz.
pub const BAND_LOW_HZ: f64 = 0.1;
/// Upper band edge of the standard's band-pass, Hz.
pub const BAND_HIGH_HZ: f64 = 10.0;
/// Components combined into one vector (east, north, vertical). Further channels are ignored.
pub const MAX_COMPONENTS: usize = 3;
/// Largest sample magnitude accepted, m/s² (about 100 000 g). No accelerometer reports more,
/// so a larger value is corruption; bounding the input keeps every square finite, which in
/// turn keeps the state serialisable into engine snapshots.
pub const MAX_ACCEL_M_S2: f64 = 1.0e6;

/// Q factors of the two sections of a 4th-order Butterworth filter: 1 / (2·sin((2k−1)π/8)).
const BUTTERWORTH4_Q: [f64; 2] = [1.306_562_964_876_376_6, 0.541_196_100_146_197];

/// Why a meter cannot be built or a packet cannot be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntensityError {
    /// The 10 Hz band edge must lie below the Nyquist frequency.
    #[error("sample rate {rate_hz} Hz must be finite and above {min} Hz (twice the 10 Hz band edge)", min = 2.0 * BAND_HIGH_HZ)]
    SampleRate {
        /// The rejected rate.
        rate_hz: f64,
    },
    /// A packet's rate differs from the one the filters were designed for.
    #[error("packet sampled at {packet_hz} Hz, but the meter was built for {meter_hz} Hz")]
    RateMismatch {
        /// The meter's design rate.
        meter_hz: f64,
        /// The packet's rate.
        packet_hz: f64,
    },
    /// The unit conversion factor must be a positive finite number.
    #[error("unit scale {scale} to m/s² must be positive and finite")]
    UnitScale {
        /// The rejected factor.
        scale: f64,
    },
}

/// Peak ground motion over a span of samples (one packet, or everything since a reset) and the
/// intensity it implies. The default is "nothing moved": zero peaks, intensity 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MotionPeaks {
    /// Peak of the vector-combined band-passed acceleration, m/s².
    pub pga: f64,
    /// Peak of the vector-combined velocity, m/s.
    pub pgv: f64,
    /// [`instrumental_intensity`] of `pga` and `pgv` (1.0 when nothing moved).
    pub intensity: f64,
    /// Samples that were not finite or exceeded [`MAX_ACCEL_M_S2`] and were replaced by the
    /// component's previous usable sample; a data-quality signal for the caller.
    pub rejected_samples: u64,
}

impl Default for MotionPeaks {
    fn default() -> Self {
        MotionPeaks { pga: 0.0, pgv: 0.0, intensity: instrumental_intensity(0.0, 0.0), rejected_samples: 0 }
    }
}

impl MotionPeaks {
    fn absorb(&mut self, other: &MotionPeaks) {
        self.pga = self.pga.max(other.pga);
        self.pgv = self.pgv.max(other.pgv);
        self.rejected_samples += other.rejected_samples;
        self.intensity = instrumental_intensity(self.pga, self.pgv);
    }
}

/// Streaming GB/T 17742-2020 instrumental-intensity meter for one station.
///
/// Channels are taken in a fixed order (conventionally e, n, z); keep that order stable across
/// packets, since each position carries its own filter state. One or two channels work too (a
/// missing component contributes nothing); channels beyond [`MAX_COMPONENTS`] are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntensityMeter {
    /// Sample rate the filters were designed for, Hz.
    sample_rate_hz: f64,
    /// Filter coefficients shared by all components.
    filters: ChainDesign,
    /// Per-component filter and integrator state.
    components: [ComponentState; MAX_COMPONENTS],
    /// Peaks since construction or the last [`IntensityMeter::reset_peaks`].
    since_reset: MotionPeaks,
}

impl IntensityMeter {
    /// A meter for packets sampled at `sample_rate_hz`, which must exceed 20 Hz.
    pub fn new(sample_rate_hz: f64) -> Result<Self, IntensityError> {
        if !sample_rate_hz.is_finite() || sample_rate_hz <= 2.0 * BAND_HIGH_HZ {
            return Err(IntensityError::SampleRate { rate_hz: sample_rate_hz });
        }
        Ok(IntensityMeter {
            sample_rate_hz,
            filters: ChainDesign::new(sample_rate_hz),
            components: Default::default(),
            since_reset: MotionPeaks::default(),
        })
    }

    /// The sample rate the meter was built for, Hz.
    pub fn sample_rate_hz(&self) -> f64 {
        self.sample_rate_hz
    }

    /// Feeds one packet of acceleration in m/s², one slice per component, and returns the
    /// packet's peaks. Channels of unequal length are measured over the shortest (the longer
    /// ones' extra samples are dropped, keeping the components aligned); an empty packet
    /// returns [`MotionPeaks::default`] and leaves the state untouched.
    pub fn process<S: AsRef<[f64]>>(&mut self, channels: &[S]) -> MotionPeaks {
        let channels = &channels[..channels.len().min(MAX_COMPONENTS)];
        let len = channels.iter().map(|c| c.as_ref().len()).min().unwrap_or(0);
        self.run(channels.len(), len, |c, i| channels[c].as_ref()[i])
    }

    /// Feeds a waveform packet whose samples times `m_s2_per_unit` are m/s² (1.0 for m/s²,
    /// 0.01 for gal). Rejects a packet sampled at another rate than the meter's.
    pub fn process_waveform(&mut self, packet: &Waveform, m_s2_per_unit: f64) -> Result<MotionPeaks, IntensityError> {
        if !m_s2_per_unit.is_finite() || m_s2_per_unit <= 0.0 {
            return Err(IntensityError::UnitScale { scale: m_s2_per_unit });
        }
        if !packet.rate_hz.is_finite() || (packet.rate_hz - self.sample_rate_hz).abs() > 1e-9 * self.sample_rate_hz {
            return Err(IntensityError::RateMismatch { meter_hz: self.sample_rate_hz, packet_hz: packet.rate_hz });
        }
        let channels = &packet.channels[..packet.channels.len().min(MAX_COMPONENTS)];
        let len = channels.iter().map(|c| c.samples.len()).min().unwrap_or(0);
        Ok(self.run(channels.len(), len, |c, i| channels[c].samples[i] * m_s2_per_unit))
    }

    /// Peaks since construction or the last [`IntensityMeter::reset_peaks`]: the event's PGA,
    /// PGV and intensity so far.
    pub fn peak_since_reset(&self) -> MotionPeaks {
        self.since_reset
    }

    /// Starts a new event: clears the running peaks but keeps the filter state, so the signal
    /// path stays continuous.
    pub fn reset_peaks(&mut self) {
        self.since_reset = MotionPeaks::default();
    }

    fn run(&mut self, n_components: usize, len: usize, sample: impl Fn(usize, usize) -> f64) -> MotionPeaks {
        let mut peaks = MotionPeaks::default();
        for i in 0..len {
            let (mut acc_sq, mut vel_sq) = (0.0, 0.0);
            for (c, state) in self.components.iter_mut().take(n_components).enumerate() {
                let raw = sample(c, i);
                let usable = raw.is_finite() && raw.abs() <= MAX_ACCEL_M_S2;
                if !usable {
                    peaks.rejected_samples += 1;
                }
                let (acc, vel) = state.step(&self.filters, usable.then_some(raw));
                acc_sq += acc * acc;
                vel_sq += vel * vel;
            }
            peaks.pga = peaks.pga.max(acc_sq.sqrt());
            peaks.pgv = peaks.pgv.max(vel_sq.sqrt());
        }
        peaks.intensity = instrumental_intensity(peaks.pga, peaks.pgv);
        self.since_reset.absorb(&peaks);
        peaks
    }
}

/// I_A of GB/T 17742-2020 (A.5): 3.17·lg(PGA) + 6.59, PGA in m/s², unrounded and unclamped.
pub fn pga_intensity(pga: f64) -> f64 {
    3.17 * pga.log10() + 6.59
}

/// I_V of GB/T 17742-2020 (A.6): 3.00·lg(PGV) + 9.77, PGV in m/s, unrounded and unclamped.
pub fn pgv_intensity(pgv: f64) -> f64 {
    3.00 * pgv.log10() + 9.77
}

/// Instrumental intensity I from band-passed, vector-combined PGA (m/s²) and PGV (m/s).
///
/// Rule, as given in domain.md §5 for GB/T 17742-2020 appendix A: if I_A ≥ 6.0 and
/// I_V ≥ 6.0 then I = I_V, otherwise I = (I_A + I_V)/2; the branch is decided on the unrounded
/// I_A and I_V, then I is rounded to 0.1 and clamped to 1.0–12.0.
///
/// **Checked against published tables, not yet against the standard's text.**
/// rules/tests/intensity_reference.rs checks the ground motion GB/T 17742-2008's Table 1 lists
/// for degrees VI–X and the lower VI boundary of GB/T 17742-2020's Table A.1 (as quoted by an
/// independent implementation). domain.md marks the combination rule "(verify)": two
/// independent public implementations read it as here ("both ≥ 6.0"), at least one other
/// applies the I_V branch when *either* reaches 6.0. The readings differ only when exactly one
/// of them is ≥ 6.0 (e.g. PGA 1.0 m/s², PGV 0.01 m/s gives 5.2 here, 3.8 under the "or"
/// reading), which none of the table values exercises.
///
/// No motion (zero, negative or NaN peaks) gives the floor 1.0.
pub fn instrumental_intensity(pga: f64, pgv: f64) -> f64 {
    // lg 0 = −∞ sends a motionless term to the 1.0 floor through the clamp below.
    let still_as_zero = |x: f64| if x.is_nan() || x <= 0.0 { 0.0 } else { x };
    let i_a = pga_intensity(still_as_zero(pga));
    let i_v = pgv_intensity(still_as_zero(pgv));
    let i = if i_a >= 6.0 && i_v >= 6.0 { i_v } else { (i_a + i_v) / 2.0 };
    if i.is_nan() {
        return 1.0;
    }
    ((i * 10.0).round() / 10.0).clamp(1.0, 12.0)
}

/// The intensity degree (1 = I … 12 = XII) of an instrumental intensity: degree n covers
/// n − 0.5 ≤ I < n + 0.5, as in the instrumental column of GB/T 17742-2020's scale table
/// (verify against the table with the combination rule). `None` for NaN.
pub fn intensity_degree(intensity: f64) -> Option<u8> {
    if intensity.is_nan() {
        return None;
    }
    Some((intensity + 0.5).floor().clamp(1.0, 12.0) as u8)
}

/// Default warning colour for an instrumental intensity, after Yunnan earthquake-early-warning
/// practice: red from degree VII (I ≥ 6.5), orange for V–VI, yellow for III–IV, blue for
/// degree II (1.5 ≤ I < 2.5), and no alert below.
///
/// Why blue starts at degree II: "blue < III" has no lower bound, but degree I (I < 1.5) is
/// "not felt" and also holds the 1.0 floor every quiet packet is clamped to, so a blue alert
/// there would be permanent noise. Degree II, the first degree people feel, is the lower bound
/// the scale itself offers, so no new parameter is introduced.
///
/// This is a default: a rules file can put its own colour thresholds on the intensity value.
pub fn colour_for_intensity(intensity: f64) -> Option<Level> {
    match intensity_degree(intensity)? {
        7.. => Some(Level::Red),
        5..=6 => Some(Level::Orange),
        3..=4 => Some(Level::Yellow),
        2 => Some(Level::Blue),
        _ => None,
    }
}

/// One second-order section, normalised so a0 = 1, run in transposed direct form II.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
}

impl Biquad {
    /// Bilinear-transform design with the corner pre-warped: K = tan(π·f_c/f_s) maps the
    /// analogue prototype 1/(s² + s/Q + 1) (low-pass) or s²/(…) (high-pass) exactly onto f_c.
    fn design(high_pass: bool, corner_hz: f64, rate_hz: f64, q: f64) -> Self {
        let k = (PI * corner_hz / rate_hz).tan();
        let norm = 1.0 / (1.0 + k / q + k * k);
        let b0 = if high_pass { norm } else { k * k * norm };
        Biquad {
            b0,
            b1: if high_pass { -2.0 * b0 } else { 2.0 * b0 },
            b2: b0,
            a1: 2.0 * (k * k - 1.0) * norm,
            a2: (1.0 - k / q + k * k) * norm,
        }
    }

    fn step(&self, z: &mut [f64; 2], x: f64) -> f64 {
        let y = self.b0 * x + z[0];
        z[0] = self.b1 * x - self.a1 * y + z[1];
        z[1] = self.b2 * x - self.a2 * y;
        y
    }

    /// Sets the state to the steady state for a constant input `x`; returns that output.
    fn settle(&self, z: &mut [f64; 2], x: f64) -> f64 {
        let y = x * (self.b0 + self.b1 + self.b2) / (1.0 + self.a1 + self.a2);
        z[1] = self.b2 * x - self.a2 * y;
        z[0] = y - self.b0 * x;
        y
    }
}

/// Coefficients of the whole chain for one sample rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ChainDesign {
    /// 2nd-order Butterworth high-pass at 0.1 Hz, used on acceleration and on velocity.
    high_pass: Biquad,
    /// 4th-order Butterworth low-pass at 10 Hz as two sections.
    low_pass: [Biquad; 2],
    /// Half the sample interval, s, for the trapezoidal rule.
    half_dt: f64,
}

impl ChainDesign {
    fn new(rate_hz: f64) -> Self {
        ChainDesign {
            high_pass: Biquad::design(true, BAND_LOW_HZ, rate_hz, std::f64::consts::FRAC_1_SQRT_2),
            low_pass: BUTTERWORTH4_Q.map(|q| Biquad::design(false, BAND_HIGH_HZ, rate_hz, q)),
            half_dt: 0.5 / rate_hz,
        }
    }
}

/// The running state of one component's chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ComponentState {
    /// Last usable input sample; `None` until the first one arrives.
    last_input: Option<f64>,
    /// Acceleration high-pass state.
    high_pass: [f64; 2],
    /// Low-pass section states.
    low_pass: [[f64; 2]; 2],
    /// Previous filtered acceleration, m/s², for the trapezoid.
    prev_acc: f64,
    /// Integrated velocity before its high-pass, m/s.
    velocity: f64,
    /// Velocity high-pass state.
    velocity_high_pass: [f64; 2],
}

impl ComponentState {
    /// Advances one sample; `None` stands for an unusable sample, held at the last usable one
    /// so the components stay aligned in time. Returns filtered (acceleration, velocity).
    fn step(&mut self, chain: &ChainDesign, input: Option<f64>) -> (f64, f64) {
        let x = match (input, self.last_input) {
            (Some(x), Some(_)) => x,
            (Some(x), None) => {
                self.prime(chain, x);
                x
            }
            (None, Some(held)) => held,
            (None, None) => return (0.0, 0.0),
        };
        self.last_input = Some(x);
        let mut acc = chain.high_pass.step(&mut self.high_pass, x);
        for (section, z) in chain.low_pass.iter().zip(&mut self.low_pass) {
            acc = section.step(z, acc);
        }
        self.velocity += chain.half_dt * (self.prev_acc + acc);
        self.prev_acc = acc;
        let vel = chain.high_pass.step(&mut self.velocity_high_pass, self.velocity);
        if acc.is_finite() && vel.is_finite() {
            (acc, vel)
        } else {
            // Unreachable with bounded input, but a poisoned state would never recover.
            *self = ComponentState::default();
            (0.0, 0.0)
        }
    }

    /// Starts the chain as if `x` had been the input forever: the high-pass then outputs
    /// exactly zero, and everything downstream rests at zero.
    fn prime(&mut self, chain: &ChainDesign, x: f64) {
        *self = ComponentState::default();
        let acc = chain.high_pass.settle(&mut self.high_pass, x);
        for (section, z) in chain.low_pass.iter().zip(&mut self.low_pass) {
            section.settle(z, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: f64 = 100.0;

    fn tone(freq: f64, amp: f64, secs: f64, phase: f64) -> Vec<f64> {
        let n = (secs * FS).round() as usize;
        (0..n).map(|i| amp * (2.0 * PI * freq * i as f64 / FS + phase).sin()).collect()
    }

    /// Deterministic xorshift64 in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Processes `settle_s` seconds to let transients die out, then returns the peaks of the rest.
    fn steady_peaks(channels: &[Vec<f64>], settle_s: f64) -> MotionPeaks {
        let cut = (settle_s * FS) as usize;
        let mut m = IntensityMeter::new(FS).unwrap();
        m.process(&channels.iter().map(|c| &c[..cut]).collect::<Vec<_>>());
        m.process(&channels.iter().map(|c| &c[cut..]).collect::<Vec<_>>())
    }

    /// Analogue Butterworth magnitude at the pre-warped frequency: what the bilinear design
    /// must reproduce exactly.
    fn band_gain(f: f64) -> f64 {
        let w = |x: f64| (PI * x / FS).tan();
        let hp = 1.0 / (1.0 + (w(BAND_LOW_HZ) / w(f)).powi(4)).sqrt();
        let lp = 1.0 / (1.0 + (w(f) / w(BAND_HIGH_HZ)).powi(8)).sqrt();
        hp * lp
    }

    fn circular(freq: f64, amp: f64, secs: f64) -> Vec<Vec<f64>> {
        vec![tone(freq, amp, secs, 0.0), tone(freq, amp, secs, PI / 2.0)]
    }

    #[test]
    fn intensity_formula_matches_hand_computed_values() {
        // lg 1.35 = 0.130334 → I_A = 7.0032; lg 0.1 = −1 → I_V = 6.77; both ≥ 6 → I = I_V → 6.8.
        assert!((pga_intensity(1.35) - 7.0032).abs() < 1e-4);
        assert!((pgv_intensity(0.1) - 6.77).abs() < 1e-12);
        assert_eq!(instrumental_intensity(1.35, 0.1), 6.8);
        // I_A = 6.59 ≥ 6 but I_V = 3.77 < 6 → mean 5.18 → 5.2.
        assert_eq!(instrumental_intensity(1.0, 0.01), 5.2);
        // I_A = 5.6357 < 6, I_V = 7.6731 → mean 6.6544 → 6.7 (I_V alone would say 7.7).
        assert_eq!(instrumental_intensity(0.5, 0.2), 6.7);
        // I_A = 2.4657, I_V = 2.8669 → mean 2.6663 → 2.7.
        assert_eq!(instrumental_intensity(0.05, 0.005), 2.7);
        // Clamping, and no motion at all.
        assert_eq!(instrumental_intensity(1e-6, 1e-7), 1.0);
        assert_eq!(instrumental_intensity(100.0, 10.0), 12.0);
        assert_eq!(instrumental_intensity(0.0, 0.0), 1.0);
        assert_eq!(instrumental_intensity(f64::NAN, -1.0), 1.0);
    }

    #[test]
    fn colours_follow_the_degrees() {
        let cases = [
            (1.0, None),
            (1.4, None),
            (1.5, Some(Level::Blue)),
            (2.4, Some(Level::Blue)),
            (2.5, Some(Level::Yellow)),
            (4.4, Some(Level::Yellow)),
            (4.5, Some(Level::Orange)),
            (6.4, Some(Level::Orange)),
            (6.5, Some(Level::Red)),
            (12.0, Some(Level::Red)),
            (f64::NAN, None),
        ];
        for (i, colour) in cases {
            assert_eq!(colour_for_intensity(i), colour, "intensity {i}");
        }
        assert_eq!(intensity_degree(6.8), Some(7));
        assert_eq!(intensity_degree(6.4), Some(6));
    }

    #[test]
    fn passband_tones_keep_their_amplitude() {
        for f in [1.0, 5.0] {
            let pga = steady_peaks(&circular(f, 0.4, 60.0), 40.0).pga;
            assert!((pga / 0.4 - 1.0).abs() < 0.03, "{f} Hz gain {}", pga / 0.4);
            assert!((pga / (0.4 * band_gain(f)) - 1.0).abs() < 1e-3, "{f} Hz off the design");
            // A single component, peak read off the samples, also within ±3 %.
            let single = steady_peaks(&[tone(f, 0.4, 60.0, 0.3)], 40.0).pga;
            assert!((single / 0.4 - 1.0).abs() < 0.03, "{f} Hz single-component gain {}", single / 0.4);
        }
    }

    #[test]
    fn out_of_band_tones_are_attenuated_strongly() {
        for (f, secs, settle) in [(0.01, 500.0, 300.0), (30.0, 60.0, 40.0)] {
            let p = steady_peaks(&circular(f, 1.0, secs), settle);
            assert!(p.pga < 0.02, "{f} Hz gain {}", p.pga);
            assert!((p.pga / band_gain(f) - 1.0).abs() < 0.01, "{f} Hz: {} vs design {}", p.pga, band_gain(f));
            assert!(p.pgv < 0.02 / (2.0 * PI * f.max(1.0)), "{f} Hz PGV {}", p.pgv);
        }
    }

    #[test]
    fn pgv_of_a_sine_is_amplitude_over_two_pi_f() {
        let a = 0.8;
        let p = steady_peaks(&[tone(1.0, a, 60.0, 0.0)], 40.0);
        assert!((p.pgv / (a / (2.0 * PI)) - 1.0).abs() < 0.05, "PGV {}", p.pgv);
        // Circular motion has constant speed, so the check can be tight: trapezoid gain
        // (T/2)·cot(πf/f_s) times the band-pass applied twice on the low side.
        let p = steady_peaks(&circular(1.0, a, 60.0), 40.0);
        let w = |x: f64| (PI * x / FS).tan();
        let trapezoid = 0.5 / FS / w(1.0);
        let hp = 1.0 / (1.0 + (w(BAND_LOW_HZ) / w(1.0)).powi(4)).sqrt();
        assert!((p.pgv / (a * band_gain(1.0) * hp * trapezoid) - 1.0).abs() < 1e-3);
        assert!((p.pgv / (a / (2.0 * PI)) - 1.0).abs() < 0.005);
    }

    #[test]
    fn a_tone_at_the_vii_threshold_reads_its_intensity() {
        // PGA 1.35 m/s² and PGV 1.35/(2π) = 0.2149 m/s: I_A = 7.00, I_V = 7.77 → I_V → 7.8.
        let p = steady_peaks(&circular(1.0, 1.35, 60.0), 40.0);
        assert_eq!(p.intensity, 7.8, "pga {} pgv {}", p.pga, p.pgv);
        assert_eq!(colour_for_intensity(p.intensity), Some(Level::Red));
    }

    #[test]
    fn vector_combination_of_three_components() {
        let mut rng = Rng(7);
        let s: Vec<f64> = tone(2.0, 0.3, 30.0, 0.0).into_iter().map(|x| x + 0.1 * (rng.next() - 0.5)).collect();
        let scaled = |k: f64| s.iter().map(|x| k * x).collect::<Vec<_>>();
        let one = IntensityMeter::new(FS).unwrap().process(&[&s]);
        let three = IntensityMeter::new(FS).unwrap().process(&[scaled(3.0), scaled(4.0), scaled(12.0)]);
        assert!((three.pga / (13.0 * one.pga) - 1.0).abs() < 1e-12);
        assert!((three.pgv / (13.0 * one.pgv) - 1.0).abs() < 1e-12);
        // Two components (3, 4) give 5×; a fourth channel is ignored.
        let two = IntensityMeter::new(FS).unwrap().process(&[scaled(3.0), scaled(4.0)]);
        assert!((two.pga / (5.0 * one.pga) - 1.0).abs() < 1e-12);
        let four = IntensityMeter::new(FS).unwrap().process(&[scaled(3.0), scaled(4.0), scaled(12.0), scaled(100.0)]);
        assert_eq!(four, three);
    }

    fn synthetic_record(seconds: usize) -> [Vec<f64>; 3] {
        let mut rng = Rng(0x5eed);
        let n = seconds * FS as usize;
        let mut make = |offset: f64| -> Vec<f64> {
            let burst = tone(3.0, 1.0, seconds as f64, offset);
            (0..n)
                .map(|i| {
                    let t = i as f64 / FS;
                    let envelope = (t - 10.0).max(0.0) * (-(t - 10.0).max(0.0) / 4.0).exp();
                    offset + envelope * burst[i] + 0.02 * (rng.next() - 0.5)
                })
                .collect()
        };
        let mut record = [make(0.05), make(-0.02), make(9.81)];
        record[1][1234] = f64::NAN;
        record[2][2345] = f64::INFINITY;
        record
    }

    #[test]
    fn packet_splits_do_not_change_the_result() {
        let record = synthetic_record(60);
        let n = record[0].len();
        let feed = |bounds: &[usize]| {
            let mut m = IntensityMeter::new(FS).unwrap();
            for w in bounds.windows(2) {
                m.process(&record.iter().map(|c| &c[w[0]..w[1]]).collect::<Vec<_>>());
            }
            m
        };
        let whole = feed(&[0, n]);
        let seconds = feed(&(0..=n).step_by(FS as usize).collect::<Vec<_>>());
        let mut rng = Rng(99);
        let mut cuts = vec![0, n];
        cuts.extend((0..80).map(|_| (rng.next() * n as f64) as usize));
        cuts.sort_unstable(); // repeated cuts make empty packets
        let random = feed(&cuts);
        assert_eq!(whole, seconds);
        assert_eq!(whole, random);
        let peaks = whole.peak_since_reset();
        assert!(peaks.pga > 0.5 && peaks.pgv > 0.01, "{peaks:?}");
        assert_eq!(peaks.rejected_samples, 2);
    }

    #[test]
    fn a_snapshot_resumes_exactly() {
        let record = synthetic_record(30);
        let (a, b) = (
            &record.iter().map(|c| &c[..1500]).collect::<Vec<_>>(),
            &record.iter().map(|c| &c[1500..]).collect::<Vec<_>>(),
        );
        let mut live = IntensityMeter::new(FS).unwrap();
        live.process(a);
        let mut restored: IntensityMeter = serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        assert_eq!(live.process(b), restored.process(b));
        assert_eq!(live, restored);
    }

    #[test]
    fn a_constant_offset_produces_no_motion() {
        let still = vec![vec![0.3; 6000], vec![-0.1; 6000], vec![9.81; 6000]];
        let p = IntensityMeter::new(FS).unwrap().process(&still);
        assert_eq!((p.pga, p.pgv, p.intensity), (0.0, 0.0, 1.0));

        // An offset appearing mid-record (a sensor knocked askew at 10 s) leaves a transient
        // that dies away: 100 s later the peaks match the same shaking without the offset.
        let shaking = tone(1.0, 0.05, 120.0, 0.0);
        let stepped: Vec<f64> =
            shaking.iter().enumerate().map(|(i, x)| x + if i >= 1000 { 0.3 } else { 0.0 }).collect();
        let reference = steady_peaks(&[shaking], 90.0);
        let with_step = steady_peaks(&[stepped], 90.0);
        assert!((with_step.pga / reference.pga - 1.0).abs() < 0.01);
        assert!((with_step.pgv / reference.pgv - 1.0).abs() < 0.01, "{} vs {}", with_step.pgv, reference.pgv);
    }

    #[test]
    fn bad_samples_and_empty_packets_do_not_panic() {
        let mut m = IntensityMeter::new(FS).unwrap();
        let empty = m.process::<&[f64]>(&[]);
        assert_eq!((empty.pga, empty.pgv, empty.intensity), (0.0, 0.0, 1.0));
        let none: [&[f64]; 3] = [&[], &[], &[]];
        assert_eq!(m.process(&none).pga, 0.0);
        let bad = m.process(&[&[f64::NAN, 0.1, f64::INFINITY, 2e6, 0.2][..], &[f64::NEG_INFINITY; 5][..]]);
        assert!(bad.pga.is_finite() && bad.pgv.is_finite());
        assert_eq!(bad.rejected_samples, 8);
        let after = m.process(&[tone(1.0, 0.1, 2.0, 0.0), tone(1.0, 0.1, 2.0, 0.0)]);
        assert!(after.pga.is_finite() && after.pga > 0.0);
        assert!(serde_json::to_string(&m).is_ok());
        m.reset_peaks();
        assert_eq!(m.peak_since_reset().pga, 0.0);
    }

    #[test]
    fn construction_and_waveform_checks() {
        assert!(matches!(IntensityMeter::new(20.0), Err(IntensityError::SampleRate { .. })));
        assert!(IntensityMeter::new(f64::NAN).is_err());
        let mut m = IntensityMeter::new(FS).unwrap();
        let channel = |name: &str, samples: Vec<f64>| riskwatch_core::Channel { name: name.into(), samples };
        let gal = Waveform {
            rate_hz: FS,
            channels: vec![channel("e", tone(1.0, 100.0, 1.0, 0.0)), channel("n", vec![0.0; 100])],
        };
        let in_m_s2 = IntensityMeter::new(FS).unwrap().process(&[tone(1.0, 1.0, 1.0, 0.0), vec![0.0; 100]]);
        let from_gal = m.process_waveform(&gal, 0.01).unwrap();
        assert!((from_gal.pga / in_m_s2.pga - 1.0).abs() < 1e-12 && (from_gal.pgv / in_m_s2.pgv - 1.0).abs() < 1e-12);
        let other_rate = Waveform { rate_hz: 200.0, ..gal.clone() };
        assert!(matches!(m.process_waveform(&other_rate, 0.01), Err(IntensityError::RateMismatch { .. })));
        assert!(matches!(m.process_waveform(&gal, 0.0), Err(IntensityError::UnitScale { .. })));
    }
}
