//! A strong-motion terminal recording background noise and one earthquake.
//!
//! Seismic rules (STA/LTA triggers, multi-station coincidence, instrumental intensity from PGA)
//! need packets that look like what a terminal publishes: 1-s packets of 100 Hz samples on three
//! components, quiet until the P wave arrives, then a small, mostly vertical P phase, then a
//! larger, mostly horizontal S phase that decays through its coda. Arrivals follow from the
//! hypocentral distance and the P and S speeds, so stations at different distances trigger in
//! the right order with the right S−P gaps, and amplitude falls off as 1/distance (geometric
//! spreading; anelastic attenuation is ignored).
//!
//! Each phase is an envelope — a quarter-sine rise over `rise_s` (steep at first, so the onset
//! is sharp as on a real record), then an exponential coda that falls to 5 % after `coda_s` —
//! modulating a band-limited oscillation: per phase and component, the mean of four sinusoids
//! at log-uniform random frequencies in `min_freq_hz..max_freq_hz` with random phases (fixed by
//! the seed). That mean seldom reaches ±1 while the envelope is at its crest, so it is scaled by
//! a calibrated gain; the recorded peak ground acceleration then comes out at the configured
//! peak for the median seed, within about ±15 % for most seeds. Gaussian noise is added to every
//! sample.

use crate::noise::standard_normal;
use crate::params::{any, non_negative, positive, repair, Repair};
use crate::series::{Physics, Schedule, Series};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use riskwatch_core::{Channel, Value, Waveform};
use serde::{Deserialize, Serialize};
use std::f64::consts::{FRAC_PI_2, TAU};

/// Component names, in the order channels appear in each packet.
pub const COMPONENTS: [&str; 3] = ["e", "n", "z"];
/// Sinusoids summed per phase and component.
const TONES: usize = 4;
/// Share of the P phase's amplitude on the e, n, z components: mostly vertical.
const P_WEIGHTS: [f64; 3] = [0.35, 0.35, 1.0];
/// Share of the S phase's amplitude on the e, n, z components: mostly horizontal.
const S_WEIGHTS: [f64; 3] = [0.75, 0.75, 0.3];
/// Gain that makes the median recorded PGA (vector peak over the three components) equal the
/// configured S-phase peak; measured over 400 seeds with the default band and envelope.
const PEAK_GAIN: f64 = 1.42;

/// The earthquake, the station's distance from it and how the terminal samples. Missing fields
/// take the defaults listed on each field (see [`SeismicStationParams::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeismicStationParams {
    /// Origin time of the earthquake, seconds after the start of the series. Default 20.
    pub origin_s: f64,
    /// Hypocentral distance from the earthquake to the station, km. Default 30.
    pub distance_km: f64,
    /// Peak ground acceleration (S phase) a station 10 km away would see, m/s²; it scales as
    /// 10 / distance (distances under 1 km count as 1 km). Default 1.0 (about 0.1 g).
    pub peak_accel_at_10km_m_s2: f64,
    /// P-wave speed, km/s. Default 6.0.
    pub p_velocity_km_s: f64,
    /// S-wave speed, km/s (below the P speed). Default 3.5.
    pub s_velocity_km_s: f64,
    /// P-phase peak as a fraction of the S-phase peak. Default 0.3.
    pub p_to_s_amplitude: f64,
    /// Time from a phase's arrival to its envelope's crest, s. Default 2.
    pub rise_s: f64,
    /// Time from a phase's crest until its envelope has fallen to 5 %, s. Default 15.
    pub coda_s: f64,
    /// Lowest frequency of the shaking, Hz. Default 1.
    pub min_freq_hz: f64,
    /// Highest frequency of the shaking, Hz (at most half the sample rate). Default 8.
    pub max_freq_hz: f64,
    /// Standard deviation of background noise on each component, m/s². Default 0.002.
    pub noise_sigma_m_s2: f64,
    /// Samples per second on each component (at least 1). Default 100.
    pub sample_rate_hz: u32,
    /// Length of the series: the number of 1-s packets. Default 60.
    pub duration_s: u32,
}

