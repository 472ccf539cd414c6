//! Network coincidence triggering, as ObsPy's `coincidence_trigger`.
//!
//! One station's STA/LTA trigger may be a truck, a door or a kicked sensor; an earthquake
//! triggers many stations within seconds of each other. Each station (or channel) gets a
//! weight; an event is declared when the weights of the stations whose triggers overlap reach
//! a threshold, the *coincidence sum*. Overlap is generous: a trigger joins the event if it
//! turns on no later than `trigger_off_extension` seconds after the latest off time of the
//! event so far, so A overlapping B and B overlapping C make one event A, B, C.
//!
//! [`station_triggers`] turns one station's characteristic function into on/off times with
//! [`trigger_onset`](super::sta_lta::trigger_onset), and [`coincidence_trigger`] combines the
//! stations, following obspy/signal/trigger.py (`coincidence_trigger`, ObsPy 1.5) step by step:
//! - triggers are sorted by (on, off, trace id), each in turn opens a candidate event;
//! - later triggers join until the first one that turns on after `off + trigger_off_extension`
//!   (a gap); a second trigger of a trace already in the event is skipped, not joined;
//! - a joining trigger extends `off` (without the extension) and adds its weight;
//! - a candidate below the threshold is dropped, and so is one whose `off` is not later than
//!   the previous event's (a subset of it);
//! - traces without a weight are ignored (ObsPy warns and disregards them).
//!
//! ObsPy's template similarity (`event_templates`, `similarity_threshold`) is not provided.
//! rules/tests/obspy_reference.rs checks events against ObsPy's on a multi-station record.
//!
//! This is the batch form, for replays and for checking the engine: the live engine counts
//! coincident triggers with a network composite's `coincidence` table (docs/rules.md).

use super::sta_lta::trigger_onset;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One station's trigger: from `on` to `off`, seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StationTrigger {
    /// Trigger on, seconds (record start + on index / rate).
    pub on: f64,
    /// Trigger off, seconds.
    pub off: f64,
    /// The trace (channel) id, e.g. `XX.A..HHZ`.
    pub trace_id: String,
    /// The station, e.g. `A` (ObsPy: the second dot-separated part of the id).
    pub station: String,
    /// Largest characteristic-function value over `[on, off)` samples.
    pub cft_peak: f64,
    /// Its standard deviation over the same samples (population, as NumPy's `std`).
    pub cft_std: f64,
}

/// A declared network event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoincidenceEvent {
    /// First trigger on, seconds.
    pub time: f64,
    /// Latest off of the joined triggers minus `time`, seconds.
    pub duration: f64,
    /// Stations, in joining order.
    pub stations: Vec<String>,
    /// Trace ids, in joining order.
    pub trace_ids: Vec<String>,
    /// Sum of the joined traces' weights.
    pub coincidence_sum: f64,
    /// Weighted mean of the joined triggers' `cft_peak`.
    pub cft_peak_wmean: f64,
    /// Weighted mean of the joined triggers' `cft_std`.
    pub cft_std_wmean: f64,
}

/// Parameters of [`coincidence_trigger`] (ObsPy's names).
#[derive(Clone, Debug, PartialEq)]
pub struct CoincidenceParams {
    /// Weight per trace id; traces not listed are ignored.
    pub weights: BTreeMap<String, f64>,
    /// Sum of weights an event needs.
    pub thr_coincidence_sum: f64,
    /// Seconds a trigger may turn on after the event's latest off and still join.
    pub trigger_off_extension: f64,
}

/// The triggers of one trace: [`trigger_onset`] of its characteristic function `cft` with
/// `thr_on`/`thr_off`, at most `max_trigger_length` seconds each (ObsPy rounds it to
/// `int(max_trigger_length · rate + 0.5)` samples), dropped instead of cut when
/// `delete_long_trigger`; times from `start` (seconds) and `rate_hz`.
#[allow(clippy::too_many_arguments)]
pub fn station_triggers(
    trace_id: &str,
    start: f64,
    rate_hz: f64,
    cft: &[f64],
    thr_on: f64,
    thr_off: f64,
    max_trigger_length: f64,
    delete_long_trigger: bool,
) -> Vec<StationTrigger> {
    let max_len = (max_trigger_length * rate_hz + 0.5).max(0.0) as usize;
    let station = trace_id.split('.').nth(1).unwrap_or(trace_id).to_string();
    trigger_onset(cft, thr_on, thr_off, max_len, delete_long_trigger)
        .into_iter()
        .map(|[on, off]| {
            let span = &cft[on..off.min(cft.len())];
            let (cft_peak, cft_std) = if span.is_empty() {
                (cft[on], 0.0)
            } else {
                let mean = span.iter().sum::<f64>() / span.len() as f64;
                let var = span.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / span.len() as f64;
                (span.iter().copied().fold(f64::NEG_INFINITY, f64::max), var.sqrt())
            };
            StationTrigger {
                on: start + on as f64 / rate_hz,
                off: start + off as f64 / rate_hz,
                trace_id: trace_id.to_string(),
                station: station.clone(),
                cft_peak,
                cft_std,
            }
        })
        .collect()
}

