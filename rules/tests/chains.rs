//! Call-response chains (叫应) on a virtual clock: who is called when, what stops a chain, and
//! that a recovered host walks on exactly as the uninterrupted one.

use riskwatch_core::{
    AlertChange, AlertEvent, Call, Level, Quality, Reading, Registry, SensorId, SensorKind, SiteId, Timestamp, Value,
};
use riskwatch_rules::host::text_digest;
use riskwatch_rules::{Input, Outcome, RuleSet, RulesHost};
use std::sync::Arc;

const T0: i64 = 1_780_000_000_000;
const S: i64 = 1000;
const MIN: i64 = 60 * S;

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
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
[[sensors]]
id = "wl-2"
site = "dam"
kind = "water_level"
unit = "m"
attributes = { warning_level = 10.0, guaranteed_level = 12.0, record_level = 14.0 }
"#;

const RULES: &str = r#"
[[rules]]
id = "level"
applies_to = { kind = "water_level" }
remind = { red = "off", orange = "off" }
levels = { yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }

[[chains]]
id = "red-all"
level = "red"
tiers = [
  { who = "duty officer", notify = ["sms-duty"], contacts = ["13800000001"], answer_within = "5m" },
  { who = "shift leader", notify = ["dingtalk-leaders"], answer_within = "10m" },
  { who = "bureau chief", notify = ["sms-chief"] },
]

[[chains]]
id = "red-dam"
level = "red"
sites = ["dam"]
tiers = [{ who = "dam keeper", answer_within = "2m" }, { who = "dam chief" }]

[[chains]]
id = "orange-water"
level = "orange"
kinds = ["water_level"]
tiers = [{ who = "orange duty", answer_within = "15m" }, { who = "orange leader" }]
"#;

fn host() -> RulesHost {
    let registry = Arc::new(Registry::from_toml(REGISTRY).unwrap());
    RulesHost::new(RULES, registry, &text_digest(REGISTRY), None).unwrap()
}

fn reading(sensor: &str, site: &str, at: i64, value: f64) -> Input {
    Input::Readings {
        at: Timestamp(at),
        readings: vec![Reading {
            sensor: SensorId::new(sensor),
            site: SiteId::new(site),
            kind: SensorKind::builtin("water_level").unwrap(),
            ts: Timestamp(at),
            value: Value::Scalar(value),
            unit: Arc::from("m"),
            quality: Quality::NotEvaluated,
            exercise: false,
        }],
    }
}

fn ack(alert: &str, by: &str, at: i64) -> Input {
    let raw = serde_json::json!({ "alert_id": alert, "action": "acknowledge", "by": by }).to_string();
    Input::Command { at: Timestamp(at), raw: raw.into_bytes() }
}

fn apply(host: &mut RulesHost, mut input: Input) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let outcome = host.apply(&mut input, &mut out);
    assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
    out
}

/// Ticks every second from `from` to `to` (inclusive), as the wirings do; the events.
fn tick(host: &mut RulesHost, from: i64, to: i64) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        out.extend(apply(host, Input::Tick { at: Timestamp(t) }));
        t += S;
    }
    out
}

fn calls(events: &[AlertEvent]) -> Vec<(u32, String, i64)> {
    events
        .iter()
        .filter(|e| e.change == AlertChange::Called)
        .map(|e| {
            let c = Call::of(e).expect("a called event carries its call");
            (c.tier, c.who, e.ts.millis() - T0)
        })
        .collect()
}

