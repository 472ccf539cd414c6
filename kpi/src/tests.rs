//! The KPIs of a hand-built stream with known counts (tests/data/alarm-kpi-stream.jsonl, also
//! what the `riskwatch report` test stores and reads back): 2026-01-01 00:00–02:00 UTC, twelve
//! 10-minute windows.

use super::*;

const STREAM: &str = include_str!("../../tests/data/alarm-kpi-stream.jsonl");

fn stream() -> Vec<AlertEvent> {
    STREAM.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn period() -> (Timestamp, Timestamp) {
    (
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        Timestamp::parse_rfc3339("2026-01-01T02:00:00Z").unwrap(),
    )
}

#[test]
fn rates_peak_and_floods_count_raised_and_escalated_alerts_per_window() {
    let (from, to) = period();
    let k = compute(&stream(), from, to, &Settings::default());
    assert_eq!((k.alerts, k.raised, k.escalated), (18, 17, 1), "raises and one escalation; not the 02:00 one");
    assert_eq!(k.exercise_events, 1, "the drill alert is counted apart and left out");
    assert_eq!(k.windows, 12);
    let counts: Vec<u64> = k.series.iter().map(|w| w.alerts).collect();
    assert_eq!(counts, [10, 0, 4, 0, 0, 3, 0, 0, 0, 0, 0, 1]);
    assert_eq!(k.series[2].start_ms, from.millis() + 20 * MINUTE);
    assert_eq!((k.peak_10min, k.peak_at_ms), (10, Some(from.millis())));
    assert_eq!((k.flood_threshold, k.flood_windows), (10, 1));
    assert!((k.flood_percent - 100.0 / 12.0).abs() < 1e-9, "{}", k.flood_percent);
    assert!((k.per_officer_per_10min - 1.5).abs() < 1e-9, "{}", k.per_officer_per_10min);
    assert!((k.per_officer_per_day - 216.0).abs() < 1e-9, "{}", k.per_officer_per_day);
}

#[test]
fn two_officers_halve_the_rates_and_raise_the_flood_threshold() {
    let (from, to) = period();
    let k = compute(&stream(), from, to, &Settings { officers: 2, ..Settings::default() });
    assert_eq!((k.flood_threshold, k.flood_windows, k.flood_percent), (20, 0, 0.0));
    assert!((k.per_officer_per_10min - 0.75).abs() < 1e-9);
    let peak = k.verdicts.iter().find(|v| v.key == "peak_10min").unwrap();
    assert_eq!(peak.value, Some(5.0), "peak per officer");
}

#[test]
fn chattering_is_three_raises_of_one_source_within_a_minute() {
    let (from, to) = period();
    let k = compute(&stream(), from, to, &Settings::default());
    let ids: Vec<(&str, u64, u64)> =
        k.chattering.iter().map(|c| (c.source.subject.as_str(), c.raises, c.most_within)).collect();
    assert_eq!(ids, [("chatter-wl", 3, 3)], "near-wl's three raises span exactly 60 s: not within a minute");
}

#[test]
fn standing_alerts_are_open_more_than_a_day_at_the_end_of_the_period() {
    let (from, to) = period();
    let k = compute(&stream(), from, to, &Settings::default());
    let standing: Vec<(&str, &str, f64)> =
        k.standing.iter().map(|s| (s.alert_id.as_str(), s.level.as_str(), s.open_hours)).collect();
    // old-b (22 h) is too young, old-c was resolved, old-d was a data-quality alert that closed
    // itself when it cleared.
    assert_eq!(standing, [("old-open", "orange", 32.0)]);
}

#[test]
fn time_to_acknowledge_covers_the_alerts_raised_in_the_period() {
    let (from, to) = period();
    let a = compute(&stream(), from, to, &Settings::default()).ack;
    assert_eq!((a.acknowledged, a.unacknowledged), (4, 13), "old-a's acknowledgement is not timed");
    assert_eq!((a.median_s, a.p90_s, a.max_s, a.mean_s), (Some(180.0), Some(600.0), Some(600.0), Some(277.5)));
    let bands: Vec<u64> = a.histogram.iter().map(|(_, n)| *n).collect();
    assert_eq!(bands, [1, 1, 1, 1, 0, 0], "30 s, 180 s, 300 s (5–10 min) and 600 s (10–30 min)");
}

#[test]
fn an_acknowledgement_stamped_before_its_raise_counts_as_immediate() {
    // On time-compressed data (the demo) the raise's event time can lie after the wall-clock
    // time of the officer's acknowledgement.
    let (from, to) = period();
    let mut events = stream();
    let raised = events.iter().find(|e| e.alert_id == "s4").unwrap().clone();
    let mut ack = events.iter().find(|e| e.alert_id == "s0" && e.change == AlertChange::Acknowledged).unwrap().clone();
    (ack.alert_id, ack.seq, ack.ts) = ("s4".into(), 1, raised.ts.plus_millis(-5_000));
    events.push(ack);
    let a = compute(&events, from, to, &Settings::default()).ack;
    assert_eq!((a.acknowledged, a.unacknowledged), (5, 12));
    assert_eq!((a.median_s, a.histogram[0].1), (Some(180.0), 2), "0 s and 30 s under a minute");
}

#[test]
fn bad_actors_are_the_ten_most_frequent_sources_and_their_share() {
    let (from, to) = period();
    let k = compute(&stream(), from, to, &Settings::default());
    let top: Vec<(&str, u64)> = k.bad_actors.iter().map(|b| (b.source.subject.as_str(), b.alerts)).collect();
    assert_eq!(
        top,
        [
            ("chatter-wl", 3),
            ("near-wl", 3),
            ("src0-wl", 2),
            ("last-wl", 1),
            ("src1-wl", 1),
            ("src2-wl", 1),
            ("src3-wl", 1),
            ("src4-wl", 1),
            ("src5-wl", 1),
            ("src6-wl", 1)
        ]
    );
    assert_eq!(k.bad_actors[0].source.name, "chatter-wl gauge");
    assert!((k.top_share_percent - 1500.0 / 18.0).abs() < 1e-9, "{}", k.top_share_percent);
    let top10 = k.verdicts.iter().find(|v| v.key == "top10_percent").unwrap();
    assert_eq!(top10.meets, Some(false));
}

#[test]
fn the_order_of_the_events_does_not_matter_and_an_empty_period_is_all_zeros() {
    let (from, to) = period();
    let mut reversed = stream();
    reversed.reverse();
    assert_eq!(compute(&reversed, from, to, &Settings::default()), compute(&stream(), from, to, &Settings::default()));
    let k = compute(&[], from, to, &Settings::default());
    assert_eq!((k.alerts, k.peak_10min, k.peak_at_ms, k.flood_percent, k.windows), (0, 0, None, 0.0, 12));
    assert_eq!(k.ack.median_s, None);
    let k = compute(&stream(), to, from, &Settings::default());
    assert_eq!((k.windows, k.alerts), (0, 0), "a reversed period is empty, not a panic");
}
