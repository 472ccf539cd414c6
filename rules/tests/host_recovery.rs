//! Exact recovery of the rules host, as a property: random streams of readings, officers' commands,
//! clock ticks (reminders, stale sensors and call-response chains on), drills and rule reloads,
//! with the host "crashing" at random points — dropped, and rebuilt from what a wiring had made
//! durable (the last saved snapshot, the input journal after it) — deliver, deduplicated by
//! `event_id`, exactly the events of the uninterrupted run, in the same order; and no `event_id` is
//! ever delivered with two different contents.
//!
//! A third of the cases save whole snapshots (the Kafka worker's way), a third save only the
//! sensors that changed since the last save and merge them as the embedded store does, and a
//! third do the same a little at a time, as the embedded rules stage does: a save is begun, and
//! its sensors are copied zero or one per input while later inputs keep changing them.
//!
//! The durability model is the embedded wiring's (architecture.md, "Exact recovery"): an input
//! is journaled before it is applied and its events are published only once it is; snapshots
//! are saved in the same ordered writer, so a saved snapshot never covers an input the journal
//! lacks; a crash may strike after an input was recorded and any prefix of its events delivered,
//! and may lose a snapshot that was taken but not yet saved.
//!
//! `RISKWATCH_HOST_CASES=N` and `RISKWATCH_HOST_SEED=S` for longer or other campaigns; the seed
//! of every run is printed, and a failure names the case to re-run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskwatch_core::{AlertEvent, Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp, Value};
use riskwatch_rules::host::{text_digest, HostDelta};
use riskwatch_rules::{HostSnapshot, Input, RulesHost, SensorState};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const T0: i64 = 1_780_000_000_000;

const REGISTRY: &str = r#"
[[sites]]
id = "river"
[[sites]]
id = "dam"

[[sensors]]
id = "wl-1"
site = "river"
kind = "water_level"
unit = "m"
interval_s = 2
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
[[sensors]]
id = "wl-2"
site = "river"
kind = "water_level"
unit = "m"
interval_s = 2
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
[[sensors]]
id = "wl-3"
site = "dam"
kind = "water_level"
unit = "m"
interval_s = 3
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
"#;

const RULES_A: &str = r#"
[[rules]]
id = "level"
applies_to = { kind = "water_level" }
deadband = 0.2
on_delay = { seconds = 2 }
off_delay = { seconds = 3 }
remind = { red = "3s", orange = "5s" }
levels = { blue = "warning_level - 1", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[rules]]
id = "rise"
applies_to = { kind = "water_level" }
levels = { yellow = "rate(10s) >= 3" }

[[composites]]
id = "river-rollup"
members = { rules = ["level"] }
levels.orange = "count(>= yellow) >= 2"
levels.red = "count(>= orange) >= 2"

[[quality]]
applies_to = { kind = "water_level" }
spike = { suspect = 3.0, fail = 6.0 }
stale = { intervals = 3 }

[[chains]]
id = "red"
level = "red"
tiers = [{ who = "duty", notify = ["sms"], answer_within = "2s" }, { who = "leader", answer_within = "3s" }, { who = "chief" }]

[[chains]]
id = "orange-river"
level = "orange"
sites = ["river"]
tiers = [{ who = "river duty", answer_within = "4s" }, { who = "river leader" }]
"#;

/// The edited rules a reload brings: other thresholds, one rule gone.
const RULES_B: &str = r#"
[[rules]]
id = "level"
applies_to = { kind = "water_level" }
deadband = 0.1
remind = { red = "2s", orange = "4s", yellow = "6s" }
levels = { blue = "warning_level - 0.5", yellow = "warning_level + 0.5", orange = "guaranteed_level", red = "record_level - 0.5" }

[[quality]]
applies_to = { kind = "water_level" }
stale = { intervals = 2 }

[[chains]]
id = "red"
level = "red"
tiers = [{ who = "duty", answer_within = "3s" }, { who = "chief" }]
"#;

const SENSORS: [(&str, &str); 3] = [("wl-1", "river"), ("wl-2", "river"), ("wl-3", "dam")];

fn reading(sensor: &str, site: &str, ts: i64, value: f64, exercise: bool) -> Reading {
    Reading {
        sensor: SensorId::new(sensor),
        site: SiteId::new(site),
        kind: SensorKind::builtin("water_level").unwrap(),
        ts: Timestamp(ts),
        value: Value::Scalar(value),
        unit: Arc::from("m"),
        quality: Quality::NotEvaluated,
        exercise,
    }
}

