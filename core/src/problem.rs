//! Problems found in a configuration file, each with its field and, where known, its line.
//!
//! Validation builds [`Problem`]s naming a field path as it is written in the file
//! (`sensors[12].id`, `rules[0].levels.red`); [`FieldLines`] then finds each field's line in
//! the TOML text. Library users get the structured problem; a command-line tool renders it
//! with its file name, like a compiler: `registry.toml:57: sensors[12].id: "x" is used twice
//! (first at line 31)`.

use std::collections::HashMap;
use std::fmt;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the field in its file, if known.
    pub line: Option<usize>,
    /// The field as written: `sensors[12].id`, `rules[0].levels.red`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// Where the same thing appeared first (duplicates): its field and line.
    pub first: Option<(String, Option<usize>)>,
}

impl Problem {
    /// A problem with `field`, its line not yet known.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { line: None, field: field.into(), message: message.into(), first: None }
    }

    /// A duplicate: `field` repeats what `first` (another field) already gave.
    pub fn duplicate(field: impl Into<String>, message: impl Into<String>, first: impl Into<String>) -> Self {
        Problem { first: Some((first.into(), None)), ..Problem::new(field, message) }
    }

    /// `FILE:LINE: field: message`, as a compiler writes it (`FILE: field: message` without a line).
    pub fn render(&self, file: &str) -> String {
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.body()),
            None => format!("{file}: {}", self.body()),
        }
    }

    fn body(&self) -> String {
        let mut s = format!("{}: {}", self.field, self.message);
        if let Some((field, line)) = &self.first {
            match line {
                Some(l) => s.push_str(&format!(" (first at line {l}, {field})")),
                None => s.push_str(&format!(" (first at {field})")),
            }
        }
        s
    }
}

impl fmt::Display for Problem {
    /// `line N: field: message`, or `field: message` without a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.body()),
            None => f.write_str(&self.body()),
        }
    }
}

/// The line of every field of a TOML text, by field path (`rules[0].levels.red`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldLines(HashMap<String, usize>);

impl FieldLines {
    /// Indexes `text`; a text that does not parse gives no lines (its parse error has them).
    pub fn new(text: &str) -> Self {
        let mut lines = FieldLines::default();
        if let Ok(root) = DeTable::parse(text) {
            let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
            let line_of = |offset: usize| starts.partition_point(|s| *s <= offset).max(1);
            lines.table(root.get_ref(), "", &line_of);
        }
        lines
    }

    fn table(&mut self, t: &DeTable<'_>, prefix: &str, line_of: &dyn Fn(usize) -> usize) {
        for (k, v) in t.iter() {
            let path = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
            self.0.insert(path.clone(), line_of(k.span().start));
            self.value(v, &path, line_of);
        }
    }

    fn value(&mut self, v: &Spanned<DeValue<'_>>, path: &str, line_of: &dyn Fn(usize) -> usize) {
        match v.get_ref() {
            DeValue::Table(t) => self.table(t, path, line_of),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.0.insert(p.clone(), line_of(e.span().start));
                    self.value(e, &p, line_of);
                }
            }
            _ => {}
        }
    }

    /// The line of `field`, or of the nearest enclosing field that is written in the file
    /// (a defaulted field has no line of its own: its table's line is given).
    pub fn line(&self, field: &str) -> Option<usize> {
        let mut f = field;
        loop {
            if let Some(l) = self.0.get(f) {
                return Some(*l);
            }
            let cut = f.rfind(['.', '['])?;
            f = &f[..cut];
        }
    }

    /// Fills in the lines of `problems` (and of the first occurrences they refer to), and puts
    /// them in line order (those without a line last).
    pub fn locate(&self, problems: &mut [Problem]) {
        for p in problems.iter_mut() {
            if p.line.is_none() {
                p.line = self.line(&p.field);
            }
            if let Some((field, line @ None)) = &mut p.first {
                *line = self.line(field);
            }
        }
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "top = 1\n\n[[rules]]\nid = \"a\"\nlevels = { red = 3 }\n\n[[rules]]\nid = \"b\"\n[rules.levels]\nred = \"x\"\nyellow = [\n  1,\n  2,\n]\n";

    #[test]
    fn finds_the_line_of_each_field_or_of_its_nearest_written_parent() {
        let l = FieldLines::new(TEXT);
        assert_eq!(l.line("top"), Some(1));
        assert_eq!(l.line("rules[0]"), Some(3));
        assert_eq!(l.line("rules[0].id"), Some(4));
        assert_eq!(l.line("rules[0].levels.red"), Some(5));
        assert_eq!(l.line("rules[1]"), Some(7));
        assert_eq!(l.line("rules[1].levels.red"), Some(10));
        assert_eq!(l.line("rules[1].levels.yellow[1]"), Some(13));
        assert_eq!(l.line("rules[1].deadband"), Some(7), "defaulted: its table's line");
        assert_eq!(l.line("nothing.here"), None);
        assert_eq!(FieldLines::new("not toml [").line("x"), None);
    }

    #[test]
    fn renders_like_a_compiler_with_the_first_occurrence_of_a_duplicate() {
        let l = FieldLines::new(TEXT);
        let mut p = [
            Problem::duplicate("rules[1].id", "\"b\" is used twice", "rules[0].id"),
            Problem::new("elsewhere", "no line"),
        ];
        l.locate(&mut p);
        assert_eq!(p[0].render("r.toml"), "r.toml:8: rules[1].id: \"b\" is used twice (first at line 4, rules[0].id)");
        assert_eq!(p[0].to_string(), "line 8: rules[1].id: \"b\" is used twice (first at line 4, rules[0].id)");
        assert_eq!(p[1].render("r.toml"), "r.toml: elsewhere: no line");
    }
}
