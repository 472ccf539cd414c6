//! Forecast alerts: the engine side of forecast rules ([`crate::forecast_rule`]).
//!
//! Each forecast rule is bound to every registered sensor it selects. A [`Forecast`] of a
//! bound sensor is judged level by level: the share of its members that reach the level's
//! threshold at a valid time no later than the level's window after the issue time is the
//! level's *probability*; the level holds for that forecast when the probability is at least
//! the rule's `probability`. A level is raised once it held in `persistence` forecasts in a
//! row; the alert takes the highest such level. Every new forecast supersedes the previous one
//! (a forecast not issued after the latest one taken is ignored): the alert moves to what the
//! new one says, and clears when forecasts stop crossing — or when the latest forecast's last
//! valid time passes with no newer forecast. Events are category `forecast`, with the issue
//! time as event time, and carry the judgement in `details`. When an observed (hazard) alert
//! of the same sensor is raised or escalated while a forecast alert is active, the two are
//! linked: the observed event's `details.forecast_alert` names the forecast alert and the lead
//! time gained, and later events of the forecast alert name the observed one.

use crate::config::{RuleError, RuleSet};
use crate::engine::Engine;
use crate::forecast_rule::CompiledForecast;
use crate::lifecycle::{AlertBook, LevelChange};
use crate::names::Names;
use crate::network::CompositeRole;
use crate::Direction;
use riskwatch_core::{AlertCategory, AlertEvent, Forecast, Level, Registry, SensorId, SensorKind, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What one forecast says about one level of one binding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outlook {
    /// The level judged.
    pub level: Level,
    /// Issue time of the forecast.
    pub issued: Timestamp,
    /// The level's threshold for this sensor.
    pub threshold: f64,
    /// The level's lead-time window, ms.
    pub within_ms: i64,
    /// Share of members reaching the threshold within the window.
    pub probability: f64,
    /// When the threshold is expected to be reached (the time by which `probability` of the
    /// members have reached it, within the window); `None` when not reached.
    pub crossing: Option<Timestamp>,
    /// Peak (trough, for a falling rule) of the members' median, and its time.
    pub peak: f64,
    /// See `peak`.
    pub peak_time: Timestamp,
    /// Members in the forecast.
    pub members: u32,
}

/// State of one forecast rule on one sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastState {
    /// Current level of its alert.
    pub level: Option<Level>,
    /// Per level (blue..red), consecutive forecasts in which it held.
    pub streak: [u32; 4],
    /// Issue time of the latest forecast taken.
    pub issued: Option<Timestamp>,
    /// Its last valid time.
    pub horizon: Option<Timestamp>,
    /// The open alert.
    pub alert: Option<String>,
    /// The observed alert it was linked to, while it is active.
    pub observed_alert: Option<String>,
    /// What the latest forecast said for the level shown.
    pub outlook: Option<Outlook>,
}

/// One forecast rule bound to one sensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ForecastBinding {
    rule: usize,
    sensor: SensorId,
    site: SiteId,
    kind: SensorKind,
    unit: Arc<str>,
    thresholds: [Option<f64>; 4],
    state: ForecastState,
}

/// One binding's state as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ForecastSnap {
    rule: String,
    sensor: SensorId,
    state: ForecastState,
}

/// Every forecast binding of an engine.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forecasts {
    rules: Vec<CompiledForecast>,
    ids: Vec<Arc<str>>,
    bindings: Vec<ForecastBinding>,
    by_sensor: BTreeMap<SensorId, Vec<usize>>,
    /// Forecasts of sensors no forecast rule applies to, and forecasts not newer than the
    /// latest one taken.
    pub ignored: u64,
}

impl Forecasts {
    /// Binds every forecast rule to the sensors it selects (none on the network host).
    pub(crate) fn bind(rules: &RuleSet, registry: &Registry, role: CompositeRole) -> Result<Forecasts, RuleError> {
        let mut f = Forecasts {
            rules: rules.forecasts.clone(),
            ids: rules.forecasts.iter().map(|r| Arc::from(r.spec.id.as_str())).collect(),
            ..Default::default()
        };
        if role == CompositeRole::Network {
            return Ok(f);
        }
        for s in registry.sensors() {
            for (ri, r) in rules.forecasts.iter().enumerate().filter(|(_, r)| r.spec.applies_to.matches(s)) {
                let thresholds = r.thresholds(s).map_err(|(level, m)| {
                    RuleError::Invalid(vec![format!("forecast rule {} on sensor {}: {level}: {m}", r.spec.id, s.id)])
                })?;
                f.by_sensor.entry(s.id.clone()).or_default().push(f.bindings.len());
                f.bindings.push(ForecastBinding {
                    rule: ri,
                    sensor: s.id.clone(),
                    site: s.site.clone(),
                    kind: s.kind.clone(),
                    unit: Arc::clone(&s.unit),
                    thresholds,
                    state: ForecastState::default(),
                });
            }
        }
        Ok(f)
    }