/// A random input stream on a virtual clock.
fn stream(rng: &mut ChaCha8Rng, len: usize) -> Vec<Input> {
    let mut clock = T0;
    let mut levels = [9.0_f64, 9.5, 8.0];
    let mut drill_ts = T0 - 86_400_000;
    // Now and then one sensor falls silent for a while (stale alerts, also under windows).
    let mut muted: Option<usize> = None;
    let mut out = Vec::with_capacity(len);
    // Alert ids commands can name: made from the rule, sensor and event times used here is
    // too clever; commands pick from a pool the test learns from the reference run instead.
    for _ in 0..len {
        clock += rng.gen_range(50..2_500);
        if rng.gen_bool(0.04) {
            muted = if muted.is_some() { None } else { Some(rng.gen_range(0..SENSORS.len())) };
        }
        let roll = rng.gen_range(0..100);
        let input = if roll < 55 {
            let n = rng.gen_range(1..=3);
            let mut readings = Vec::new();
            for _ in 0..n {
                let mut i = rng.gen_range(0..SENSORS.len());
                if muted == Some(i) {
                    i = (i + 1) % SENSORS.len();
                }
                levels[i] = (levels[i] + rng.gen_range(-1.2..1.5)).clamp(5.0, 18.0);
                // Now and then a spike, and readings stamped a little late or out of order.
                let value = if rng.gen_bool(0.05) { levels[i] + 8.0 } else { levels[i] };
                let ts = clock - rng.gen_range(0..1_500);
                readings.push(reading(SENSORS[i].0, SENSORS[i].1, ts, value, false));
            }
            Input::Readings { at: Timestamp(clock), readings }
        } else if roll < 80 {
            Input::Tick { at: Timestamp(clock) }
        } else if roll < 90 {
            // Placeholder command; the alert id is filled in from the reference run's alerts.
            Input::Command { at: Timestamp(clock), raw: b"?".to_vec() }
        } else if roll < 95 {
            drill_ts += 60_000;
            let i = rng.gen_range(0..SENSORS.len());
            let value = rng.gen_range(8.0..16.0);
            Input::Readings {
                at: Timestamp(clock),
                readings: vec![reading(SENSORS[i].0, SENSORS[i].1, drill_ts, value, true)],
            }
        } else if roll < 97 {
            let rules = if rng.gen_bool(0.5) { RULES_A } else { RULES_B };
            Input::Reload { at: Timestamp(clock), rules: Some(rules.to_string()), registry: None }
        } else if roll < 98 {
            Input::Reload { at: Timestamp(clock), rules: Some("[[rules]\nbroken".into()), registry: None }
        } else {
            Input::Command { at: Timestamp(clock), raw: b"{not json".to_vec() }
        };
        out.push(input);
    }
    out
}

/// Fills each placeholder command with a command on an alert open at that point of the run
/// (or, now and then, one that cannot apply), so commands really change alerts.
fn fill_commands(inputs: &mut [Input], rng: &mut ChaCha8Rng, registry: &Arc<Registry>, digest: &str) {
    let mut host = RulesHost::new(RULES_A, Arc::clone(registry), digest, None).unwrap();
    let mut out = Vec::new();
    for input in inputs.iter_mut() {
        if let Input::Command { raw, .. } = input {
            if raw == b"?" {
                let open = host.open_alert_ids();
                let alert = if open.is_empty() || rng.gen_bool(0.1) {
                    "no-such-alert".to_string()
                } else {
                    open[rng.gen_range(0..open.len())].clone()
                };
                let action =
                    ["acknowledge", "acknowledge", "assign", "resolve", "shelve", "unshelve", "window", "window"]
                        [rng.gen_range(0..8)];
                let cmd = if action == "window" {
                    // Out-of-service windows of a minute or two, opened and closed at random: on a
                    // sensor, a site, stale detection or the spike test (at a site or everywhere).
                    let (sensor, site) = SENSORS[rng.gen_range(0..SENSORS.len())];
                    let action = ["out_of_service", "return_to_service"][rng.gen_range(0..2)];
                    let mut cmd = serde_json::json!({
                        "action": action, "by": "duty", "note": "calibration",
                        "minutes": if action == "out_of_service" { Some(rng.gen_range(1..3)) } else { None },
                        "command_id": format!("c{}", rng.gen::<u32>()),
                    });
                    let target = match rng.gen_range(0..8) {
                        0 => serde_json::json!({"site": site}),
                        1 => serde_json::json!({"rule": "dq.stale", "site": site}),
                        2 => serde_json::json!({"rule": "dq.stale"}),
                        3 => serde_json::json!({"rule": "dq.spike", "site": site}),
                        4 => serde_json::json!({"rule": "dq.spike"}),
                        _ => serde_json::json!({"sensor": sensor, "site": site}),
                    };
                    cmd.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
                    cmd
                } else {
                    serde_json::json!({
                        "alert_id": alert, "action": action, "by": "duty", "note": "on site", "unit": "team-2",
                        "minutes": if action == "shelve" { Some(rng.gen_range(1..3)) } else { None },
                        "command_id": format!("c{}", rng.gen::<u32>()),
                    })
                };
                *raw = cmd.to_string().into_bytes();
            }
        }
        host.apply(&mut input.clone(), &mut out);
    }
}

