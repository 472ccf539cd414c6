//! The engine: binds rules to registered sensors and turns readings into alert events.

use crate::bands::{BandSpec, BandState, ThresholdBands, Transition};
use crate::config::{resolve, RuleError, RuleSet, RuleSpec};
use crate::message::MessageTemplate;
use riskwatch_core::alert::alert_id;
use riskwatch_core::{AlertChange, AlertEvent, Level, Reading, Registry, SensorId, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;

/// The one active alert of a binding.
#[derive(Clone, Debug, PartialEq)]
struct ActiveAlert {
    id: String,
    seq: u32,
    highest: Level,
    first_ts: Timestamp,
}

/// One rule applied to one sensor, with its resolved thresholds and its state.
struct Binding {
    rule: usize,
    spec: BandSpec,
    state: BandState,
    alert: Option<ActiveAlert>,
    last_ts: Option<Timestamp>,
}

/// Counters of what the engine did with its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Readings offered.
    pub readings: u64,
    /// Readings no rule applies to.
    pub unmatched: u64,
    /// Readings skipped because their quality flag is fail or missing.
    pub bad_quality: u64,
    /// Readings skipped because they were older than or as old as the last one seen for the
    /// same binding (duplicates and out-of-order arrivals).
    pub out_of_order: u64,
    /// Alert events emitted.
    pub events: u64,
}

/// The rule engine. Feed readings with [`Engine::process`]; it never does I/O.
pub struct Engine {
    rules: Vec<Arc<RuleSpec>>,
    rule_ids: Vec<Arc<str>>,
    bindings: HashMap<SensorId, Vec<Binding>>,
    stats: EngineStats,
}

impl Engine {
    /// Binds every rule to every matching sensor of the registry. Fails, listing every
    /// problem, if a rule does not fit the registry (unknown kind, missing attribute, …).
    pub fn new(rules: &RuleSet, registry: &Registry) -> Result<Self, RuleError> {
        let problems = rules.check_against(registry);
        if !problems.is_empty() {
            return Err(RuleError::Invalid(problems));
        }
        let mut bindings: HashMap<SensorId, Vec<Binding>> = HashMap::new();
        for (ri, r) in rules.rules.iter().enumerate() {
            for s in registry.sensors().into_iter().filter(|s| r.applies_to.matches(s)) {
                let thresholds = resolve(r, s).map_err(|p| RuleError::Invalid(vec![p]))?;
                bindings.entry(s.id.clone()).or_default().push(Binding {
                    rule: ri,
                    spec: BandSpec { direction: r.direction, thresholds, deadband: r.deadband, on_delay: r.on_delay, off_delay: r.off_delay },
                    state: BandState::default(),
                    alert: None,
                    last_ts: None,
                });
            }
        }
        Ok(Engine {
            rules: rules.rules.iter().cloned().map(Arc::new).collect(),
            rule_ids: rules.rules.iter().map(|r| Arc::from(r.id.as_str())).collect(),
            bindings,
            stats: EngineStats::default(),
        })
    }

    /// Number of (rule, sensor) bindings.
    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Levels of all active alerts, by (rule id, sensor id).
    pub fn active(&self) -> Vec<(Arc<str>, SensorId, Level)> {
        let mut v: Vec<_> = self
            .bindings
            .iter()
            .flat_map(|(sid, bs)| {
                bs.iter().filter_map(move |b| b.state.level.map(|l| (Arc::clone(&self.rule_ids[b.rule]), sid.clone(), l)))
            })
            .collect();
        v.sort();
        v
    }

    /// Runs one reading through every rule bound to its sensor, appending the resulting alert
    /// events to `out`.
    pub fn process(&mut self, reading: &Reading, out: &mut Vec<AlertEvent>) {
        self.stats.readings += 1;
        let Some(bindings) = self.bindings.get_mut(reading.sensor.as_str()) else {
            self.stats.unmatched += 1;
            return;
        };
        if !reading.quality.usable_for_hazard() {
            self.stats.bad_quality += 1;
            return;
        }
        for b in bindings.iter_mut() {
            if b.last_ts.is_some_and(|last| reading.ts <= last) {
                self.stats.out_of_order += 1;
                continue;
            }
            b.last_ts = Some(reading.ts);
            let rule = &self.rules[b.rule];
            let Some(v) = rule.measure.of(reading) else { continue };
            if let Some(t) = ThresholdBands::step(&b.spec, &mut b.state, reading.ts, v) {
                let ev = event(rule, &self.rule_ids[b.rule], &mut b.alert, &t, reading, v);
                self.stats.events += 1;
                out.push(ev);
            }
        }
    }
}

/// Builds the alert event for a transition and updates the binding's active alert.
fn event(
    rule: &RuleSpec,
    rule_id: &Arc<str>,
    slot: &mut Option<ActiveAlert>,
    t: &Transition,
    r: &Reading,
    value: f64,
) -> AlertEvent {
    let (change, level) = match (t.from, t.to) {
        (None, Some(to)) => (AlertChange::Raised, to),
        (Some(from), Some(to)) if to > from => (AlertChange::Escalated, to),
        (Some(_), Some(to)) => (AlertChange::DeEscalated, to),
        (Some(from), None) => (AlertChange::Cleared, from),
        (None, None) => unreachable!("ThresholdBands reports only changes"),
    };
    let alert = match slot {
        Some(a) if change != AlertChange::Raised => {
            a.seq += 1;
            a.highest = a.highest.max(level);
            a.clone()
        }
        _ => ActiveAlert { id: alert_id(rule_id, r.sensor.as_str(), r.ts), seq: 0, highest: level, first_ts: r.ts },
    };
    *slot = if change == AlertChange::Cleared { None } else { Some(alert.clone()) };
    let unit: Arc<str> = Arc::from(rule.measure.unit(&r.unit));
    let p = rule.precision;
    let lookup = |name: &str| -> Option<String> {
        Some(match name {
            "sensor" => r.sensor.to_string(),
            "site" => r.site.to_string(),
            "kind" => r.kind.en().to_string(),
            "kind_zh" => r.kind.zh().to_string(),
            "value" => format!("{value:.p$}"),
            "threshold" => format!("{:.p$}", t.threshold),
            "unit" => unit.to_string(),
            "level" => level.as_str().to_string(),
            "level_zh" => level.zh().to_string(),
            "grade" => level.grade().to_string(),
            "change" => change.as_str().replace('_', "-"),
            "change_zh" => change.zh().to_string(),
            "rule" => rule_id.to_string(),
            _ => return None,
        })
    };
    let message_zh = MessageTemplate::render(&rule.message.zh, lookup);
    let message_en = MessageTemplate::render(&rule.message.en, lookup);
    AlertEvent {
        event_id: format!("{}-{}", alert.id, alert.seq),
        alert_id: alert.id,
        seq: alert.seq,
        rule_id: Arc::clone(rule_id),
        subject: r.sensor.clone(),
        site: r.site.clone(),
        kind: r.kind.clone(),
        change,
        level,
        previous_level: t.from,
        highest_level: alert.highest,
        first_ts: alert.first_ts,
        ts: r.ts,
        value,
        threshold: t.threshold,
        unit,
        message_zh,
        message_en,
        exercise: false,
    }
}
