//! Failure modes of simulated gateways, each run through the embedded pipeline, and the
//! pipeline's response: a stuck gauge raises `dq.flat_line`, a spike `dq.spike` (and never a
//! flood alert), a dropout `dq.stale`, a skewed clock `dq.timing`, duplicated messages change
//! nothing, late (out-of-order) readings are stored but never evaluated, and a gateway that goes
//! offline raises `dq.stale` and then back-fills its buffer, which is evaluated in event time.

mod common;

use common::sim::{write_scenario, Pipeline};
use riskwatch_core::Level;
use riskwatch_simulators::scenario::ObservedAlert;
use std::collections::BTreeMap;
use std::time::Duration;

const GAUGES: &str = r#"
registry_toml = '''
[[sites]]
id = "gauge-a"
[[sites]]
id = "gauge-b"
[[sensors]]
id = "wl-a"
site = "gauge-a"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
[[sensors]]
id = "wl-b"
site = "gauge-b"
kind = "water_level"
unit = "m"
interval_s = 300
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 29.00 }
'''
rules_toml = '''
[[rules]]
id = "water-level-bands"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
levels = { blue = "warning_level - 0.50", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[quality]]
applies_to = { kind = "water_level" }
spike = { suspect = 0.3, fail = 1.0 }
flat_line = { tolerance = 0.001, suspect_s = 3600, fail_s = 7200 }
'''
"#;

/// Two identical gauges (no noise, so the same readings) on their own gateways: `wl-a` gets
/// the failures, `wl-b` is the control.
fn gauges(failures: &str, flood: &str) -> String {
    format!(
        r#"
name = "gauges"
start = "2020-07-04T00:00:00+08:00"
duration = "24h"
{GAUGES}
[[group]]
id = "a"
model = "flood"
site = "gauge-a"
batch = false
params = {{ {flood} }}
sensors = [{{ id = "wl-a" }}]
[[group]]
id = "b"
model = "flood"
site = "gauge-b"
batch = false
params = {{ {flood} }}
sensors = [{{ id = "wl-b" }}]
{failures}
"#
    )
}

/// A flood that crosses every band: 26.0 → 29.3 m at 12 h.
const FLOOD: &str =
    "base_level_m = 26.0, peak_level_m = 29.3, time_to_peak_h = 12.0, recession_h = 4.0, noise_sigma_m = 0.0";
/// Gauge noise but no flood (26.0 m ± 1 cm).
const CALM: &str = "base_level_m = 26.0, peak_level_m = 26.0, noise_sigma_m = 0.01";

const H: i64 = 3_600_000;

fn of<'a>(alerts: &'a [ObservedAlert], rule: &str, subject: &str) -> Vec<&'a ObservedAlert> {
    alerts.iter().filter(|a| a.rule == rule && a.subject == subject).collect()
}

/// Runs a scenario through a fresh pipeline; returns its alert events, start, and the store's
/// readings per sensor (ts, quality).
fn run(text: &str, speed: &str, wait_for: impl Fn(&[ObservedAlert]) -> bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (path, scenario) = write_scenario(dir.path(), "scenario", text);
    let pipeline = Pipeline::start(&scenario);
    let before = riskwatch_core::Timestamp::now();
    let (out, published) = pipeline.simulate(&path, &["--speed", speed, "--seed", "11"]);
    pipeline.wait_alerts(Duration::from_secs(20), &wait_for);
    let db = pipeline.db();
    // Without a fixed start the run starts "now": its first reading (offset 0) tells when.
    let first: i64 = db.query_row("SELECT min(ts) FROM readings", [], |r| r.get(0)).unwrap_or(0);
    assert!(scenario.fixed_start().is_some() || first >= before.millis() - 1000, "{first}");
    let start = scenario.fixed_start().unwrap_or(riskwatch_core::Timestamp::from_millis(first));
    let mut readings: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut st = db.prepare("SELECT sensor, ts, quality FROM readings ORDER BY sensor, ts").unwrap();
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).unwrap() {
        let (s, ts, q) = row.unwrap();
        readings.entry(s).or_default().push((ts - start.millis(), q));
    }
    drop(st);
    drop(db);
    let (alerts, _dir) = pipeline.stop();
    Run { alerts, start: start.millis(), readings, published, out }
}