/// The uninterrupted run: every event in order.
fn reference(inputs: &[Input], registry: &Arc<Registry>, digest: &str) -> Vec<AlertEvent> {
    let mut host = RulesHost::new(RULES_A, Arc::clone(registry), digest, None).unwrap();
    let mut out = Vec::new();
    for input in inputs {
        host.apply(&mut input.clone(), &mut out);
    }
    out
}

/// What consumers got: first delivery order, and each id's content.
#[derive(Default)]
struct Delivered {
    order: Vec<String>,
    by_id: HashMap<String, AlertEvent>,
}

impl Delivered {
    fn deliver(&mut self, e: &AlertEvent, case: u64) {
        match self.by_id.get(&e.event_id) {
            Some(seen) => assert_eq!(seen, e, "case {case}: event id {} delivered with two contents", e.event_id),
            None => {
                self.order.push(e.event_id.clone());
                self.by_id.insert(e.event_id.clone(), e.clone());
            }
        }
    }
}

/// What a store keeps of the host's state: the snapshot without its sensors, and each sensor's
/// state apart (JSON, as the stores keep them).
#[derive(Default)]
struct Saved {
    meta: Option<String>,
    sensors: BTreeMap<String, String>,
}

impl Saved {
    /// A whole snapshot (the Kafka worker's way).
    fn whole(&mut self, snap: HostSnapshot) {
        self.sensors.clear();
        self.meta = Some(serde_json::to_string(&snap).unwrap());
    }

    /// Only what changed (the embedded store's way).
    fn changes(&mut self, delta: HostDelta) {
        let HostDelta { full, snapshot } = delta;
        let (rest, sensors) = snapshot.engine.split_sensors();
        if full {
            self.sensors.clear();
        }
        for s in sensors {
            self.sensors.insert(s.sensor().to_string(), serde_json::to_string(&s).unwrap());
        }
        self.meta = Some(serde_json::to_string(&HostSnapshot { engine: rest, ..snapshot }).unwrap());
    }

    fn load(&self) -> Option<HostSnapshot> {
        let meta: HostSnapshot = serde_json::from_str(self.meta.as_ref()?).unwrap();
        let sensors: Vec<SensorState> = self.sensors.values().map(|j| serde_json::from_str(j).unwrap()).collect();
        Some(HostSnapshot { engine: meta.engine.with_sensors(sensors), ..meta })
    }
}

/// How the host's state is saved.
#[derive(Clone, Copy, PartialEq)]
enum Saving {
    /// Whole snapshots.
    Whole,
    /// Only what changed, copied at once.
    Changes,
    /// Only what changed, copied a little at a time while inputs go on.
    Steps,
}

/// The same inputs through a host that crashes at random points, saving as `saving` says.
fn crashy(
    inputs: &[Input],
    registry: &Arc<Registry>,
    digest: &str,
    rng: &mut ChaCha8Rng,
    case: u64,
    saving: Saving,
) -> (Delivered, u32) {
    let mut delivered = Delivered::default();
    // Durable: the saved state and the journal after it.
    let mut saved = Saved::default();
    let mut journal: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut host = RulesHost::new(RULES_A, Arc::clone(registry), digest, None).unwrap();
    let mut crashes = 0;
    let mut i = 0;
    while i < inputs.len() {
        // Record, then apply, then deliver (possibly only a prefix before a crash).
        let position = host.position() + 1;
        journal.push((position, inputs[i].to_bytes()));
        let mut out = Vec::new();
        host.apply(&mut inputs[i].clone(), &mut out);
        assert_eq!(host.position(), position);
        let mut crash = rng.gen_bool(0.04);
        let upto = if crash { rng.gen_range(0..=out.len()) } else { out.len() };
        for e in &out[..upto] {
            delivered.deliver(e, case);
        }
        i += 1;
        if !crash && saving == Saving::Steps {
            if !host.snapshot_pending() && (host.snapshot_due() || rng.gen_bool(0.05)) {
                host.begin_snapshot();
            }
            if let Some(delta) = host.snapshot_step(rng.gen_range(0..=1)) {
                // Complete: written — or lost in a crash before it was written.
                let covered = delta.snapshot.position;
                if rng.gen_bool(0.1) {
                    crash = true;
                } else {
                    saved.changes(delta);
                    journal.retain(|(p, _)| *p > covered);
                }
            }
        } else if !crash && (host.snapshot_due() || rng.gen_bool(0.05)) {
            // Taken, then written — or lost in a crash before it was written.
            let lost = rng.gen_bool(0.1);
            if saving == Saving::Changes {
                let delta = host.snapshot_changes();
                if !lost {
                    saved.changes(delta);
                }
            } else {
                let snap = host.snapshot();
                if !lost {
                    saved.whole(snap);
                }
            }
            if lost {
                crash = true;
            } else {
                journal.retain(|(p, _)| *p > position);
            }
        }
        if crash {
            crashes += 1;
            host = match saved.load() {
                Some(snap) => {
                    let rec = RulesHost::recover(snap, Arc::clone(registry), digest, None).unwrap();
                    assert!(rec.exact && rec.events.is_empty(), "case {case}: recovery not exact");
                    rec.host
                }
                None => RulesHost::new(RULES_A, Arc::clone(registry), digest, None).unwrap(),
            };
            let mut out = Vec::new();
            for (p, bytes) in &journal {
                if *p <= host.position() {
                    continue;
                }
                let mut input = Input::from_bytes(bytes).unwrap();
                host.apply(&mut input, &mut out);
                assert_eq!(host.position(), *p, "case {case}: journal position");
            }
            // Replayed events are published again (at-least-once, same ids).
            for e in &out {
                delivered.deliver(e, case);
            }
        }
    }
    (delivered, crashes)
}