#[test]
fn unanswered_tiers_are_called_at_their_deadlines_and_an_acknowledgement_stops_the_chain() {
    let mut h = host();
    let raised = apply(&mut h, reading("wl-1", "river", T0, 14.5));
    assert_eq!(raised[0].change, AlertChange::Raised);
    assert_eq!(raised[0].level, Level::Red);
    let id = raised[0].alert_id.clone();
    // Tier 1 at once, under the alert's id, right after the raise.
    assert_eq!(calls(&raised), [(1, "duty officer".to_string(), 0)]);
    let first = Call::of(&raised[1]).unwrap();
    assert_eq!((raised[1].alert_id.as_str(), raised[1].seq), (id.as_str(), 1));
    assert_eq!(first.chain, "red-all");
    assert_eq!((first.tier, first.tiers), (1, 3));
    assert_eq!(first.notify, ["sms-duty"]);
    assert_eq!(first.contacts, ["13800000001"]);
    assert_eq!(first.deadline, Some(Timestamp(T0 + 5 * MIN)));
    assert!(
        raised[1].message_zh.contains("叫应") && raised[1].message_zh.contains("duty officer"),
        "{}",
        raised[1].message_zh
    );

    // Nothing until the deadline; tier 2 exactly at it.
    assert!(calls(&tick(&mut h, T0 + S, T0 + 5 * MIN - S)).is_empty(), "no tier before its deadline");
    let second = tick(&mut h, T0 + 5 * MIN, T0 + 5 * MIN);
    assert_eq!(calls(&second), [(2, "shift leader".to_string(), 5 * MIN)]);
    let call = Call::of(&second[0]).unwrap();
    assert_eq!(call.notify, ["dingtalk-leaders"]);
    assert_eq!(call.deadline, Some(Timestamp(T0 + 15 * MIN)), "tier 2's time counts from its call");

    // The shift leader answers: the chain stops there, and the acknowledgement says whom it answered.
    let answered = apply(&mut h, ack(&id, "leader wang", T0 + 7 * MIN));
    assert_eq!(answered[0].change, AlertChange::Acknowledged);
    let waiting = Call::of(&answered[0]).expect("the acknowledgement names the tier that was waiting");
    assert_eq!((waiting.tier, waiting.who.as_str()), (2, "shift leader"));
    assert!(calls(&tick(&mut h, T0 + 7 * MIN + S, T0 + 40 * MIN)).is_empty(), "no tier 3 after the acknowledgement");
}

#[test]
fn the_last_tier_is_called_and_then_nobody_else() {
    let mut h = host();
    let raised = apply(&mut h, reading("wl-1", "river", T0, 14.5));
    let later = tick(&mut h, T0 + S, T0 + 60 * MIN);
    let all: Vec<_> = raised.into_iter().chain(later).collect();
    assert_eq!(
        calls(&all),
        [(1, "duty officer".into(), 0), (2, "shift leader".into(), 5 * MIN), (3, "bureau chief".into(), 15 * MIN)]
    );
    assert_eq!(Call::of(all.last().unwrap()).unwrap().deadline, None, "the last tier has no deadline");
}

#[test]
fn the_most_specific_chain_applies_and_escalation_starts_the_new_levels_chain() {
    let mut h = host();
    // The dam's own red chain wins over the general one.
    let dam = apply(&mut h, reading("wl-2", "dam", T0, 14.5));
    assert_eq!(Call::of(&dam[1]).unwrap().chain, "red-dam");
    // Orange at the river: the kind's orange chain.
    let orange = apply(&mut h, reading("wl-1", "river", T0 + S, 12.5));
    assert_eq!(calls(&orange), [(1, "orange duty".to_string(), S)]);
    // Escalation to red: the red chain from its first tier; the orange one is over.
    let red = apply(&mut h, reading("wl-1", "river", T0 + 2 * S, 14.5));
    assert_eq!(red[0].change, AlertChange::Escalated);
    assert_eq!(calls(&red), [(1, "duty officer".to_string(), 2 * S)]);
    // Back to orange: the red walk goes on (still unacknowledged).
    let down = apply(&mut h, reading("wl-1", "river", T0 + 3 * S, 12.5));
    assert!(calls(&down).is_empty());
    let later = tick(&mut h, T0 + 4 * S, T0 + 2 * S + 5 * MIN);
    let river: Vec<_> = calls(&later.iter().filter(|e| e.site.as_str() == "river").cloned().collect::<Vec<_>>());
    assert_eq!(river, [(2, "shift leader".to_string(), 2 * S + 5 * MIN)], "orange's 15 min never came");
    // Clearing stops a walk: the dam's tier 2 (due at 2 min) was called, and then the river
    // clears before its tier 3 is due.
    let clear = apply(&mut h, reading("wl-1", "river", T0 + 6 * MIN, 5.0));
    assert_eq!(clear[0].change, AlertChange::Cleared);
    assert!(calls(&tick(&mut h, T0 + 6 * MIN + S, T0 + 60 * MIN)).is_empty());
}