    /// The state to save: bindings that hold any.
    pub(crate) fn save(&self) -> Vec<ForecastSnap> {
        self.bindings
            .iter()
            .filter(|b| b.state != ForecastState::default())
            .map(|b| ForecastSnap {
                rule: self.rules[b.rule].spec.id.clone(),
                sensor: b.sensor.clone(),
                state: b.state.clone(),
            })
            .collect()
    }

    /// Puts saved state back; returns the alerts of bindings these rules no longer have.
    pub(crate) fn restore(&mut self, saved: Vec<ForecastSnap>) -> Vec<Option<String>> {
        for b in &mut self.bindings {
            b.state = ForecastState::default();
        }
        let mut orphans = Vec::new();
        for s in saved {
            let target = self
                .by_sensor
                .get(&s.sensor)
                .and_then(|list| list.iter().copied().find(|&i| self.rules[self.bindings[i].rule].spec.id == s.rule));
            match target {
                Some(i) => self.bindings[i].state = s.state,
                None => orphans.push(s.state.alert),
            }
        }
        orphans
    }

    /// Links an observed alert's event (raised or escalated) with the active forecast alerts of
    /// its sensor.
    pub(crate) fn link(&mut self, book: &AlertBook, ev: &mut AlertEvent) {
        let Some(list) = self.by_sensor.get(&ev.subject) else { return };
        let mut linked = Vec::new();
        for &i in list {
            let b = &mut self.bindings[i];
            let (Some(level), Some(id)) = (b.state.level, b.state.alert.as_ref()) else { continue };
            let Some(rec) = book.get(id) else { continue };
            b.state.observed_alert.get_or_insert_with(|| ev.alert_id.clone());
            let o = b.state.outlook.as_ref();
            linked.push(json!({
                "alert_id": id,
                "rule": self.ids[b.rule].as_ref(),
                "level": level,
                "raised": rec.first_ts.to_rfc3339(),
                "issued": o.map(|o| o.issued.to_rfc3339()),
                "expected_crossing": o.and_then(|o| o.crossing).map(|t| t.to_rfc3339()),
                "lead_time_gained_s": (ev.ts.millis() - rec.first_ts.millis()) / 1000,
            }));
        }
        if linked.is_empty() {
            return;
        }
        let value = if linked.len() == 1 { linked.remove(0) } else { serde_json::Value::Array(linked) };
        match ev.details.as_mut() {
            Some(serde_json::Value::Object(m)) => {
                m.insert("forecast_alert".into(), value);
            }
            _ => ev.details = Some(json!({ "forecast_alert": value })),
        }
    }
}

/// What a forecast says about one threshold: the share of its members that reach it at a
/// valid time no later than `within_ms` after the issue time, and the time by which
/// `probability` of the members have reached it (`None` if they do not). `Rising`: at or
/// above the threshold; `Falling`: at or below.
pub fn crossing(
    f: &Forecast,
    threshold: f64,
    within_ms: i64,
    probability: f64,
    direction: Direction,
) -> (f64, Option<Timestamp>) {
    let rising = direction == Direction::Rising;
    let until = f.issued.millis().saturating_add(within_ms);
    let mut crossings: Vec<Timestamp> = f
        .members
        .iter()
        .filter_map(|m| {
            m.iter()
                .zip(&f.valid)
                .take_while(|(_, t)| t.millis() <= until)
                .find(|(v, _)| if rising { **v >= threshold } else { **v <= threshold })
                .map(|(_, t)| *t)
        })
        .collect();
    crossings.sort();
    let members = f.members.len().max(1);
    let share = crossings.len() as f64 / members as f64;
    // The fewest members whose share reaches `probability` (k / n compared as the share is).
    let needed = (1..=members).find(|k| *k as f64 / members as f64 >= probability).unwrap_or(members);
    (share, crossings.get(needed - 1).copied())
}

