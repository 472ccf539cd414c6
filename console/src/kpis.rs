//! The alarm KPIs (`riskwatch-kpi`, docs/alarm-kpis.md) of the console's event history: the
//! KPI page's JSON (`/api/kpi`, any period) and the `riskwatch_console_alarm*` series on
//! `/metrics`, over the last 24 hours (a sliding window, recomputed at most every 10 s).

use crate::App;
use riskwatch_core::Timestamp;
use riskwatch_kpi::{compute, Kpis, Settings};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The period of the metrics, and the KPI page's default: the last 24 hours.
pub const RECENT_MS: i64 = 24 * 3_600_000;
/// The longest period the page may ask for.
pub const LONGEST_MS: i64 = 366 * 24 * 3_600_000;
/// How long the metrics' figures are reused.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// The figures of the last 24 h, and when they were computed.
#[derive(Default)]
pub struct Recent(Mutex<Option<(Instant, Arc<Kpis>)>>);

impl App {
    /// The KPIs of `[from, to)` from the console's history.
    pub(crate) fn kpis(&self, from: Timestamp, to: Timestamp) -> anyhow::Result<Kpis> {
        let events = Self::lock(&self.store).kpi_events(from.millis(), to.millis())?;
        Ok(compute(&events, from, to, &Settings { officers: self.officers, ..Settings::default() }))
    }

    /// The last 24 h's KPIs, at most [`FRESH_FOR`] old (`None` if the store cannot be read).
    fn recent_kpis(&self) -> Option<Arc<Kpis>> {
        let mut cached = Self::lock(&self.recent_kpis.0);
        if let Some((at, k)) = cached.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return Some(Arc::clone(k));
            }
        }
        let now = Timestamp::now();
        match self.kpis(now.plus_millis(-RECENT_MS), now) {
            Ok(k) => {
                let k = Arc::new(k);
                *cached = Some((Instant::now(), Arc::clone(&k)));
                Some(k)
            }
            Err(e) => {
                tracing::warn!(error = %e, "console: cannot compute the alarm KPIs");
                None
            }
        }
    }

    /// The KPI series (gauges over the last 24 h).
    pub(crate) fn register_kpi_metrics(self: &Arc<Self>) {
        type Read = fn(&Kpis) -> f64;
        let series: [(&'static str, &'static str, Read); 8] = [
            (
                "riskwatch_console_alarms_per_officer_10m",
                "Mean alerts (raised + escalated) per officer per 10 minutes over the last 24 h (EEMUA 191: <= 1 manageable).",
                |k| k.per_officer_per_10min,
            ),
            (
                "riskwatch_console_alarms_per_officer_day",
                "Alerts (raised + escalated) per officer over the last 24 h (ISA-18.2: ~150 acceptable, ~300 at most).",
                |k| k.per_officer_per_day,
            ),
            (
                "riskwatch_console_alarm_peak_10m",
                "Most alerts in one 10-minute window of the last 24 h, all officers (ISA-18.2: <= 10 per officer).",
                |k| k.peak_10min as f64,
            ),
            (
                "riskwatch_console_alarm_flood_ratio",
                "Share (0-1) of the last 24 h's 10-minute windows in flood, >= 10 alerts per officer (ISA-18.2: < 0.01).",
                |k| k.flood_percent / 100.0,
            ),
            (
                "riskwatch_console_alarm_chattering_sources",
                "Sources (rule and subject) raised 3 or more times within a minute in the last 24 h (target 0).",
                |k| k.chattering.len() as f64,
            ),
            (
                "riskwatch_console_alarm_standing",
                "Alerts open (not resolved) for more than 24 h now (target 0).",
                |k| k.standing.len() as f64,
            ),
            (
                "riskwatch_console_alarm_top10_ratio",
                "Share (0-1) of the last 24 h's alerts made by the 10 most frequent sources (ISA-18.2: < 0.01-0.05).",
                |k| k.top_share_percent / 100.0,
            ),
            (
                "riskwatch_console_alarm_ack_median_seconds",
                "Median time to acknowledge the alerts raised in the last 24 h (NaN until one is acknowledged).",
                |k| k.ack.median_s.unwrap_or(f64::NAN),
            ),
        ];
        for (name, help, read) in series {
            let app = Arc::downgrade(self);
            self.metrics.read(name, help, "gauge", &[], move || {
                app.upgrade().and_then(|a| a.recent_kpis()).map_or(f64::NAN, |k| read(&k))
            });
        }
    }
}
