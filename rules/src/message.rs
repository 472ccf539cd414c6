//! Bilingual alert messages from templates with `{placeholders}`.

use serde::Deserialize;

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "sensor",
    "site",
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
    "rule",
    "condition",
    "forecast",
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
    "{site} {sensor} {kind_zh} {value}{unit}，{level_zh}预警{change_zh}（阈值 {threshold}{unit}）".into()
}

fn default_en() -> String {
    "{level} alert {change}: {kind} at {sensor} ({site}) is {value} {unit} (threshold {threshold} {unit})".into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_flags_unknown_names() {
        let s = MessageTemplate::render("{a} is {b}", |n| (n == "a").then(|| "x".to_string()));
        assert_eq!(s, "x is {b}");
        let t = MessageTemplate { zh: "{value}".into(), en: "{colour}".into() };
        assert_eq!(t.unknown_placeholders(), vec!["colour".to_string()]);
        assert!(MessageTemplate::default().unknown_placeholders().is_empty());
    }
}
