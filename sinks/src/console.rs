//! The live alert feed for terminals: one coloured line per alert event.

use riskwatch_core::{AlertCategory, AlertChange, AlertEvent, Level};

/// ANSI colour escape for a level (orange as 256-colour 208).
pub fn ansi(level: Level) -> &'static str {
    match level {
        Level::Blue => "\x1b[1;34m",
        Level::Yellow => "\x1b[1;33m",
        Level::Orange => "\x1b[1;38;5;208m",
        Level::Red => "\x1b[1;31m",
    }
}

/// ANSI reset.
pub const RESET: &str = "\x1b[0m";

/// One feed line: event time (UTC+8, to the minute), level, change, what it is about (the
/// kind, so a demo's scenarios stay apart), then the Chinese and English messages — which name
/// the site and sensor (the registry's names).
pub fn format_event(e: &AlertEvent, colour: bool) -> String {
    let marker = match e.change {
        AlertChange::Cleared | AlertChange::Resolved => "○",
        AlertChange::Acknowledged | AlertChange::Assigned => "✓",
        AlertChange::Reminder => "↻",
        AlertChange::Called => "☎",
        AlertChange::Shelved | AlertChange::Unshelved => "◌",
        _ => "●",
    };
    let lvl = format!("{:<6}", e.level.as_str().to_uppercase());
    let (on, off) = if colour { (ansi(e.level), RESET) } else { ("", "") };
    let about = match e.category {
        AlertCategory::DataQuality => "数据质量",
        AlertCategory::Composite => "综合研判",
        AlertCategory::Forecast => "预报预警",
        AlertCategory::Hazard => e.kind.zh(),
    };
    format!(
        "{ts}  {on}{marker} {lvl}{off} {change:<12} [{about}] {zh}  |  {en}",
        ts = e.ts.to_cst_minute(),
        change = e.change.as_str(),
        zh = e.message_zh,
        en = e.message_en,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskwatch_core::{AlertCategory, SensorKind, Timestamp};
    use std::sync::Arc;

    #[test]
    fn a_feed_line_reads_without_ids_or_colour_codes_when_plain() {
        let e = AlertEvent {
            event_id: "abc-0".into(),
            alert_id: "abc".into(),
            seq: 0,
            rule_id: Arc::from("lel"),
            subject: "plant-a-lel-01".into(),
            site: "plant-a".into(),
            kind: SensorKind::GasCombustible,
            site_name: "A化工厂罐区".into(),
            sensor_name: "可燃气体探测器 LEL-01".into(),
            change: AlertChange::Raised,
            level: Level::Red,
            previous_level: None,
            highest_level: Level::Red,
            first_ts: Timestamp(1_594_051_200_000),
            ts: Timestamp(1_594_051_200_000),
            value: 100.04,
            threshold: 100.0,
            unit: Arc::from("%LEL"),
            decimals: Some(1),
            message_zh: "【红色预警】A化工厂罐区 可燃气体探测器 LEL-01 …".into(),
            message_en: "Red alert: …".into(),
            exercise: false,
            category: AlertCategory::Hazard,
            by: None,
            note: None,
            assignee: None,
            command_id: None,
            details: None,
            shelved_until: None,
            grouped_under: None,
        };
        let plain = format_event(&e, false);
        assert_eq!(plain, "2020-07-07 00:00  ● RED    raised       [可燃气体浓度] 【红色预警】A化工厂罐区 可燃气体探测器 LEL-01 …  |  Red alert: …");
        assert!(!plain.contains('\x1b'));
        assert!(format_event(&e, true).contains("\x1b[1;31m"));
    }
}
