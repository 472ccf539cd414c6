//! Bilingual alert messages from templates with `{placeholders}`.

use riskwatch_core::{AlertChange, Level};
use serde::Deserialize;

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "sensor",
    "site",
    "sensor_name",
    "site_name",
    "kind",
    "kind_zh",
    "value",
    "threshold",
    "unit",
    "level",
    "level_zh",
    "grade",
    "change",
    "change_zh",
    "title",
    "title_zh",
    "status",
    "status_zh",
    "rule",
    "condition",
    "forecast",
    "forecast_zh",
    "forecast_en",
];

/// Chinese and English message templates of a rule.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// Chinese template.
    #[serde(default = "default_zh")]
    pub zh: String,
    /// English template.
    #[serde(default = "default_en")]
    pub en: String,
}

fn default_zh() -> String {
    "【{title_zh}】{site_name} {sensor_name} {kind_zh} {value} {unit}，{status_zh}".into()
}

fn default_en() -> String {
    "{title}: {kind} at {sensor_name} ({site_name}) is {value} {unit}, {status}".into()
}

impl Default for MessageTemplate {
    fn default() -> Self {
        MessageTemplate { zh: default_zh(), en: default_en() }
    }
}

impl MessageTemplate {
    /// Placeholders used in the templates that are not in [`PLACEHOLDERS`].
    pub fn unknown_placeholders(&self) -> Vec<String> {
        [&self.zh, &self.en]
            .iter()
            .flat_map(|t| placeholders(t))
            .filter(|p| !PLACEHOLDERS.contains(&p.as_str()))
            .collect()
    }

    /// Renders a template, replacing each `{name}` with `lookup(name)`.
    pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(template.len() + 32);
        Self::render_into(template, &mut out, |name, out| match lookup(name) {
            Some(v) => {
                out.push_str(&v);
                true
            }
            None => false,
        });
        out
    }

    /// Renders a template into `out`: `write(name, out)` appends the value of `{name}` and
    /// returns true, or returns false (having appended nothing) for an unknown name, which is
    /// then kept as written. Same output as [`MessageTemplate::render`], without a `String`
    /// per placeholder.
    pub(crate) fn render_into(template: &str, out: &mut String, mut write: impl FnMut(&str, &mut String) -> bool) {
        // Braces are ASCII, so a byte search finds them at character boundaries; it is much
        // cheaper than `str::find` on these short strings.
        let find = |s: &str, b: u8| s.as_bytes().iter().position(|x| *x == b);
        let mut rest = template;
        while let Some(open) = find(rest, b'{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match find(after, b'}') {
                Some(close) => {
                    let name = &after[..close];
                    if !write(name, out) {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
    }
}

fn placeholders(t: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        v.push(after[..close].to_string());
        rest = &after[close + 1..];
    }
    v
}

/// A span of milliseconds as a message says it: `45 秒`, `12 分钟`, `3.5 小时`, `2 天 4 小时`.
pub(crate) fn duration_zh(ms: i64) -> String {
    let (n, unit) = duration_parts(ms);
    match unit {
        Span::Seconds => format!("{n} 秒"),
        Span::Minutes => format!("{n} 分钟"),
        Span::Hours => format!("{n} 小时"),
        Span::Days(h) => format!("{n} 天 {h} 小时"),
    }
}

/// [`duration_zh`] in English: `45 s`, `12 min`, `3.5 h`, `2 d 4 h`.
pub(crate) fn duration_en(ms: i64) -> String {
    let (n, unit) = duration_parts(ms);
    match unit {
        Span::Seconds => format!("{n} s"),
        Span::Minutes => format!("{n} min"),
        Span::Hours => format!("{n} h"),
        Span::Days(h) => format!("{n} d {h} h"),
    }
}

enum Span {
    Seconds,
    Minutes,
    Hours,
    Days(i64),
}

fn duration_parts(ms: i64) -> (String, Span) {
    let s = ms.max(0) / 1000;
    if s < 120 {
        (s.to_string(), Span::Seconds)
    } else if s < 2 * 3600 {
        ((s / 60).to_string(), Span::Minutes)
    } else if s < 48 * 3600 {
        let h = format!("{:.1}", s as f64 / 3600.0);
        (h.trim_end_matches(".0").to_string(), Span::Hours)
    } else {
        ((s / 86_400).to_string(), Span::Days((s % 86_400) / 3600))
    }
}

