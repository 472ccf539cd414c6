//! The Butterworth pre-filter and the network coincidence trigger against ObsPy's own output.
//!
//! The reference values in data/obspy_reference.json were produced by
//! scripts/obspy_reference.py with ObsPy 1.5.1, SciPy 1.17.1 and NumPy 2.4.6 (the file records
//! the versions): ObsPy's `bandpass`/`highpass`/`lowpass` (causal and `zerophase=True`), SciPy's
//! `iirfilter(..., output='sos')` coefficients, and `coincidence_trigger("recstalta", ...)` on a
//! band-passed five-station record. The inputs are integer LCG noise with exact float
//! operations, rebuilt bit for bit here, so no Python is needed to run these tests.

use riskwatch_rules::detectors::butterworth::{Band, SosFilter};
use riskwatch_rules::detectors::coincidence::{coincidence_trigger, station_triggers, CoincidenceParams};
use riskwatch_rules::detectors::sta_lta::{recursive_sta_lta, RecursiveStaLta};
use serde_json::Value;

const REFERENCE: &str = include_str!("data/obspy_reference.json");

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("reference JSON")
}

/// The script's `lcg_noise`: n uniform samples in [-0.5, 0.5).
fn lcg_noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

/// The script's `burst_record`.
fn burst_record(seed: u64, n: usize, onset: usize, length: usize, amp: f64) -> Vec<f64> {
    let mut x = lcg_noise(seed, n);
    for v in &mut x[onset..(onset + length).min(n)] {
        *v *= amp;
    }
    x.iter().map(|v| v + 0.25).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(f).collect()
}

fn band_of(case: &Value) -> Band {
    match case["type"].as_str().unwrap() {
        "bandpass" => Band::Bandpass { freqmin: f(&case["freqmin"]), freqmax: f(&case["freqmax"]) },
        "highpass" => Band::Highpass { freq: f(&case["freq"]) },
        "lowpass" => Band::Lowpass { freq: f(&case["freq"]) },
        other => panic!("unknown filter type {other}"),
    }
}

/// max |got − want| / max |want|: the error relative to the signal's size (per-sample ratios
/// are meaningless where the output crosses zero).
fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / scale
}

#[test]
fn butterworth_sections_and_outputs_equal_obspys() {
    let r = reference();
    let rate = f(&r["rate_hz"]);
    let spec = &r["filters"];
    let n = spec["n"].as_u64().unwrap() as usize;
    let signal = burst_record(
        spec["seed"].as_u64().unwrap(),
        n,
        spec["onset"].as_u64().unwrap() as usize,
        spec["length"].as_u64().unwrap() as usize,
        f(&spec["amp"]),
    );
    let cases = spec["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let corners = case["corners"].as_u64().unwrap() as u32;
        let filter = SosFilter::design(band_of(case), corners, rate).unwrap();
        // Coefficients, section by section (same pole ordering and pairing as SciPy's zpk2sos).
        let want_sos: Vec<Vec<f64>> = case["sos"].as_array().unwrap().iter().map(floats).collect();
        assert_eq!(filter.sections().len(), want_sos.len(), "{name}: sections");
        for (k, (got, want)) in filter.sections().iter().zip(&want_sos).enumerate() {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{name} section {k}: {got:?} vs {want:?}");
            }
        }
        let every = case["every"].as_u64().unwrap() as usize;
        let thin = |x: &[f64]| x.iter().step_by(every).copied().collect::<Vec<f64>>();

        // Causal: in one piece and in packets of 100 (1-s) and 37 samples, through snapshots.
        let want = floats(&case["causal"]);
        let mut whole = filter.clone();
        let mut out = Vec::new();
        whole.process(&signal, &mut out);
        let err = relative_error(&thin(&out), &want);
        assert!(err <= 1e-9, "{name}: causal relative error {err:e}");
        for packet in [100, 37] {
            let mut streamed = filter.clone();
            let mut out_packets = Vec::new();
            for chunk in signal.chunks(packet) {
                streamed = serde_json::from_str(&serde_json::to_string(&streamed).unwrap()).unwrap();
                streamed.process(chunk, &mut out_packets);
            }
            assert_eq!(out_packets, out, "{name}: packets of {packet} differ from one piece");
        }

        // Zero-phase (replay / offline).
        let want = floats(&case["zerophase"]);
        let err = relative_error(&thin(&filter.zerophase(&signal)), &want);
        assert!(err <= 1e-9, "{name}: zero-phase relative error {err:e}");
    }
}