struct Run {
    alerts: Vec<ObservedAlert>,
    start: i64,
    readings: BTreeMap<String, Vec<(i64, i64)>>,
    published: u64,
    out: Vec<String>,
}

impl Run {
    fn dump(&self) -> String {
        self.alerts
            .iter()
            .map(|a| format!("{} {} {} {} +{}ms", a.rule, a.subject, a.change, a.level.as_str(), a.ts - self.start))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn a_stuck_gauge_raises_flat_line_and_clears_when_it_moves_again() {
    let text = gauges(
        r#"
[[failure]]
mode = "stuck"
sensors = ["wl-a"]
from = "2h"
to = "6h"
"#,
        CALM,
    );
    let r = run(&text, "50000", |a| of(a, "dq.flat_line", "wl-a").iter().any(|e| e.change == "cleared"));
    let fl = of(&r.alerts, "dq.flat_line", "wl-a");
    assert!(!fl.is_empty(), "no dq.flat_line:\n{}", r.dump());
    // Fails once the value has not moved for 2 h (fail_s) — 4 h into the run, or a little
    // earlier if the last readings before the fault happened to show the same centimetre —
    // and clears a few readings after it moves again at 6 h.
    assert_eq!((fl[0].change.as_str(), fl[0].level), ("raised", Level::Blue));
    let raised = fl[0].ts - r.start;
    assert!((4 * H - 1_800_000..=4 * H).contains(&raised), "raised at +{raised} ms\n{}", r.dump());
    let cleared = fl.iter().find(|e| e.change == "cleared").expect("cleared");
    assert!((6 * H..6 * H + 1_800_000).contains(&(cleared.ts - r.start)), "cleared at +{} ms", cleared.ts - r.start);
    assert!(of(&r.alerts, "dq.flat_line", "wl-b").is_empty(), "the working gauge is not flagged");
    // Readings of the stuck stretch past fail_s are stored flagged fail (4).
    let stuck_fail = r.readings["wl-a"].iter().filter(|(t, q)| (4 * H + 300_000..6 * H).contains(t) && *q == 4).count();
    assert!(stuck_fail >= 20, "{stuck_fail} failed readings:\n{:?}", r.readings["wl-a"]);
}

#[test]
fn a_spike_raises_dq_spike_and_never_a_flood_alert() {
    let text = gauges(
        r#"
[[failure]]
mode = "spikes"
sensors = ["wl-a"]
from = "3h"
to = "3h5m"
magnitude = 3.0
"#,
        CALM,
    )
    .replace("to = \"3h5m\"", "to = \"185m\"");
    let r = run(&text, "50000", |a| of(a, "dq.spike", "wl-a").iter().any(|e| e.change == "cleared"));
    let sp = of(&r.alerts, "dq.spike", "wl-a");
    assert!(!sp.is_empty(), "no dq.spike:\n{}", r.dump());
    assert_eq!((sp[0].change.as_str(), sp[0].ts - r.start), ("raised", 3 * H));
    assert!(sp.iter().any(|e| e.change == "cleared"), "{}", r.dump());
    // 29 m would be red; the spike fails its quality test and raises no hazard alert.
    assert!(of(&r.alerts, "water-level-bands", "wl-a").is_empty(), "{}", r.dump());
    assert!(r.readings["wl-a"].contains(&(3 * H, 4)), "the spike is stored flagged fail");
}

/// One gas detector reporting every second, on a gateway of its own; runs at speed 1 so that
/// riskwatch's processing clock (stale, timing) and event time agree.
fn detector(failures: &str, leak: &str) -> String {
    format!(
        r#"
name = "detector"
duration = "{dur}"
registry_toml = '''
[[sites]]
id = "plant"
[[sensors]]
id = "lel-1"
site = "plant"
kind = "gas_combustible"
unit = "%LEL"
interval_s = 1
attributes = {{ alarm_1 = 25.0, alarm_2 = 50.0 }}
'''
rules_toml = '''
[[rules]]
id = "combustible-gas"
applies_to = {{ kind = "gas_combustible" }}
deadband = 5.0
on_delay = {{ samples = 2 }}
levels = {{ blue = 10, yellow = "alarm_1", orange = "alarm_2", red = 100 }}

[[quality]]
applies_to = {{ kind = "gas_combustible" }}
gross_range = {{ fail_min = -5, fail_max = 110 }}
timing = {{ max_future_s = 300 }}
stale = {{ intervals = 3 }}
'''
[[group]]
id = "gas"
model = "gas_leak"
site = "plant"
params = {{ {leak} }}
sensors = [{{ id = "lel-1", params = {{ detector_distance_m = 4.0 }} }}]
{failures}
"#,
        dur = if leak.is_empty() { "14s" } else { "22s" }
    )
}

#[test]
fn a_dropout_raises_stale_and_the_next_reading_clears_it() {
    let text = detector(
        r#"
[[failure]]
mode = "dropout"
sensors = ["lel-1"]
from = "3s"
to = "10s"
"#,
        "",
    );
    let r = run(&text, "1", |a| of(a, "dq.stale", "lel-1").iter().any(|e| e.change == "cleared"));
    let st = of(&r.alerts, "dq.stale", "lel-1");
    assert!(st.len() >= 2, "stale raised and cleared:\n{}", r.dump());
    assert_eq!(st[0].change, "raised");
    assert_eq!(st[1].change, "cleared");
    // Raised during the gap (a 1-s sensor silent for more than 3 s), cleared when it reports again.
    let raised = st[0].ts - r.start;
    assert!((5_000..11_000).contains(&raised), "stale raised at +{raised} ms\n{}", r.dump());
    let ts: Vec<i64> = r.readings["lel-1"].iter().map(|x| x.0).collect();
    assert!(!ts.iter().any(|t| (3_000..10_000).contains(t)), "the gap is a gap: {ts:?}");
    assert_eq!(ts.len() as u64, r.published, "{}", r.out.join("\n"));
}

#[test]
fn a_skewed_gateway_clock_raises_dq_timing() {
    let text = detector(
        r#"
[[failure]]
mode = "clock_skew"
sensors = ["lel-1"]
from = "3s"
to = "6s"
skew = "+1h"
"#,
        "",
    );
    let r = run(&text, "1", |a| of(a, "dq.timing", "lel-1").iter().any(|e| e.change == "cleared"));
    let tm = of(&r.alerts, "dq.timing", "lel-1");
    assert!(!tm.is_empty(), "no dq.timing:\n{}", r.dump());
    assert_eq!(tm[0].change, "raised");
    assert_eq!(tm[0].ts - r.start, H + 3_000, "raised by the first reading stamped an hour ahead");
    assert!(tm.iter().any(|e| e.change == "cleared"), "cleared once the clock is right:\n{}", r.dump());
    let ahead: Vec<&(i64, i64)> = r.readings["lel-1"].iter().filter(|(t, _)| *t >= H).collect();
    assert_eq!(ahead.len(), 3);
    assert!(ahead.iter().all(|(_, q)| *q == 4), "stored flagged fail: {ahead:?}");
    // The correct readings after the skew are still evaluated (not taken as out of order).
    assert!(r.readings["lel-1"].iter().any(|(t, q)| (6_000..H).contains(t) && *q != 4));
}

#[test]
fn duplicated_messages_change_nothing() {
    let text = gauges(
        r#"
[[failure]]
mode = "duplicates"
sensors = ["wl-a"]
"#,
        FLOOD,
    );
    let r = run(&text, "50000", |a| of(a, "water-level-bands", "wl-b").iter().any(|e| e.change == "cleared"));
    let line = r.out.iter().find(|l| l.starts_with("published")).unwrap();
    assert!(line.starts_with("published 867 messages"), "289 readings of wl-a twice, wl-b once: {line}");
    assert_eq!(r.readings["wl-a"].len(), r.readings["wl-b"].len(), "stored once");
    let strip = |s: &str| -> Vec<(String, Level, i64)> {
        of(&r.alerts, "water-level-bands", s).iter().map(|a| (a.change.clone(), a.level, a.ts)).collect()
    };
    let (a, b) = (strip("wl-a"), strip("wl-b"));
    assert!(a.len() >= 8, "the flood crosses every band:\n{}", r.dump());
    assert_eq!(a, b, "the duplicated gauge alerts exactly like the clean one");
}

#[test]
fn late_readings_are_stored_but_never_evaluated() {
    let failures = r#"
[[failure]]
mode = "out_of_order"
sensors = ["wl-a"]
probability = 0.3
"#;
    let text = gauges(failures, FLOOD);
    // Which readings the gateway sends late (after the sensor's next one), from the plan.
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_scenario(dir.path(), "plan", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["simulate", "--scenario", &path.to_string_lossy(), "--dry-run", "--seed", "11"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut newest = i64::MIN;
    let mut late = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        if m["topic"] == "riskwatch/v1/readings/gauge-a/wl-a" {
            let ts = m["payload"]["ts"].as_i64().unwrap();
            if ts < newest {
                late.push(ts);
            }
            newest = newest.max(ts);
        }
    }
    assert!(late.len() > 30, "{} late readings", late.len());

    let r = run(&text, "50000", |a| of(a, "water-level-bands", "wl-b").iter().any(|e| e.change == "cleared"));
    assert_eq!(r.readings["wl-a"].len(), r.readings["wl-b"].len(), "late readings are stored too");
    let a = of(&r.alerts, "water-level-bands", "wl-a");
    let b = of(&r.alerts, "water-level-bands", "wl-b");
    assert!(!a.is_empty(), "{}", r.dump());
    for e in &a {
        assert!(!late.contains(&e.ts), "a late reading changed an alert: {e:?}");
    }
    // Apart from the skipped late readings the gauge behaves like the control: same ladder,
    // each step within one or two readings.
    let steps = |v: &[&ObservedAlert]| v.iter().map(|e| (e.change.clone(), e.level)).collect::<Vec<_>>();
    assert_eq!(steps(&a), steps(&b), "{}", r.dump());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.ts - y.ts).abs() <= 600_000, "{x:?} vs {y:?}");
    }
}

