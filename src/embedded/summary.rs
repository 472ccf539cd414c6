//! What a run did, printed at the end of `riskwatch demo` and `riskwatch run`.

use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, DeadLetter, Level, Timestamp};
use riskwatch_rules::EngineStats;
use riskwatch_sinks::sqlite::StoreStats;
use std::collections::BTreeMap;
use std::fmt::Write;

/// An alert still open when the run ended, as the summary lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAlert {
    /// Its level.
    pub level: Level,
    /// Its site's name (Chinese first).
    pub site: String,
    /// Its sensor's name (or, for a composite, the site's).
    pub subject: String,
    /// Hazard, data quality or composite.
    pub category: AlertCategory,
    /// Event time it was raised.
    pub since: Timestamp,
    /// Whether an officer acknowledged it at its level.
    pub acknowledged: bool,
}

/// Counters of one run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// MQTT messages received by ingest.
    pub mqtt_messages: u64,
    /// Valid readings that reached the rule engine.
    pub readings: u64,
    /// Rejected messages or batch items, by reason code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Rejections of messages on gateway topics, by gateway.
    pub rejected_by_gateway: BTreeMap<String, u64>,
    /// Alerts that held each level at some point of their life (an alert that went blue →
    /// yellow → orange counts once under each of the three).
    pub alerts_by_level: BTreeMap<Level, u64>,
    /// Alert events, by change.
    pub events_by_change: BTreeMap<&'static str, u64>,
    /// Alerts still active when the run ended.
    pub active_at_end: Vec<OpenAlert>,
    /// Engine counters.
    pub engine: EngineStats,
    /// Store counters.
    pub store: StoreStats,
    /// Officers' commands refused (unknown alert, wrong state, malformed).
    pub commands_refused: u64,
    /// Successful hot reloads of the rules file.
    pub reloads: u64,
    /// Levels each alert has held so far, by alert id.
    held: BTreeMap<String, [bool; 4]>,
}

impl Summary {
    /// Counts one alert event.
    pub fn record_event(&mut self, e: &AlertEvent) {
        *self.events_by_change.entry(e.change.as_str()).or_default() += 1;
        if !matches!(
            e.change,
            AlertChange::Raised | AlertChange::Escalated | AlertChange::DeEscalated | AlertChange::Cleared
        ) {
            return;
        }
        if e.change == AlertChange::Cleared {
            self.held.remove(&e.alert_id);
            return;
        }
        let held = self.held.entry(e.alert_id.clone()).or_default();
        if !held[e.level.index()] {
            held[e.level.index()] = true;
            *self.alerts_by_level.entry(e.level).or_default() += 1;
        }
    }

    /// Counts one rejection.
    pub fn record_rejection(&mut self, d: &DeadLetter) {
        *self.rejected.entry(d.reason).or_default() += 1;
        if let Ok(t) = riskwatch_core::wire::topic::parse_reading_topic(&d.topic) {
            if let Some(g) = t.gateway {
                *self.rejected_by_gateway.entry(g.to_string()).or_default() += 1;
            }
        }
    }

    /// Total rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Alerts (distinct alert ids) that held level `l`.
    pub fn alerts_at(&self, l: Level) -> u64 {
        self.alerts_by_level.get(&l).copied().unwrap_or(0)
    }

    /// The summary as text, colour-coded when `colour`.
    pub fn render(&self, colour: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "── summary ─────────────────────────────────────────────");
        let _ = writeln!(s, "MQTT messages in      {}", self.mqtt_messages);
        let _ = writeln!(s, "readings processed    {}", self.readings);
        let rej: Vec<String> = self.rejected.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            s,
            "rejected (dead letter) {}{}",
            self.rejected_total(),
            if rej.is_empty() { String::new() } else { format!("  ({})", rej.join(", ")) }
        );
        if !self.rejected_by_gateway.is_empty() {
            let g: Vec<String> = self.rejected_by_gateway.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "  by gateway          {}", g.join(", "));
        }
        let _ = write!(s, "alerts reaching level ");
        for l in Level::ALL.iter().rev() {
            let (on, off) =
                if colour { (riskwatch_sinks::console::ansi(*l), riskwatch_sinks::console::RESET) } else { ("", "") };
            let _ = write!(s, "  {on}{} {}{off}", l.as_str(), self.alerts_at(*l));
        }
        let _ = writeln!(s);
        let ev: Vec<String> = self.events_by_change.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "alert events          {}", ev.join(", "));
        let _ = writeln!(s, "still active at end   {}", self.active_at_end.len());
        let mut open: Vec<&OpenAlert> = self.active_at_end.iter().collect();
        open.sort_by(|a, b| b.level.cmp(&a.level).then(a.since.cmp(&b.since)).then(a.site.cmp(&b.site)));
        for a in open {
            let (on, off) = if colour {
                (riskwatch_sinks::console::ansi(a.level), riskwatch_sinks::console::RESET)
            } else {
                ("", "")
            };
            let what = if a.site == a.subject { a.site.clone() } else { format!("{} {}", a.site, a.subject) };
            let _ = writeln!(
                s,
                "  {on}{}预警 {:<6}{off} {what}{}  since {}{}",
                a.level.zh(),
                a.level.as_str(),
                match a.category {
                    AlertCategory::DataQuality => "（数据质量）",
                    AlertCategory::Composite => "（综合）",
                    AlertCategory::Forecast => "（预报）",
                    AlertCategory::Hazard => "",
                },
                a.since.to_cst_minute(),
                if a.acknowledged { "" } else { "  — not acknowledged" }
            );
        }
        let _ = writeln!(
            s,
            "stored in SQLite      {} readings, {} alert events, {} dead letters, {} commands",
            self.store.readings, self.store.events, self.store.dead_letters, self.store.commands
        );
        if self.commands_refused > 0 || self.reloads > 0 {
            let _ =
                writeln!(s, "commands refused      {}; rules reloaded {} time(s)", self.commands_refused, self.reloads);
        }
        if self.engine.bad_quality + self.engine.out_of_order > 0 {
            let _ = writeln!(
                s,
                "not used by rules     {} bad-quality, {} duplicate/out-of-order",
                self.engine.bad_quality, self.engine.out_of_order
            );
        }
        s
    }
}