/// The five-station record of the script, band-passed and turned into recursive STA/LTA ratios
/// in 1-s packets, as the engine would; the ratios must equal the one-piece batch ones.
fn network_triggers(c: &Value, rate: f64) -> Vec<riskwatch_rules::detectors::coincidence::StationTrigger> {
    let n = c["n"].as_u64().unwrap() as usize;
    let length = c["length"].as_u64().unwrap() as usize;
    let band = Band::Bandpass { freqmin: f(&c["freqmin"]), freqmax: f(&c["freqmax"]) };
    let corners = c["corners"].as_u64().unwrap() as u32;
    // ObsPy's Trace.trigger: nsta = int(sta · rate), nlta = int(lta · rate).
    let (nsta, nlta) = ((f(&c["sta"]) * rate) as usize, (f(&c["lta"]) * rate) as usize);
    let mut triggers = Vec::new();
    for s in c["stations"].as_array().unwrap() {
        let station = s["station"].as_str().unwrap();
        let mut x =
            burst_record(s["seed"].as_u64().unwrap(), n, s["onset"].as_u64().unwrap() as usize, length, f(&s["amp"]));
        if station == "D" {
            let lone = burst_record(
                c["lone_seed"].as_u64().unwrap(),
                n,
                c["lone_onset"].as_u64().unwrap() as usize,
                length,
                f(&c["lone_amp"]),
            );
            x.iter_mut().zip(lone).for_each(|(a, b)| *a += b);
        }
        let mut filter = SosFilter::design(band, corners, rate).unwrap();
        let mut ratio = RecursiveStaLta::new(nsta, nlta).unwrap();
        let (mut filtered, mut cft) = (Vec::new(), Vec::new());
        for packet in x.chunks(rate as usize) {
            filtered.clear();
            filter.process(packet, &mut filtered);
            ratio.process(&filtered, &mut cft);
        }
        let batch_filtered = riskwatch_rules::detectors::butterworth::filter(&x, band, corners, rate).unwrap();
        assert_eq!(cft, recursive_sta_lta(&batch_filtered, nsta, nlta), "{station}: streamed vs batch");
        let id = format!("XX.{station}..HHZ");
        triggers.extend(station_triggers(
            &id,
            0.0,
            rate,
            &cft,
            f(&c["thr_on"]),
            f(&c["thr_off"]),
            f(&c["max_trigger_length"]),
            false,
        ));
    }
    triggers
}

#[test]
fn coincidence_events_equal_obspys_on_a_five_station_record() {
    let r = reference();
    let rate = f(&r["rate_hz"]);
    let c = &r["coincidence"];
    let weights = c["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (format!("XX.{}..HHZ", s["station"].as_str().unwrap()), f(&s["weight"])))
        .collect();
    let triggers = network_triggers(c, rate);
    let params = CoincidenceParams {
        weights,
        thr_coincidence_sum: f(&c["thr_coincidence_sum"]),
        trigger_off_extension: f(&c["trigger_off_extension"]),
    };
    let events = coincidence_trigger(triggers.clone(), &params);
    let want = c["events"].as_array().unwrap();
    assert_eq!(events.len(), want.len(), "{events:?}");
    // ObsPy (see the JSON): one event at 20.04 s, 10.48 s long, stations A B C E D, sum 4.5.
    assert_eq!(want.len(), 1);
    for (got, want) in events.iter().zip(want) {
        let names = |v: &Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(got.stations, names(&want["stations"]));
        assert_eq!(got.trace_ids, names(&want["trace_ids"]));
        assert_eq!(got.coincidence_sum, f(&want["coincidence_sum"]));
        assert!((got.time - f(&want["time"])).abs() < 1e-9, "time {} vs {}", got.time, want["time"]);
        assert!(
            (got.duration - f(&want["duration"])).abs() < 1e-9,
            "duration {} vs {}",
            got.duration,
            want["duration"]
        );
        for key in ["cft_peak_wmean", "cft_std_wmean"] {
            let (g, w) = (if key == "cft_peak_wmean" { got.cft_peak_wmean } else { got.cft_std_wmean }, f(&want[key]));
            assert!((g - w).abs() <= 1e-9 * w.abs(), "{key}: {g} vs ObsPy {w}");
        }
    }

    // Threshold 1 and no extension: the lone burst on D becomes an event of its own as well.
    let plain = coincidence_trigger(
        triggers,
        &CoincidenceParams { thr_coincidence_sum: 1.0, trigger_off_extension: 0.0, ..params },
    );
    let want = c["events_sum1_no_extension"].as_array().unwrap();
    assert_eq!(plain.len(), want.len(), "{plain:?}");
    for (got, want) in plain.iter().zip(want) {
        assert_eq!(got.coincidence_sum, f(&want["coincidence_sum"]));
        assert!((got.time - f(&want["time"])).abs() < 1e-9);
        assert!((got.duration - f(&want["duration"])).abs() < 1e-9);
        assert_eq!(got.stations.len(), want["stations"].as_array().unwrap().len());
    }
}