#[test]
fn a_recovered_host_calls_exactly_the_tiers_the_uninterrupted_one_calls() {
    // The uninterrupted run.
    let mut whole = host();
    let mut expected = apply(&mut whole, reading("wl-1", "river", T0, 14.5));
    expected.extend(tick(&mut whole, T0 + S, T0 + 30 * MIN));

    // Saved after tier 1, restored, walked on.
    let mut first = host();
    let mut got = apply(&mut first, reading("wl-1", "river", T0, 14.5));
    got.extend(tick(&mut first, T0 + S, T0 + 3 * MIN));
    let saved = serde_json::to_string(&first.snapshot()).unwrap();
    drop(first);
    let registry = Arc::new(Registry::from_toml(REGISTRY).unwrap());
    let recovery =
        RulesHost::recover(serde_json::from_str(&saved).unwrap(), registry, &text_digest(REGISTRY), None).unwrap();
    assert!(recovery.exact);
    let mut second = recovery.host;
    got.extend(tick(&mut second, T0 + 3 * MIN + S, T0 + 30 * MIN));
    assert_eq!(got, expected, "same events, ids and content");
    assert_eq!(calls(&got).len(), 3);

    // A host down across two deadlines calls the tier that was due once, then the next at its
    // own deadline: none skipped, none twice.
    let mut third = host();
    apply(&mut third, reading("wl-1", "river", T0, 14.5));
    let saved = third.snapshot();
    let registry = Arc::new(Registry::from_toml(REGISTRY).unwrap());
    let mut back = RulesHost::recover(saved, registry, &text_digest(REGISTRY), None).unwrap().host;
    apply(&mut back, Input::Resume { at: Timestamp(T0 + 20 * MIN) });
    let after = tick(&mut back, T0 + 20 * MIN, T0 + 40 * MIN);
    assert_eq!(calls(&after), [(2, "shift leader".into(), 20 * MIN), (3, "bureau chief".into(), 30 * MIN)]);
}

#[test]
fn chain_mistakes_are_reported_with_field_and_line() {
    let bad = r#"
[[rules]]
id = "level"
applies_to = { kind = "water_level" }
levels = { red = 14 }

[[chains]]
id = "red"
level = "red"
tiers = [
  { who = "duty", notify = ["sms"] },
  { who = "", answer_within = "5 fortnights" },
]

[[chains]]
id = "red"
level = "red"
tiers = []
"#;
    let err = RuleSet::from_toml(bad).unwrap_err().to_string();
    for expected in [
        "line 11: chains[0].tiers[0].answer_within: needed on every tier but the last",
        "line 12: chains[0].tiers[1].who: name who is called",
        "line 12: chains[0].tiers[1].answer_within:",
        "chains[1].id: chain id \"red\" is used twice",
        "line 18: chains[1].tiers: give at least one tier",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let unknown = RuleSet::from_toml("[[chains]]\nid = \"x\"\nlevel = \"crimson\"\ntiers = [{ who = \"a\" }]\n");
    assert!(unknown.unwrap_err().to_string().contains("crimson"));
}

#[test]
fn a_shelved_alerts_chain_waits_and_calls_the_tier_due_once_the_alert_is_back() {
    let mut h = host();
    let raised = apply(&mut h, reading("wl-1", "river", T0, 14.5));
    let id = raised[0].alert_id.clone();
    assert_eq!(calls(&raised), [(1, "duty officer".to_string(), 0)]);
    // Shelved at minute 1 for 10 minutes: tier 2 (due at minute 5) is not called meanwhile.
    let shelve = serde_json::json!({
        "alert_id": id, "action": "shelve", "by": "Li Wei", "note": "gauge being replaced", "minutes": 10,
    });
    let shelved = apply(&mut h, Input::Command { at: Timestamp(T0 + MIN), raw: shelve.to_string().into_bytes() });
    assert_eq!(shelved[0].change, AlertChange::Shelved);
    let during = tick(&mut h, T0 + MIN + S, T0 + 11 * MIN - S);
    assert_eq!(calls(&during), [], "no call while shelved");
    // Back at minute 11: the overdue tier 2 is called at that tick, tier 3 at its own deadline.
    let after = tick(&mut h, T0 + 11 * MIN, T0 + 22 * MIN);
    assert_eq!(
        calls(&after),
        [(2, "shift leader".to_string(), 11 * MIN), (3, "bureau chief".to_string(), 21 * MIN)],
        "{:?}",
        after.iter().map(|e| (e.change, e.ts.millis() - T0)).collect::<Vec<_>>()
    );
}
