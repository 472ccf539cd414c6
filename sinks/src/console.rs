//! The live alert feed for terminals: one coloured line per alert event.

use riskwatch_core::{AlertChange, AlertEvent, Level};

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

/// One feed line: event time (UTC+8), level, change, site/subject, English and Chinese message.
pub fn format_event(e: &AlertEvent, colour: bool) -> String {
    let marker = match e.change {
        AlertChange::Cleared | AlertChange::Resolved => "○",
        AlertChange::Acknowledged | AlertChange::Assigned => "✓",
        AlertChange::Reminder => "↻",
        _ => "●",
    };
    let lvl = format!("{:<6}", e.level.as_str().to_uppercase());
    let (on, off) = if colour { (ansi(e.level), RESET) } else { ("", "") };
    format!(
        "{ts}  {on}{marker} {lvl}{off} {change:<12} {site}/{subject}  {en}  |  {zh}",
        ts = e.ts.to_rfc3339_cst(),
        change = e.change.as_str(),
        site = e.site,
        subject = e.subject,
        en = e.message_en,
        zh = e.message_zh,
    )
}