impl Default for SeismicStationParams {
    fn default() -> Self {
        SeismicStationParams {
            origin_s: 20.0,
            distance_km: 30.0,
            peak_accel_at_10km_m_s2: 1.0,
            p_velocity_km_s: 6.0,
            s_velocity_km_s: 3.5,
            p_to_s_amplitude: 0.3,
            rise_s: 2.0,
            coda_s: 15.0,
            min_freq_hz: 1.0,
            max_freq_hz: 8.0,
            noise_sigma_m_s2: 0.002,
            sample_rate_hz: 100,
            duration_s: 60,
        }
    }
}

impl SeismicStationParams {
    /// P arrival at the station, seconds after the start of the series.
    pub fn p_arrival_s(&self) -> f64 {
        self.origin_s + self.distance_km / self.p_velocity_km_s
    }

    /// S arrival at the station, seconds after the start of the series.
    pub fn s_arrival_s(&self) -> f64 {
        self.origin_s + self.distance_km / self.s_velocity_km_s
    }

    /// Nominal peak ground acceleration at this station's distance (S phase), m/s².
    pub fn peak_accel_m_s2(&self) -> f64 {
        self.peak_accel_at_10km_m_s2 * 10.0 / self.distance_km.max(1.0)
    }

    /// A phase's envelope (0 before arrival, 1 at its crest) `since_arrival_s` after arrival.
    fn envelope(&self, since_arrival_s: f64) -> f64 {
        if since_arrival_s <= 0.0 {
            0.0
        } else if since_arrival_s < self.rise_s {
            (FRAC_PI_2 * since_arrival_s / self.rise_s).sin()
        } else {
            (-3.0 * (since_arrival_s - self.rise_s) / self.coda_s).exp()
        }
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl Repair for SeismicStationParams {
    const WHAT: &'static str = "seismic station";

    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>) {
        if p.sample_rate_hz == 0 {
            bad.push("sample_rate_hz");
            p.sample_rate_hz = d.sample_rate_hz;
        }
        repair!(bad, p, d, {
            origin_s: any,
            distance_km: non_negative,
            peak_accel_at_10km_m_s2: non_negative,
            p_velocity_km_s: positive,
        });
        let vp = p.p_velocity_km_s;
        let vs = vp * d.s_velocity_km_s / d.p_velocity_km_s;
        repair!(bad, p.s_velocity_km_s, vs, |v: f64| v > 0.0 && v < vp);
        repair!(bad, p, d, {
            p_to_s_amplitude: non_negative,
            rise_s: positive,
            coda_s: positive,
        });
        let nyquist = f64::from(p.sample_rate_hz) / 2.0;
        let (lo, hi) = (d.min_freq_hz.min(nyquist / 2.0), d.max_freq_hz.min(nyquist));
        repair!(bad, p.max_freq_hz, hi, |v: f64| v > 0.0 && v <= nyquist);
        let top = p.max_freq_hz;
        repair!(bad, p.min_freq_hz, lo.min(top), |v: f64| v > 0.0 && v <= top);
        repair!(bad, p.noise_sigma_m_s2, d.noise_sigma_m_s2, non_negative);
    }
}

/// (angular frequency rad/s, phase rad) of each tone, per component.
type Tones = [[(f64, f64); TONES]; 3];

/// Mean of one component's tones at `t` seconds: band-limited, within ±1.
fn oscillation(tones: &[(f64, f64); TONES], t: f64) -> f64 {
    tones.iter().map(|(w, phi)| (w * t + phi).sin()).sum::<f64>() / TONES as f64
}

/// A strong-motion terminal's packets around one earthquake: a lazy, deterministic iterator of
/// 1-s, three-component acceleration [`Reading`](riskwatch_core::Reading)s, contiguous from
/// `start`. Build it with `SeismicStation::new` or `SeismicStation::track`.
pub type SeismicStation = Series<GroundMotion>;

/// The ground shaking at the station: the physics of a [`SeismicStation`].
pub struct GroundMotion {
    params: SeismicStationParams,
    p_tones: Tones,
    s_tones: Tones,
}

impl GroundMotion {
    /// Noise-free acceleration on component `c` (index into [`COMPONENTS`]) at `t` seconds.
    fn shaking(&self, c: usize, t: f64) -> f64 {
        let p = &self.params;
        let s_amp = PEAK_GAIN * p.peak_accel_m_s2();
        let phases = [
            (p.p_to_s_amplitude * s_amp * P_WEIGHTS[c], p.p_arrival_s(), &self.p_tones[c]),
            (s_amp * S_WEIGHTS[c], p.s_arrival_s(), &self.s_tones[c]),
        ];
        // Before an arrival the envelope is zero: skip the sines (most of a fleet is quiet).
        phases
            .iter()
            .map(|(amp, arrival, tones)| match p.envelope(t - arrival) {
                0.0 => 0.0,
                env => amp * env * oscillation(tones, t),
            })
            .sum()
    }
}

impl Physics for GroundMotion {
    type Params = SeismicStationParams;