#[test]
fn recovery_from_any_crash_delivers_exactly_the_uninterrupted_runs_events() {
    let cases: u64 = std::env::var("RISKWATCH_HOST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let seed: u64 = std::env::var("RISKWATCH_HOST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("host recovery property: {cases} cases, RISKWATCH_HOST_SEED={seed}");
    let registry = Arc::new(Registry::from_toml(REGISTRY).unwrap());
    let digest = text_digest(REGISTRY);
    let (mut total_events, mut total_crashes, mut reminders) = (0usize, 0u32, 0usize);
    let mut alarm_management: BTreeMap<&str, usize> = BTreeMap::new();
    for case in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(case));
        let len = rng.gen_range(20..220);
        let mut inputs = stream(&mut rng, len);
        fill_commands(&mut inputs, &mut rng, &registry, &digest);
        let expected = reference(&inputs, &registry, &digest);
        let saving = [Saving::Whole, Saving::Changes, Saving::Steps][(case % 3) as usize];
        let (delivered, crashes) = crashy(&inputs, &registry, &digest, &mut rng, case, saving);
        let expected_ids: Vec<&String> = expected.iter().map(|e| &e.event_id).collect();
        let got_ids: Vec<&String> = delivered.order.iter().collect();
        if let Some(i) = got_ids.iter().zip(&expected_ids).position(|(a, b)| a != b) {
            let around = |ids: &[&String]| -> Vec<String> {
                ids.iter()
                    .skip(i.saturating_sub(3))
                    .take(6)
                    .map(|id| {
                        format!(
                            "{:?}",
                            delivered.by_id.get(*id).or_else(|| expected.iter().find(|e| &&e.event_id == id))
                        )
                    })
                    .collect()
            };
            println!(
                "case {case}: first difference at {i}\n delivered: {:#?}\n expected: {:#?}",
                around(&got_ids),
                around(&expected_ids)
            );
        }
        assert_eq!(
            got_ids, expected_ids,
            "case {case} (RISKWATCH_HOST_SEED={seed}, {crashes} crashes): delivered events differ from the uninterrupted run"
        );
        for e in &expected {
            assert_eq!(&delivered.by_id[&e.event_id], e, "case {case}: content of {}", e.event_id);
        }
        let mut ids: Vec<&String> = expected_ids.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), expected_ids.len(), "case {case}: the uninterrupted run reused an event id");
        total_events += expected.len();
        total_crashes += crashes;
        reminders += expected.iter().filter(|e| e.change.as_str() == "reminder").count();
        for e in &expected {
            let what = match (e.change.as_str(), &*e.rule_id) {
                ("shelved", _) => "shelved",
                ("unshelved", _) if e.by.is_none() => "unshelved by time",
                (_, "oos.window") => "window",
                (_, "dq.out_of_service") => "note",
                ("cleared", "dq.stale") if e.message_en.starts_with("Back in service") => "stale back in service",
                // A spike's alert brought in line on the return (a spike during a window).
                (_, "dq.spike") if e.message_en.ends_with("(back in service)") => "spike back in service",
                _ => continue,
            };
            *alarm_management.entry(what).or_default() += 1;
        }
    }
    println!("{total_events} events, {total_crashes} crashes, {reminders} reminders, {alarm_management:?}");
    // The streams must exercise what the property is about.
    assert!(total_crashes as u64 > cases, "too few crashes to mean anything");
    assert!(reminders > 0 && total_events > cases as usize * 3, "the streams raise too little");
    assert_eq!(
        alarm_management.len(),
        6,
        "shelving, out-of-service windows, and stale detection and the spike test under them are exercised: {alarm_management:?}"
    );
}