/// `{title}` / `{title_zh}`: what a message is, for its bracketed lead — `红色预警` while the
/// alert holds, `红色预警解除` when it clears (English: `Red alert`, `Red alert cleared`).
pub(crate) fn title(out: &mut String, level: Level, change: AlertChange, zh: bool) {
    let cleared = change == AlertChange::Cleared;
    if zh {
        out.push_str(level.zh());
        out.push_str(if cleared { "预警解除" } else { "预警" });
    } else {
        let name = level.as_str();
        out.extend(name[..1].chars().map(|c| c.to_ascii_uppercase()));
        out.push_str(&name[1..]);
        out.push_str(if cleared { " alert cleared" } else { " alert" });
    }
}

/// `{status}` / `{status_zh}`: the change in words with the threshold it concerns —
/// `达到红色预警（阈值 7.00 m）`, `升级为橙色预警（阈值 …）`, `降为黄色预警（红色解除阈值 …）`,
/// `红色预警解除（解除阈值 6.80 m）`. `previous` is the level before a de-escalation (whose
/// threshold is the one left behind); `threshold` is (the rounded number, the unit).
pub(crate) fn status(
    out: &mut String,
    (level, previous, change): (Level, Option<Level>, AlertChange),
    threshold: &(&str, &str),
    zh: bool,
) {
    use std::fmt::Write as _;
    let (t, unit) = *threshold;
    // Degrees are written as the sign, against the number (`55.0°`).
    let (sep, unit) = match unit {
        "" => ("", ""),
        "deg" | "°" => ("", "°"),
        u => (" ", u),
    };
    let l = if zh { level.zh() } else { level.as_str() };
    let from = previous.unwrap_or(level);
    let _ = match (change, zh) {
        (AlertChange::Raised, true) => write!(out, "达到{l}预警（阈值 {t}{sep}{unit}）"),
        (AlertChange::Escalated, true) => write!(out, "升级为{l}预警（阈值 {t}{sep}{unit}）"),
        (AlertChange::DeEscalated, true) => write!(out, "降为{l}预警（{}解除阈值 {t}{sep}{unit}）", from.zh()),
        (AlertChange::Cleared, true) => write!(out, "{l}预警解除（解除阈值 {t}{sep}{unit}）"),
        (_, true) => write!(out, "{l}预警{}", change.zh()),
        (AlertChange::Raised, false) => write!(out, "reached {l} (threshold {t}{sep}{unit})"),
        (AlertChange::Escalated, false) => write!(out, "escalated to {l} (threshold {t}{sep}{unit})"),
        (AlertChange::DeEscalated, false) => {
            write!(out, "lowered to {l} ({} clear threshold {t}{sep}{unit})", from.as_str())
        }
        (AlertChange::Cleared, false) => write!(out, "{l} alert cleared (clear threshold {t}{sep}{unit})"),
        (_, false) => write!(out, "{l} alert {}", change.as_str().replace('_', "-")),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration_zh(45_000), "45 秒");
        assert_eq!(duration_zh(12 * 60_000 + 59_000), "12 分钟");
        assert_eq!(duration_zh(3 * 3_600_000 + 1_800_000), "3.5 小时");
        assert_eq!(duration_zh(3 * 3_600_000), "3 小时");
        assert_eq!(duration_en(2 * 86_400_000 + 4 * 3_600_000 + 5), "2 d 4 h");
        assert_eq!(duration_en(-5), "0 s", "a clock step back is not a negative duration");
    }

    #[test]
    fn status_says_the_change_with_its_threshold() {
        let said = |l, prev, change, t: (&str, &str), zh| {
            let mut s = String::new();
            status(&mut s, (l, prev, change), &t, zh);
            s
        };
        assert_eq!(said(Level::Yellow, None, AlertChange::Raised, ("55.0", "deg"), true), "达到黄色预警（阈值 55.0°）");
        assert_eq!(
            said(Level::Yellow, Some(Level::Red), AlertChange::DeEscalated, ("95.0", "%LEL"), true),
            "降为黄色预警（红色解除阈值 95.0 %LEL）"
        );
        assert_eq!(
            said(Level::Blue, None, AlertChange::Cleared, ("2.7", ""), false),
            "blue alert cleared (clear threshold 2.7)"
        );
    }

    #[test]
    fn renders_and_flags_unknown_names() {
        let s = MessageTemplate::render("{a} is {b}", |n| (n == "a").then(|| "x".to_string()));
        assert_eq!(s, "x is {b}");
        let t = MessageTemplate { zh: "{value}".into(), en: "{colour}".into() };
        assert_eq!(t.unknown_placeholders(), vec!["colour".to_string()]);
        assert!(MessageTemplate::default().unknown_placeholders().is_empty());
    }
}
