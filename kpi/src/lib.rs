//! Alarm KPIs as control rooms measure them (EEMUA 191, ISA-18.2 / IEC 62682), computed from
//! the alert event history alone: alerts per officer per 10 minutes, peak rate, time in flood,
//! chattering sources, standing (stale) alerts, the top-10 bad actors and time to acknowledge.
//!
//! Pure: events in, figures out. The console's page and `/metrics`, and `riskwatch report`, all
//! call [`compute`]; each definition, and the benchmark beside it, is in docs/alarm-kpis.md.

use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The knobs of the KPIs; the defaults are the EEMUA 191 / ISA-18.2 ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Duty officers on watch at once (rates are per officer). Default 1.
    pub officers: u32,
    /// Length of a rate window, ms. Default 10 minutes.
    pub window_ms: i64,
    /// Alerts per officer in one window that make it a flood. Default 10.
    pub flood_per_officer: u32,
    /// Raises of one source within `chatter_within_ms` that make it chattering. Default 3.
    pub chatter_raises: usize,
    /// See `chatter_raises`. Default 1 minute.
    pub chatter_within_ms: i64,
    /// An alert open (not finished) longer than this at the end of the period is standing.
    /// Default 24 hours.
    pub standing_after_ms: i64,
    /// Bad actors listed. Default 10.
    pub top: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            officers: 1,
            window_ms: 10 * MINUTE,
            flood_per_officer: 10,
            chatter_raises: 3,
            chatter_within_ms: MINUTE,
            standing_after_ms: DAY,
            top: 10,
        }
    }
}

/// Alerts in one rate window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Start of the window (epoch ms).
    pub start_ms: i64,
    /// Alerts in it (all officers together).
    pub alerts: u64,
}

/// One alert source: a rule on a subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Source {
    /// Rule id.
    pub rule_id: String,
    /// Subject (sensor id, or site id for composites).
    pub subject: String,
    /// The subject's name as the events give it (else its id).
    pub name: String,
    /// Its site.
    pub site: String,
}

/// A bad actor: a source and how many of the period's alerts it made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadActor {
    /// The source.
    #[serde(flatten)]
    pub source: Source,
    /// Its alerts in the period.
    pub alerts: u64,
    /// Their share of all the period's alerts, %.
    pub share_percent: f64,
}

/// A chattering source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chattering {
    /// The source.
    #[serde(flatten)]
    pub source: Source,
    /// Times it was raised in the period.
    pub raises: u64,
    /// Most raises within one `chatter_within_ms` span.
    pub most_within: u64,
}

/// A standing (stale) alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Standing {
    /// Alert id.
    pub alert_id: String,
    /// The source.
    #[serde(flatten)]
    pub source: Source,
    /// Its latest level.
    pub level: String,
    /// When it was raised (epoch ms).
    pub raised_ms: i64,
    /// Open for this long at the end of the period, hours.
    pub open_hours: f64,
}

/// Time to acknowledge the alerts raised in the period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AckTimes {
    /// Raised in the period and acknowledged (by the end of it).
    pub acknowledged: u64,
    /// Raised in the period and not acknowledged by its end.
    pub unacknowledged: u64,
    /// Median, seconds (nearest rank); `None` without acknowledgements.
    pub median_s: Option<f64>,
    /// 90th percentile, seconds (nearest rank).
    pub p90_s: Option<f64>,
    /// Mean, seconds.
    pub mean_s: Option<f64>,
    /// Longest, seconds.
    pub max_s: Option<f64>,
    /// Acknowledgements per band: `< 1 min`, `1–5 min`, `5–10 min`, `10–30 min`, `30–60 min`,
    /// `≥ 60 min`.
    pub histogram: Vec<(String, u64)>,
}

/// Upper bounds (exclusive, seconds) and labels of the time-to-acknowledge bands.
const ACK_BANDS: [(f64, &str); 6] = [
    (60.0, "< 1 min"),
    (300.0, "1–5 min"),
    (600.0, "5–10 min"),
    (1800.0, "10–30 min"),
    (3600.0, "30–60 min"),
    (f64::INFINITY, "≥ 60 min"),
];

/// One KPI beside its benchmark.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// Stable key (`rate_10min`, `per_day`, `peak_10min`, `flood_percent`, `chattering`,
    /// `standing`, `top10_percent`, `ack_median_s`).
    pub key: &'static str,
    /// What it is, English.
    pub name_en: &'static str,
    /// What it is, Chinese.
    pub name_zh: &'static str,
    /// The figure (`None`: nothing to measure, e.g. no acknowledgement yet).
    pub value: Option<f64>,
    /// The benchmark, as the standards put it.
    pub benchmark: &'static str,
    /// Whether the figure meets it (`None`: no benchmark, or no figure).
    pub meets: Option<bool>,
}

