//! Forecasts in a replay, and their skill by lead time.
//!
//! A replay may take the forecasts issued during the recorded period (JSON lines, each one a
//! wire-format forecast, docs/wire-format.md §14, naming its `sensor` and `site`). They run
//! through the same engine as the readings, each at its issue time ([`hindcast`]), so the
//! forecast rules raise their `forecast` alerts exactly as live.
//!
//! [`lead_skill`] then judges every forecast against the **observed crossings** — the first
//! time, after the forecast's issue, that the sensor's observed (hazard) alert reached the
//! level — per lead-time bucket `(a, b]` hours: the forecast *warns* in a bucket when the
//! time by which the forecast rule's share of members reaches the level's threshold lies `a`
//! to `b` hours after the issue; the observation *crosses* in the bucket when the observed
//! crossing does. Both: a hit; warned only: a false alarm; crossed only: a miss. Forecasts
//! issued while the observed alert was already at the level are not judged. The lead time
//! gained is read from the observed alerts' links to forecast alerts
//! (`details.forecast_alert.lead_time_gained_s`).

use anyhow::{bail, Context, Result};
use riskwatch_core::wire::forecast::{decode_forecast, forecast_topic, ForecastLimits};
use riskwatch_core::{AlertCategory, AlertEvent, Forecast, Level, Reading, Registry, Timestamp, Value};
use riskwatch_rules::RuleSet;
use serde::Serialize;

/// Lead-time buckets `(a, b]`, hours, used unless told otherwise.
pub const DEFAULT_BUCKETS_H: [(i64, i64); 5] = [(0, 6), (6, 12), (12, 24), (24, 48), (48, 72)];

/// Reads forecasts from JSON lines (blank lines and lines starting with `#` skipped); each
/// line is checked as on the wire. Returned in issue-time order.
pub fn read_forecasts(text: &str, name: &str, registry: &Registry) -> Result<Vec<Forecast>> {
    let limits = ForecastLimits { max_payload_bytes: usize::MAX, ..ForecastLimits::default() };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{at}: not JSON"))?;
        let (Some(sensor), Some(site)) = (v["sensor"].as_str(), v["site"].as_str()) else {
            bail!("{at}: a forecast line must name its sensor and site");
        };
        let f = decode_forecast(&forecast_topic(site, sensor), line.as_bytes(), registry, &limits)
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        out.push(f);
    }
    out.sort_by_key(|f| f.issued);
    Ok(out)
}

/// Runs `readings` (event-time order) and `forecasts` through one fresh engine, each forecast
/// at its issue time (before readings of the same time); the events.
pub fn hindcast(
    readings: &[Reading],
    forecasts: &[Forecast],
    rules: &RuleSet,
    registry: &Registry,
) -> Result<Vec<AlertEvent>> {
    let opts = crate::hindcast::RunOptions::default();
    Ok(crate::hindcast::run_with(readings, forecasts.to_vec(), rules, registry, &opts)?.events)
}

/// Contingency of one lead-time bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketSkill {
    /// Bucket start, hours after issue (exclusive).
    pub from_h: i64,
    /// Bucket end, hours after issue (inclusive).
    pub to_h: i64,
    /// Forecasts that warned in the bucket and whose observed crossing fell in it.
    pub hits: usize,
    /// Observed crossings in the bucket the forecast did not warn of there.
    pub misses: usize,
    /// Warnings in the bucket with no observed crossing there.
    pub false_alarms: usize,
    /// H / (H + M).
    pub pod: Option<f64>,
    /// F / (H + F).
    pub far: Option<f64>,
    /// H / (H + M + F).
    pub csi: Option<f64>,
}

/// Forecast skill of a run at one level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeadSkill {
    /// The level judged.
    pub level: Level,
    /// Forecasts judged (issued while the sensor was below the level).
    pub forecasts: usize,
    /// Per bucket.
    pub buckets: Vec<BucketSkill>,
    /// Lead time gained by each observed alert linked to a forecast alert, hours.
    pub lead_gained_h: Vec<f64>,
    /// Their mean.
    pub mean_lead_gained_h: Option<f64>,
}

fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Scores `forecasts` against the observed crossings at `level` in `events` (see the module
/// documentation); the threshold of each sensor is that of the first forecast rule giving it
/// `level`. Sensors with no such rule are not judged.
pub fn lead_skill(
    forecasts: &[Forecast],
    events: &[AlertEvent],
    rules: &RuleSet,
    registry: &Registry,
    level: Level,
    buckets_h: &[(i64, i64)],
) -> LeadSkill {
    let h = 3_600_000;
    // Observed: per sensor, (time reached ≥ level, time it went below again or cleared).
    let mut observed: std::collections::BTreeMap<&str, Vec<(Timestamp, Option<Timestamp>)>> = Default::default();
    for e in events.iter().filter(|e| e.category == AlertCategory::Hazard) {
        let spans = observed.entry(e.subject.as_str()).or_default();
        let above = e.change != riskwatch_core::AlertChange::Cleared && e.level >= level;
        match (spans.last_mut(), above) {
            (Some((_, end @ None)), false) => *end = Some(e.ts),
            (Some((_, None)), true) => {}
            (_, true) => spans.push((e.ts, None)),
            _ => {}
        }
    }
    let mut buckets: Vec<BucketSkill> = buckets_h
        .iter()
        .map(|&(a, b)| BucketSkill {
            from_h: a,
            to_h: b,
            hits: 0,
            misses: 0,
            false_alarms: 0,
            pod: None,
            far: None,
            csi: None,
        })
        .collect();
    let mut judged = 0;
    for f in forecasts {
        let Some(sensor) = registry.sensor(f.sensor.as_str()) else { continue };
        let Some((rule, threshold)) = rules.forecasts.iter().find_map(|r| {
            if !r.spec.applies_to.matches(sensor) {
                return None;
            }
            r.thresholds(sensor).ok()?[level.index()].map(|t| (r, t))
        }) else {
            continue;
        };
        let spans = observed.get(f.sensor.as_str()).map(Vec::as_slice).unwrap_or_default();
        if spans.iter().any(|(s, e)| *s <= f.issued && e.is_none_or(|e| e > f.issued)) {
            continue;
        }
        judged += 1;
        let (_, warned) =
            riskwatch_rules::forecast::crossing(f, threshold, i64::MAX / 4, rule.spec.probability, rule.spec.direction);
        let crossed = spans.iter().map(|(s, _)| *s).find(|s| *s > f.issued);
        let lead = |t: Option<Timestamp>| t.map(|t| t.millis() - f.issued.millis());
        let (w, o) = (lead(warned), lead(crossed));
        for b in &mut buckets {
            let inside = |x: Option<i64>| x.is_some_and(|x| x > b.from_h * h && x <= b.to_h * h);
            match (inside(w), inside(o)) {
                (true, true) => b.hits += 1,
                (true, false) => b.false_alarms += 1,
                (false, true) => b.misses += 1,
                (false, false) => {}
            }
        }
    }
    for b in &mut buckets {
        b.pod = ratio(b.hits, b.hits + b.misses);
        b.far = ratio(b.false_alarms, b.hits + b.false_alarms);
        b.csi = ratio(b.hits, b.hits + b.misses + b.false_alarms);
    }
    // Once per observed alert: the event that took it to the level.
    let mut seen = std::collections::BTreeSet::new();
    let lead_gained_h: Vec<f64> = events
        .iter()
        .filter(|e| e.category == AlertCategory::Hazard && e.level >= level)
        .filter_map(|e| {
            let s = e.details.as_ref()?.get("forecast_alert")?.get("lead_time_gained_s")?.as_f64()?;
            seen.insert(e.alert_id.as_str()).then_some(s / 3600.0)
        })
        .collect();
    let mean_lead_gained_h =
        (!lead_gained_h.is_empty()).then(|| lead_gained_h.iter().sum::<f64>() / lead_gained_h.len() as f64);
    LeadSkill { level, forecasts: judged, buckets, lead_gained_h, mean_lead_gained_h }
}

/// A small deterministic normal generator (xorshift + Box–Muller).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn draw(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// Forecasts made from recorded readings, for trying forecast rules and scoring on a past
/// flood when the forecasts of the time are not at hand: every 6 h from each sensor's first
/// reading, `members` members 72 h ahead at the valid times that have a reading, each the
/// recorded value plus `z × error_per_h` per hour of lead (`z ~ N(0, 1)` per member, from
/// `seed`) — a forecaster who knew the truth, blurred the way real forecasts blur with lead.
pub fn blurred_forecasts(readings: &[Reading], members: usize, error_per_h: f64, seed: u64) -> Vec<Forecast> {
    const H: i64 = 3_600_000;
    let mut by_sensor: std::collections::BTreeMap<&str, std::collections::BTreeMap<i64, f64>> = Default::default();
    for r in readings {
        if let Value::Scalar(v) = r.value {
            by_sensor.entry(r.sensor.as_str()).or_default().insert(r.ts.millis(), v);
        }
    }
    let mut rng = Normal(seed | 1);
    let mut out = Vec::new();
    for (sensor, series) in &by_sensor {
        let Some(r) = readings.iter().find(|r| r.sensor.as_str() == *sensor) else { continue };
        let (Some(&first), Some(&last)) = (series.keys().next(), series.keys().next_back()) else { continue };
        let mut issued = first;
        while issued + 72 * H <= last {
            let valid: Vec<i64> = (1..=72).map(|k| issued + k * H).filter(|t| series.contains_key(t)).collect();
            if valid.is_empty() {
                issued += 6 * H;
                continue;
            }
            let series_of = (0..members.max(1))
                .map(|_| {
                    let z = rng.draw();
                    valid.iter().map(|t| series[t] + z * error_per_h * ((t - issued) / H) as f64).collect()
                })
                .collect();
            out.push(Forecast {
                sensor: r.sensor.clone(),
                site: r.site.clone(),
                kind: r.kind.clone(),
                unit: r.unit.clone(),
                issued: Timestamp(issued),
                valid: valid.into_iter().map(Timestamp).collect(),
                members: series_of,
            });
            issued += 6 * H;
        }
    }
    out.sort_by_key(|f| f.issued);
    out
}