/// Judges one forecast for every level of a binding.
fn judge(rule: &CompiledForecast, thresholds: &[Option<f64>; 4], f: &Forecast) -> [Option<(Outlook, bool)>; 4] {
    let rising = rule.spec.direction == Direction::Rising;
    let median = f.median();
    let (mut peak, mut peak_time) = (f64::NAN, f.issued);
    for (v, t) in median.iter().zip(&f.valid) {
        if peak.is_nan() || (rising && *v > peak) || (!rising && *v < peak) {
            (peak, peak_time) = (*v, *t);
        }
    }
    let mut out: [Option<(Outlook, bool)>; 4] = Default::default();
    for (i, slot) in out.iter_mut().enumerate() {
        let (Some(threshold), Some(within_ms)) = (thresholds[i], rule.within_ms[i]) else { continue };
        let (probability, crossing) = crossing(f, threshold, within_ms, rule.spec.probability, rule.spec.direction);
        let met = probability >= rule.spec.probability;
        *slot = Some((
            Outlook {
                level: Level::ALL[i],
                issued: f.issued,
                threshold,
                within_ms,
                probability,
                crossing,
                peak,
                peak_time,
                members: u32::try_from(f.members.len()).unwrap_or(u32::MAX),
            },
            met,
        ));
    }
    out
}

/// Why a forecast alert changed.
#[derive(Clone, Copy)]
enum Cause {
    /// A new forecast.
    Forecast,
    /// The latest forecast ran out with no newer one.
    Expired,
}

impl Engine {
    /// Forecasts set aside: of sensors no forecast rule applies to, or not newer than the
    /// latest one taken.
    pub fn forecasts_ignored(&self) -> u64 {
        self.forecasts.ignored
    }

    /// Takes one validated forecast at processing time `now`: every forecast rule bound to its
    /// sensor judges it (see the module documentation), appending alert events to `out`.
    pub fn forecast(&mut self, f: &Forecast, now: Timestamp, out: &mut Vec<AlertEvent>) {
        self.started.get_or_insert(now);
        let before = out.len();
        let Engine { forecasts, book, names, .. } = self;
        // Decoding checked all this; an input from elsewhere (a damaged journal) is set aside
        // rather than allowed to put a NaN into the state.
        let well_formed = !f.valid.is_empty()
            && !f.members.is_empty()
            && f.members.iter().all(|m| m.len() == f.valid.len() && m.iter().all(|v| v.is_finite()));
        let Some(list) = forecasts.by_sensor.get(&f.sensor).filter(|_| well_formed) else {
            forecasts.ignored += 1;
            return;
        };
        for &i in list {
            let b = &mut forecasts.bindings[i];
            if b.state.issued.is_some_and(|t| f.issued <= t) {
                forecasts.ignored += 1;
                continue;
            }
            let rule = &forecasts.rules[b.rule];
            let judged = judge(rule, &b.thresholds, f);
            for (streak, j) in b.state.streak.iter_mut().zip(&judged) {
                *streak = if j.as_ref().is_some_and(|(_, met)| *met) { streak.saturating_add(1) } else { 0 };
            }
            let persistence = rule.spec.persistence.max(1);
            let to = (0..4)
                .rev()
                .find(|&l| judged[l].as_ref().is_some_and(|(_, met)| *met) && b.state.streak[l] >= persistence)
                .map(|l| Level::ALL[l]);
            let from = b.state.level;
            // What is shown: the judgement for the new level, or for the level left.
            let shown = to.or(from).and_then(|l| judged[l.index()].as_ref()).map(|(o, _)| o.clone());
            b.state.issued = Some(f.issued);
            b.state.horizon = Some(f.horizon());
            b.state.outlook = shown;
            b.state.level = to;
            if from != to {
                let ev = change(book, names, &forecasts.ids[b.rule], rule, b, from, to, f.issued, now, Cause::Forecast);
                out.push(ev);
            }
            if to.is_none() {
                b.state.observed_alert = None;
            }
        }
        self.stats.events += (out.len() - before) as u64;
        self.label(&mut out[before..]);
    }