fn order(a: &StationTrigger, b: &StationTrigger) -> Ordering {
    a.on.total_cmp(&b.on)
        .then(a.off.total_cmp(&b.off))
        .then_with(|| a.trace_id.cmp(&b.trace_id))
        .then(a.cft_peak.total_cmp(&b.cft_peak))
        .then(a.cft_std.total_cmp(&b.cft_std))
}

/// Network events from the stations' triggers, as ObsPy's `coincidence_trigger`.
pub fn coincidence_trigger(mut triggers: Vec<StationTrigger>, params: &CoincidenceParams) -> Vec<CoincidenceEvent> {
    triggers.retain(|t| params.weights.contains_key(&t.trace_id));
    triggers.sort_by(order);
    let weight = |id: &str| params.weights.get(id).copied().unwrap_or(0.0);
    let mut events = Vec::new();
    let mut last_off_time = 0.0;
    for (i, first) in triggers.iter().enumerate() {
        let mut off = first.off;
        let mut joined = vec![first];
        for t in &triggers[i + 1..] {
            if joined.iter().any(|j| j.trace_id == t.trace_id) {
                continue;
            }
            if t.on > off + params.trigger_off_extension {
                break;
            }
            joined.push(t);
            off = off.max(t.off);
        }
        let sum = joined.iter().fold(0.0, |s, t| s + weight(&t.trace_id));
        if sum < params.thr_coincidence_sum || off <= last_off_time {
            continue;
        }
        let weights: f64 = joined.iter().map(|t| weight(&t.trace_id)).sum();
        let wmean =
            |f: fn(&StationTrigger) -> f64| joined.iter().map(|t| f(t) * weight(&t.trace_id)).sum::<f64>() / weights;
        events.push(CoincidenceEvent {
            time: first.on,
            duration: off - first.on,
            stations: joined.iter().map(|t| t.station.clone()).collect(),
            trace_ids: joined.iter().map(|t| t.trace_id.clone()).collect(),
            coincidence_sum: sum,
            cft_peak_wmean: wmean(|t| t.cft_peak),
            cft_std_wmean: wmean(|t| t.cft_std),
        });
        last_off_time = off;
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(id: &str, on: f64, off: f64) -> StationTrigger {
        StationTrigger {
            on,
            off,
            trace_id: id.into(),
            station: id.split('.').nth(1).unwrap().into(),
            cft_peak: 5.0,
            cft_std: 1.0,
        }
    }

    fn params(ext: f64, sum: f64) -> CoincidenceParams {
        let weights = [("N.A..Z", 1.0), ("N.B..Z", 1.0), ("N.C..Z", 1.0), ("N.D..Z", 0.5)];
        CoincidenceParams {
            weights: weights.into_iter().map(|(k, w)| (k.to_string(), w)).collect(),
            thr_coincidence_sum: sum,
            trigger_off_extension: ext,
        }
    }

    #[test]
    fn chained_overlaps_make_one_event_and_the_extension_bridges_gaps() {
        // A overlaps B, B overlaps C, C ends 1 s before D turns on.
        let t = vec![
            trig("N.A..Z", 0.0, 4.0),
            trig("N.B..Z", 3.0, 8.0),
            trig("N.C..Z", 7.0, 9.0),
            trig("N.D..Z", 10.0, 12.0),
        ];
        let e = coincidence_trigger(t.clone(), &params(0.0, 3.0));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].stations, ["A", "B", "C"]);
        assert_eq!((e[0].time, e[0].duration, e[0].coincidence_sum), (0.0, 9.0, 3.0));
        let e = coincidence_trigger(t.clone(), &params(1.0, 3.0));
        assert_eq!(e[0].stations, ["A", "B", "C", "D"]);
        assert_eq!((e[0].duration, e[0].coincidence_sum), (12.0, 3.5));
        // Below the sum: nothing.
        assert!(coincidence_trigger(t, &params(0.0, 3.5)).is_empty());
    }

    #[test]
    fn retriggers_unknown_traces_and_subsets() {
        let t = vec![
            trig("N.A..Z", 0.0, 2.0),
            trig("N.A..Z", 2.5, 3.0),
            trig("N.B..Z", 1.0, 5.0),
            trig("X.Q..Z", 1.0, 5.0),
        ];
        let e = coincidence_trigger(t, &params(0.0, 2.0));
        // A's second trigger is skipped in A's event; B's event (B, A) ends at 5.0 too: a subset.
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].stations, ["A", "B"]);
        assert_eq!(e[0].duration, 5.0);
    }

    #[test]
    fn station_triggers_measure_peak_and_spread() {
        let cft = [0.0, 4.0, 6.0, 2.0, 0.5, 0.0];
        let t = station_triggers("N.A..Z", 10.0, 2.0, &cft, 3.5, 1.0, 100.0, false);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].on, t[0].off), (10.5, 11.5));
        assert_eq!(t[0].cft_peak, 6.0);
        // Over samples [on, off): 4 and 6 (ObsPy slices `data[on:off]`).
        assert_eq!(t[0].cft_std, 1.0);
    }
}