#[test]
fn an_offline_gateway_goes_stale_then_backfills_in_event_time() {
    // A leak starts at 7 s, 4 m from the detector, while its gateway is offline (5 s to 14 s).
    let text = detector(
        r#"
[[failure]]
mode = "offline"
group = "gas"
from = "5s"
to = "14s"
"#,
        "leak_start_s = 7.0, leak_end_s = 30.0, rise_time_s = 1.0, source_strength_lel = 150.0",
    );
    let r = run(&text, "1", |a| {
        of(a, "dq.stale", "lel-1").iter().any(|e| e.change == "cleared")
            && !of(a, "combustible-gas", "lel-1").is_empty()
    });
    let pos = |rule: &str, change: &str| {
        r.alerts.iter().position(|a| a.rule == rule && a.subject == "lel-1" && a.change == change)
    };
    let stale_raised = pos("dq.stale", "raised").unwrap_or_else(|| panic!("no stale:\n{}", r.dump()));
    let stale_cleared = pos("dq.stale", "cleared").unwrap_or_else(|| panic!("stale not cleared:\n{}", r.dump()));
    let gas = pos("combustible-gas", "raised").unwrap_or_else(|| panic!("no gas alert:\n{}", r.dump()));
    // The leak alarm is raised only after the reconnect (the gateway was silent, riskwatch saw
    // the sensor go stale first) but carries the event time of the buffered readings.
    assert!(stale_raised < gas && stale_cleared <= gas, "{}", r.dump());
    let raised_at = r.alerts[gas].ts - r.start;
    assert!((7_000..14_000).contains(&raised_at), "gas alert at +{raised_at} ms (inside the outage)\n{}", r.dump());
    // Nothing lost: every second of the run is stored, in order.
    let ts: Vec<i64> = r.readings["lel-1"].iter().map(|x| x.0).collect();
    assert_eq!(ts.len(), 23, "{ts:?}");
    assert_eq!(ts.len() as u64, r.published);
}