/// Every KPI of one period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kpis {
    /// Period start (epoch ms, inclusive).
    pub from_ms: i64,
    /// Period end (epoch ms, exclusive).
    pub to_ms: i64,
    /// Officers on watch the rates are divided by.
    pub officers: u32,
    /// Window length, minutes.
    pub window_minutes: f64,
    /// Alerts (raised + escalated, exercises left out) in the period.
    pub alerts: u64,
    /// Of which raised.
    pub raised: u64,
    /// Of which escalated.
    pub escalated: u64,
    /// Exercise (drill) events in the period, left out of every figure.
    pub exercise_events: u64,
    /// Mean alerts per officer per window.
    pub per_officer_per_10min: f64,
    /// Mean alerts per officer per day.
    pub per_officer_per_day: f64,
    /// Most alerts in one window (all officers).
    pub peak_10min: u64,
    /// Start of the first window with that many (epoch ms).
    pub peak_at_ms: Option<i64>,
    /// Windows in the period (the last may be shorter).
    pub windows: u64,
    /// Windows with at least `flood_threshold` alerts.
    pub flood_windows: u64,
    /// Alerts in one window that make a flood (`flood_per_officer` × officers).
    pub flood_threshold: u64,
    /// Share of the period's windows in flood, %.
    pub flood_percent: f64,
    /// Alerts per window, every window of the period in order.
    pub series: Vec<Window>,
    /// Chattering sources, most raises first.
    pub chattering: Vec<Chattering>,
    /// Standing alerts at the end of the period, oldest first.
    pub standing: Vec<Standing>,
    /// The most frequent sources, most alerts first.
    pub bad_actors: Vec<BadActor>,
    /// Share of all alerts made by the listed bad actors, %.
    pub top_share_percent: f64,
    /// Time to acknowledge.
    pub ack: AckTimes,
    /// Each KPI beside its benchmark.
    pub verdicts: Vec<Verdict>,
}