    fn schedule(params: &SeismicStationParams) -> Schedule {
        Schedule::packets(1000, params.duration_s)
    }

    fn new(params: SeismicStationParams, _: &Schedule, rng: &mut ChaCha8Rng) -> Self {
        let (lo, hi) = (params.min_freq_hz.ln(), params.max_freq_hz.ln());
        let mut draw_tones = || -> Tones {
            let mut tones = [[(0.0, 0.0); TONES]; 3];
            for tone in tones.iter_mut().flatten() {
                let freq_hz = (lo + (hi - lo) * rng.gen::<f64>()).exp();
                *tone = (TAU * freq_hz, TAU * rng.gen::<f64>());
            }
            tones
        };
        let p_tones = draw_tones();
        let s_tones = draw_tones();
        GroundMotion { params, p_tones, s_tones }
    }

    fn reading_at(&mut self, offset_ms: i64, rng: &mut ChaCha8Rng) -> Value {
        let second = offset_ms as f64 / 1000.0;
        let rate = self.params.sample_rate_hz;
        let mut channels = Vec::with_capacity(COMPONENTS.len());
        for (c, name) in COMPONENTS.iter().enumerate() {
            let samples = (0..rate)
                .map(|i| {
                    let t = second + f64::from(i) / f64::from(rate);
                    self.shaking(c, t) + self.params.noise_sigma_m_s2 * standard_normal(rng)
                })
                .collect();
            channels.push(Channel { name: (*name).to_string(), samples });
        }
        Value::Waveform(Waveform { rate_hz: f64::from(rate), channels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorSpec;
    use riskwatch_core::{Quality, Reading, SensorKind, Timestamp};

    const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn spec() -> SensorSpec {
        SensorSpec::new("dam-sm-1", "dam", SensorKind::SeismicAcceleration, "m/s2")
    }

    fn station(distance_km: f64, seed: u64) -> Vec<Waveform> {
        let params = SeismicStationParams { distance_km, ..SeismicStationParams::default() };
        SeismicStation::new(params, spec(), START, seed)
            .map(|r| match r.value {
                Value::Waveform(w) => w,
                other => panic!("expected a waveform, got {other:?}"),
            })
            .collect()
    }

    /// (event time in seconds since start, [e, n, z]) for every sample.
    fn samples(packets: &[Waveform]) -> Vec<(f64, [f64; 3])> {
        let mut out = Vec::new();
        for (second, w) in packets.iter().enumerate() {
            for i in 0..w.len() {
                let t = second as f64 + i as f64 / w.rate_hz;
                out.push((t, [0, 1, 2].map(|c| w.channels[c].samples[i])));
            }
        }
        out
    }

    /// Largest |sample| on the given components over event times `from_s..to_s`.
    fn peak(samples: &[(f64, [f64; 3])], components: &[usize], from_s: f64, to_s: f64) -> f64 {
        let in_window = samples.iter().filter(|(t, _)| (from_s..to_s).contains(t));
        in_window.flat_map(|(_, x)| components.iter().map(|&c| x[c].abs())).fold(0.0, f64::max)
    }

    #[test]
    fn same_seed_same_packets() {
        assert_eq!(station(30.0, 4), station(30.0, 4));
        assert_ne!(station(30.0, 4), station(30.0, 5));
    }

    #[test]
    fn contiguous_one_second_packets_of_three_channels() {
        let track = SeismicStation::track(SeismicStationParams::default(), spec(), START, 1);
        assert_eq!(track.span_ms, 60_000);
        let readings: Vec<Reading> = track.readings.collect();
        assert_eq!(readings.len(), 60);
        assert_eq!(readings[0].ts, START);
        assert!(readings.windows(2).all(|w| w[1].ts.millis() - w[0].ts.millis() == 1000));
        for r in &readings {
            let Value::Waveform(w) = &r.value else { panic!("expected a waveform") };
            let names: Vec<&str> = w.channels.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, COMPONENTS);
            assert!(w.channels.iter().all(|c| c.samples.len() == 100 && c.samples.iter().all(|s| s.is_finite())));
            assert_eq!((w.rate_hz, w.duration_ms()), (100.0, 1000));
            assert_eq!((r.quality, &*r.unit), (Quality::Good, "m/s2"));
        }
    }

    #[test]
    fn quiet_then_vertical_p_then_larger_horizontal_s() {
        let p = SeismicStationParams::default();
        let (tp, ts) = (p.p_arrival_s(), p.s_arrival_s());
        let w = samples(&station(p.distance_km, 8));
        let all = [0, 1, 2];
        assert!(peak(&w, &all, 0.0, tp) < 0.015, "pre-event {}", peak(&w, &all, 0.0, tp));

        let loud = 8.0 * p.noise_sigma_m_s2;
        let onset = w.iter().find(|(_, x)| x.iter().any(|v| v.abs() > loud)).map_or(f64::INFINITY, |s| s.0);
        assert!(onset >= tp && onset < tp + 1.0 && onset < ts, "onset at {onset} s, P due {tp} s, S due {ts} s");

        let p_z = peak(&w, &[2], tp, ts);
        let p_h = peak(&w, &[0, 1], tp, ts);
        let s_z = peak(&w, &[2], ts, ts + 10.0);
        let s_h = peak(&w, &[0, 1], ts, ts + 10.0);
        assert!(p_z > p_h, "P mostly vertical: z {p_z}, horizontal {p_h}");
        assert!(s_h > s_z, "S mostly horizontal: z {s_z}, horizontal {s_h}");
        assert!(s_h > 1.5 * p_z.max(p_h), "S {s_h} vs P {}", p_z.max(p_h));
        assert!(peak(&w, &all, 59.0, 60.0) < 0.02, "coda has died away");
    }

    #[test]
    fn near_stations_shake_harder_and_sooner() {
        let (near, far) = (station(10.0, 1), station(60.0, 2));
        let pga = |w: &[Waveform]| w.iter().map(Waveform::peak_vector).fold(0.0, f64::max);
        assert!(pga(&near) > 3.0 * pga(&far), "near {} far {}", pga(&near), pga(&far));
        let configured = SeismicStationParams::default().peak_accel_at_10km_m_s2;
        assert!((0.6 * configured..1.4 * configured).contains(&pga(&near)), "PGA {}", pga(&near));
        let first_loud = |w: &[Waveform]| w.iter().position(|p| p.peak_vector() > 0.05).unwrap_or(usize::MAX);
        assert!(first_loud(&near) < first_loud(&far));
    }

    #[test]
    fn bad_fields_are_named() {
        let p = SeismicStationParams { s_velocity_km_s: 7.0, sample_rate_hz: 0, ..SeismicStationParams::default() };
        let err = p.validate().err().unwrap_or_default();
        assert!(err.contains("s_velocity_km_s") && err.contains("sample_rate_hz"), "{err}");
        assert_eq!(SeismicStationParams::default().validate(), Ok(()));
    }
}