    /// Clears forecast alerts whose latest forecast has run out (its last valid time is before
    /// `now`) with no newer one.
    pub(crate) fn expire_forecasts(&mut self, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let Engine { forecasts, book, names, .. } = self;
        for b in &mut forecasts.bindings {
            let Some(from) = b.state.level else { continue };
            if b.state.horizon.is_none_or(|h| now <= h) {
                continue;
            }
            let rule = &forecasts.rules[b.rule];
            b.state.level = None;
            b.state.streak = [0; 4];
            let ev = change(book, names, &forecasts.ids[b.rule], rule, b, Some(from), None, now, now, Cause::Expired);
            b.state.observed_alert = None;
            out.push(ev);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn change(
    book: &mut AlertBook,
    names: &Names,
    rule_id: &Arc<str>,
    rule: &CompiledForecast,
    b: &mut ForecastBinding,
    from: Option<Level>,
    to: Option<Level>,
    ts: Timestamp,
    now: Timestamp,
    cause: Cause,
) -> AlertEvent {
    let o = b.state.outlook.clone();
    let mut ev = book.apply_change(
        &mut b.state.alert,
        LevelChange {
            rule_id,
            subject: &b.sensor,
            site: &b.site,
            kind: &b.kind,
            category: AlertCategory::Forecast,
            from,
            to,
            ts,
            now,
            value: o.as_ref().map_or(0.0, |o| o.peak),
            threshold: o.as_ref().map_or(0.0, |o| o.threshold),
            unit: Arc::clone(&b.unit),
            remind_ms: rule.remind_ms,
            decimals: u8::try_from(rule.spec.precision).ok(),
        },
    );
    let p = rule.spec.precision;
    let (site, sensor) = (b.site.as_str(), b.sensor.as_str());
    let (site_zh, sensor_zh, site_en, sensor_en) =
        (names.site(site, true), names.sensor(sensor, true), names.site(site, false), names.sensor(sensor, false));
    let unit = &b.unit;
    let mut details = serde_json::Map::new();
    if let Some(o) = &o {
        let lead = o.crossing.map(|c| (c.millis() - o.issued.millis()) / 1000);
        details.insert("issued".into(), json!(o.issued.to_rfc3339()));
        details.insert("expected_crossing".into(), json!(o.crossing.map(|t| t.to_rfc3339())));
        details.insert("lead_time_s".into(), json!(lead));
        details.insert("within_s".into(), json!(o.within_ms / 1000));
        details.insert("threshold".into(), json!(o.threshold));
        details.insert("probability".into(), json!(o.probability));
        details.insert("members".into(), json!(o.members));
        details.insert("peak".into(), json!(o.peak));
        details.insert("peak_time".into(), json!(o.peak_time.to_rfc3339()));
    }
    if let Some(obs) = &b.state.observed_alert {
        details.insert("observed_alert".into(), json!(obs));
    }
    match (to, cause, &o) {
        (Some(level), _, Some(o)) => {
            let crossing = o.crossing.map(|t| t.to_cst_minute()).unwrap_or_default();
            let lead_h = o.crossing.map_or(0.0, |c| (c.millis() - o.issued.millis()) as f64 / 3_600_000.0);
            let pct = (o.probability * 100.0).round();
            ev.message_zh = format!(
                "【{}预报预警】{site_zh} {sensor_zh}：预报 {crossing}（北京时间）达到 {:.p$}{unit}（预见期 {lead_h:.0} 小时，概率 {pct}%），预报峰值 {:.p$}{unit}（{}）",
                level.zh(),
                o.threshold,
                o.peak,
                o.peak_time.to_cst_minute()
            );
            ev.message_en = format!(
                "{level} forecast alert: {sensor_en} ({site_en}) is forecast to reach {:.p$} {unit} at {crossing} (UTC+8), lead time {lead_h:.0} h, probability {pct}%; forecast peak {:.p$} {unit} at {}",
                o.threshold,
                o.peak,
                o.peak_time.to_cst_minute()
            );
        }
        (_, Cause::Expired, _) => {
            details.insert("reason".into(), json!("expired"));
            ev.message_zh = format!("【预报预警解除】{site_zh} {sensor_zh}：最新预报已过期，未收到新的预报");
            ev.message_en = format!(
                "Forecast alert cleared: {sensor_en} ({site_en}): the latest forecast ran out with no newer one"
            );
        }
        _ => {
            details.insert("reason".into(), json!("forecast_below"));
            ev.message_zh = format!("【预报预警解除】{site_zh} {sensor_zh}：最新预报不再达到预警阈值");
            ev.message_en = format!(
                "Forecast alert cleared: {sensor_en} ({site_en}): the latest forecast no longer reaches the threshold"
            );
        }
    }
    ev.details = Some(serde_json::Value::Object(details));
    ev
}