fn source(e: &AlertEvent) -> Source {
    Source {
        rule_id: e.rule_id.to_string(),
        subject: e.subject.as_str().to_string(),
        name: e.subject_label().to_string(),
        site: e.site.as_str().to_string(),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Which events [`compute`] needs for a period, as an SQL condition on `table`, a table of
/// alert events with the columns `ts` (epoch ms), `alert_id`, `change` and `category` (the
/// pipeline store's `alert_events`, the console's `events`); `?1` is `from`, `?2` is `to`.
/// Every event of the period, and the earlier events of the alerts raised before it that had
/// not finished (resolved, or a data-quality alert cleared) by its start: a reader need not
/// load the whole history.
pub fn events_needed_sql(table: &str) -> String {
    format!(
        "ts < ?2 AND (ts >= ?1 OR alert_id IN (SELECT alert_id FROM {table} WHERE ts < ?1 GROUP BY alert_id \
         HAVING sum(change = 'raised') > 0 \
         AND sum(change = 'resolved' OR (change = 'cleared' AND category = 'data_quality')) = 0))"
    )
}

/// The KPIs of `[from, to)` from `events`: every event of the period, and for standing alerts
/// and acknowledgements also the events before it (an alert raised earlier and still open, an
/// acknowledgement later in the period). Events may come in any order; events after `to` are
/// ignored, as are exercise events.
pub fn compute(events: &[AlertEvent], from: Timestamp, to: Timestamp, s: &Settings) -> Kpis {
    let (from, to) = (from.millis(), to.millis().max(from.millis()));
    let officers = s.officers.max(1);
    let window = s.window_ms.max(1);
    let mut live: Vec<&AlertEvent> = events.iter().filter(|e| !e.exercise && e.ts.millis() < to).collect();
    live.sort_by(|a, b| (a.ts, &a.alert_id, a.seq).cmp(&(b.ts, &b.alert_id, b.seq)));
    let exercise_events = events.iter().filter(|e| e.exercise && (from..to).contains(&e.ts.millis())).count() as u64;
    let in_period = |e: &&&AlertEvent| (from..to).contains(&e.ts.millis());
    let is_alert = |e: &&&AlertEvent| matches!(e.change, AlertChange::Raised | AlertChange::Escalated);

    // Rates and floods.
    let windows = u64::try_from((to - from + window - 1) / window).unwrap_or(0);
    let mut counts = vec![0u64; windows as usize];
    let (mut raised, mut escalated) = (0u64, 0u64);
    let mut by_source: HashMap<Source, u64> = HashMap::new();
    for e in live.iter().filter(in_period).filter(is_alert) {
        counts[((e.ts.millis() - from) / window) as usize] += 1;
        if e.change == AlertChange::Raised {
            raised += 1;
        } else {
            escalated += 1;
        }
        *by_source.entry(source(e)).or_default() += 1;
    }
    let alerts = raised + escalated;
    let flood_threshold = u64::from(s.flood_per_officer) * u64::from(officers);
    let flood_windows = counts.iter().filter(|c| **c >= flood_threshold).count() as u64;
    let peak_10min = counts.iter().copied().max().unwrap_or(0);
    let peak_at_ms = (peak_10min > 0)
        .then(|| counts.iter().position(|c| *c == peak_10min).map(|i| from + i as i64 * window))
        .flatten();
    let span_ms = (to - from).max(1) as f64;
    let per_officer = alerts as f64 / f64::from(officers);
    let per_officer_per_10min = per_officer / (span_ms / (10 * MINUTE) as f64);
    let per_officer_per_day = per_officer / (span_ms / DAY as f64);
    let flood_percent = if windows == 0 { 0.0 } else { flood_windows as f64 * 100.0 / windows as f64 };
    let series =
        counts.iter().enumerate().map(|(i, c)| Window { start_ms: from + i as i64 * window, alerts: *c }).collect();

    // Bad actors.
    let mut ranked: Vec<(Source, u64)> = by_source.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let share = |n: u64| if alerts == 0 { 0.0 } else { n as f64 * 100.0 / alerts as f64 };
    let bad_actors: Vec<BadActor> = ranked
        .into_iter()
        .take(s.top)
        .map(|(source, n)| BadActor { source, alerts: n, share_percent: share(n) })
        .collect();
    let top_share_percent = share(bad_actors.iter().map(|b| b.alerts).sum());

    // Chattering: raises of one source, `chatter_raises` of them within `chatter_within_ms`.
    let mut raises: BTreeMap<Source, Vec<i64>> = BTreeMap::new();
    for e in live.iter().filter(in_period).filter(|e| e.change == AlertChange::Raised) {
        raises.entry(source(e)).or_default().push(e.ts.millis());
    }
    let mut chattering: Vec<Chattering> = raises
        .into_iter()
        .filter_map(|(source, times)| {
            let mut most = 0usize;
            let mut start = 0usize;
            for (end, t) in times.iter().enumerate() {
                while *t - times[start] >= s.chatter_within_ms {
                    start += 1;
                }
                most = most.max(end - start + 1);
            }
            (most >= s.chatter_raises.max(1)).then_some(Chattering {
                source,
                raises: times.len() as u64,
                most_within: most as u64,
            })
        })
        .collect();
    chattering.sort_by(|a, b| b.raises.cmp(&a.raises).then_with(|| a.source.cmp(&b.source)));

    // Each alert's life up to the end of the period.
    struct Life<'a> {
        raised: &'a AlertEvent,
        latest: &'a AlertEvent,
        acked_ms: Option<i64>,
        finished: bool,
    }
    // In each alert's own order (`seq`): an acknowledgement carries the command's wall-clock
    // time, which on time-compressed or replayed data can be earlier than the raise's event time.
    let mut by_alert = live.clone();
    by_alert.sort_by(|a, b| (&a.alert_id, a.seq).cmp(&(&b.alert_id, b.seq)));
    let mut lives: HashMap<&str, Life<'_>> = HashMap::new();
    for &e in &by_alert {
        if e.change == AlertChange::Raised {
            lives.insert(&e.alert_id, Life { raised: e, latest: e, acked_ms: None, finished: false });
            continue;
        }
        let Some(life) = lives.get_mut(e.alert_id.as_str()) else { continue };
        life.latest = e;
        match e.change {
            AlertChange::Acknowledged if life.acked_ms.is_none() => life.acked_ms = Some(e.ts.millis()),
            AlertChange::Resolved => life.finished = true,
            // A data-quality alert closes itself when it clears (docs/rules.md).
            AlertChange::Cleared if e.category == AlertCategory::DataQuality => life.finished = true,
            _ => {}
        }
    }
    let mut standing: Vec<Standing> = lives
        .iter()
        .filter(|(_, l)| !l.finished && to - l.raised.ts.millis() > s.standing_after_ms)
        .map(|(id, l)| Standing {
            alert_id: id.to_string(),
            source: source(l.raised),
            level: l.latest.level.as_str().to_string(),
            raised_ms: l.raised.ts.millis(),
            open_hours: (to - l.raised.ts.millis()) as f64 / HOUR as f64,
        })
        .collect();
    standing.sort_by(|a, b| a.raised_ms.cmp(&b.raised_ms).then_with(|| a.alert_id.cmp(&b.alert_id)));

    // Time to acknowledge the alerts raised in the period.
    let mut ack = AckTimes::default();
    let mut secs: Vec<f64> = Vec::new();
    for l in lives.values().filter(|l| (from..to).contains(&l.raised.ts.millis())) {
        match l.acked_ms {
            Some(at) => secs.push((at - l.raised.ts.millis()).max(0) as f64 / 1000.0),
            None => ack.unacknowledged += 1,
        }
    }
    secs.sort_by(f64::total_cmp);
    ack.acknowledged = secs.len() as u64;
    ack.median_s = percentile(&secs, 50.0);
    ack.p90_s = percentile(&secs, 90.0);
    ack.max_s = secs.last().copied();
    ack.mean_s = (!secs.is_empty()).then(|| secs.iter().sum::<f64>() / secs.len() as f64);
    let mut lower = 0.0;
    for (upper, label) in ACK_BANDS {
        let n = secs.iter().filter(|s| **s >= lower && **s < upper).count() as u64;
        ack.histogram.push((label.to_string(), n));
        lower = upper;
    }

    let mut k = Kpis {
        from_ms: from,
        to_ms: to,
        officers,
        window_minutes: window as f64 / MINUTE as f64,
        alerts,
        raised,
        escalated,
        exercise_events,
        per_officer_per_10min,
        per_officer_per_day,
        peak_10min,
        peak_at_ms,
        windows,
        flood_windows,
        flood_threshold,
        flood_percent,
        series,
        chattering,
        standing,
        bad_actors,
        top_share_percent,
        ack,
        verdicts: Vec::new(),
    };
    k.verdicts = verdicts(&k);
    k
}

/// Each KPI of `k` beside its EEMUA 191 / ISA-18.2 benchmark.
pub fn verdicts(k: &Kpis) -> Vec<Verdict> {
    let v = |key, name_en, name_zh, value: Option<f64>, benchmark, meets: Option<fn(f64) -> bool>| Verdict {
        key,
        name_en,
        name_zh,
        value,
        benchmark,
        meets: value.and_then(|x| meets.map(|f| f(x))),
    };
    let peak_per_officer = k.peak_10min as f64 / f64::from(k.officers.max(1));
    vec![
        v(
            "rate_10min",
            "Alerts per officer per 10 min (mean)",
            "每名值班员每 10 分钟预警数（平均）",
            Some(k.per_officer_per_10min),
            "≤ 1 manageable (EEMUA 191)",
            Some(|x| x <= 1.0),
        ),
        v(
            "per_day",
            "Alerts per officer per day (mean)",
            "每名值班员每天预警数（平均）",
            Some(k.per_officer_per_day),
            "~150 acceptable, ~300 at most (ISA-18.2)",
            Some(|x| x <= 150.0),
        ),
        v(
            "peak_10min",
            "Peak alerts per officer in 10 min",
            "10 分钟内预警数峰值（每名值班员）",
            Some(peak_per_officer),
            "≤ 10 (ISA-18.2)",
            Some(|x| x <= 10.0),
        ),
        v(
            "flood_percent",
            "Time in flood (%)",
            "预警泛滥时间占比（%）",
            Some(k.flood_percent),
            "< 1 % (ISA-18.2)",
            Some(|x| x < 1.0),
        ),
        v(
            "chattering",
            "Chattering sources",
            "抖动预警源",
            Some(k.chattering.len() as f64),
            "0 (ISA-18.2)",
            Some(|x| x == 0.0),
        ),
        v(
            "standing",
            "Standing alerts (open > 24 h)",
            "长期未闭环预警（超过 24 小时）",
            Some(k.standing.len() as f64),
            "0 (ISA-18.2: stale alarms fixed)",
            Some(|x| x == 0.0),
        ),
        v(
            "top10_percent",
            "Share of the top-10 bad actors (%)",
            "前 10 个频发预警源占比（%）",
            Some(k.top_share_percent),
            "< 1–5 % (ISA-18.2)",
            Some(|x| x < 5.0),
        ),
        v(
            "ack_median_s",
            "Median time to acknowledge (s)",
            "确认用时中位数（秒）",
            k.ack.median_s,
            "site target (no standard figure)",
            None,
        ),
    ]
}

#[cfg(test)]
mod tests;
