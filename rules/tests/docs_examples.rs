//! Keeps `docs/rules.md` true: every TOML example in it goes through the same parsing and
//! registry checks as `riskwatch rules check --registry`, so what a hydrologist or a safety
//! engineer copies from the reference is a file riskwatch accepts.
//!
//! How the document's ```` ```toml ```` blocks are read:
//!
//! - A block with `[[sites]]`, `[[sensors]]` or `[kinds.…]` is part of the document's example
//!   registry. All such blocks, joined in order, must form one valid registry.
//! - A block with `[[rules]]`, `[[quality]]`, `[[composites]]`, `[[chains]]` or `[[forecasts]]`
//!   must be accepted by [`RuleSet::from_toml`] on its own and bind to that registry
//!   ([`Engine::new`]), and each of its rules, quality tables and composites must select at
//!   least one registered sensor (a misspelt tag would otherwise select nothing, silently); its
//!   chains must name registered sites and known kinds.
//! - A block right after a `<!-- invalid -->` line must be refused, and every problem line
//!   (`line N: …`) and problem count shown in the ```` ```text ```` block that follows it must
//!   appear in riskwatch's message — so the documented `rules check` output stays exact.
//! - A block right after a `<!-- not-checked -->` line is skipped.

use riskwatch_core::{Registry, Sensor};
use riskwatch_rules::{Engine, RuleError, RuleSet};
use std::path::Path;

/// One fenced code block of the document.
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The info string (`toml`, `text`, …).
    lang: String,
    /// The block's content.
    text: String,
    /// The last non-blank line before the fence, if it is an HTML comment (`<!-- invalid -->`).
    marker: Option<String>,
}

fn read_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut last_text_line: Option<&str> = None;
    for (i, raw) in doc.lines().enumerate() {
        let line = raw.trim_start();
        match open.as_mut() {
            Some(_) if line.starts_with("```") => {
                out.extend(open.take());
                last_text_line = None;
            }
            Some(b) => {
                b.text.push_str(raw);
                b.text.push('\n');
            }
            None if line.starts_with("```") => {
                let marker = last_text_line.filter(|l| l.starts_with("<!--")).map(str::to_string);
                open = Some(Block {
                    line: i + 1,
                    lang: line.trim_start_matches('`').trim().to_string(),
                    text: String::new(),
                    marker,
                });
            }
            None if !line.is_empty() => last_text_line = Some(line.trim()),
            None => {}
        }
    }
    assert!(open.is_none(), "docs/rules.md: a code block is never closed");
    out
}

fn has_header(text: &str, headers: &[&str]) -> bool {
    text.lines().map(str::trim).any(|l| headers.iter().any(|h| l.starts_with(h)))
}

fn is_rules(b: &Block) -> bool {
    has_header(&b.text, &["[[rules]]", "[[quality]]", "[[composites]]", "[[chains]]", "[[forecasts]]"])
}

fn is_registry(b: &Block) -> bool {
    has_header(&b.text, &["[[sites]]", "[[sensors]]", "[kinds."])
}

/// What a valid rules block must select in the registry, as problems.
fn selection_problems(set: &RuleSet, registry: &Registry) -> Vec<String> {
    let sensors: Vec<&Sensor> = registry.sensors();
    let mut problems = Vec::new();
    for r in &set.rules {
        if !sensors.iter().any(|s| r.spec.applies_to.matches(s)) {
            problems.push(format!("rule {:?} selects no sensor of the example registry", r.spec.id));
        }
    }
    for (i, (q, _)) in set.quality.iter().enumerate() {
        if !sensors.iter().any(|s| q.applies_to.matches(s)) {
            problems.push(format!("quality[{i}] selects no sensor of the example registry"));
        }
    }
    for (c, _) in &set.composites {
        let has_member = sensors.iter().any(|s| {
            (c.sites.is_empty() || c.sites.iter().any(|x| x == s.site.as_str()))
                && set.rules.iter().any(|r| r.spec.applies_to.matches(s) && c.members.matches(&r.spec.id, s))
        });
        if !has_member {
            problems.push(format!("composite {:?} has no member at any site of the example registry", c.id));
        }
    }
    problems.extend(
        set.warnings_against(registry).into_iter().filter(|w| w.field.starts_with("chains")).map(|w| w.to_string()),
    );
    problems
}

/// The lines of an expected-output block that riskwatch's message must contain.
fn expected_lines(output: &str) -> Vec<String> {
    let mut want = Vec::new();
    for l in output.lines().map(str::trim) {
        if l.starts_with("rules.toml:") {
            want.push(l.to_string());
        }
    }
    want
}

#[test]
fn every_toml_example_in_rules_md_is_accepted() {
    let doc = read_doc();
    let all = blocks(&doc);
    let toml: Vec<&Block> =
        all.iter().filter(|b| b.lang == "toml" && b.marker.as_deref() != Some("<!-- not-checked -->")).collect();

    let registry_text: String =
        toml.iter().filter(|b| is_registry(b)).map(|b| b.text.as_str()).collect::<Vec<_>>().join("\n");
    let registry = Registry::from_toml(&registry_text)
        .unwrap_or_else(|e| panic!("the example registry of docs/rules.md is not valid: {e}"));

    let mut failures = Vec::new();
    let mut checked = 0;
    for b in &toml {
        if is_rules(b) && is_registry(b) {
            failures.push(format!("line {}: a block is either registry or rules, not both", b.line));
            continue;
        }
        if !is_rules(b) || b.marker.as_deref() == Some("<!-- invalid -->") {
            continue;
        }
        checked += 1;
        let set = match RuleSet::from_toml(&b.text) {
            Ok(set) => set,
            Err(e) => {
                failures.push(format!("line {}: refused by rules check: {e}", b.line));
                continue;
            }
        };
        if let Err(e) = Engine::new(&set, &registry) {
            failures.push(format!("line {}: does not fit the example registry: {e}", b.line));
        }
        failures.extend(selection_problems(&set, &registry).into_iter().map(|p| format!("line {}: {p}", b.line)));
    }
    assert!(failures.is_empty(), "docs/rules.md has examples riskwatch refuses:\n  {}", failures.join("\n  "));
    assert!(checked >= 15, "only {checked} rules examples found in docs/rules.md; is the block extraction broken?");
    assert!(registry.sensors().len() >= 10, "the example registry has only {} sensors", registry.sensors().len());
}

#[test]
fn documented_check_output_matches_what_riskwatch_reports() {
    let doc = read_doc();
    let all = blocks(&doc);
    let registry_text: String = all
        .iter()
        .filter(|b| b.lang == "toml" && is_registry(b))
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let registry = Registry::from_toml(&registry_text).unwrap_or_else(|e| panic!("example registry: {e}"));

    let mut seen = 0;
    for (i, b) in all.iter().enumerate() {
        if b.lang != "toml" || b.marker.as_deref() != Some("<!-- invalid -->") {
            continue;
        }
        seen += 1;
        // What `riskwatch rules check rules.toml --registry registry.toml` prints.
        let render = |problems: Vec<riskwatch_core::Problem>| {
            problems.iter().map(|p| p.render("rules.toml")).collect::<Vec<_>>().join("\n")
        };
        let message = match RuleSet::from_toml_for(&b.text, registry.catalog()) {
            Err(RuleError::File(problems)) => render(problems),
            Err(e) => e.to_string(),
            Ok(set) => match set.problems_against(&registry) {
                problems if !problems.is_empty() => render(problems),
                _ => panic!("line {}: the example marked invalid is accepted", b.line),
            },
        };
        let output = all[i + 1..]
            .iter()
            .find(|o| o.lang == "text")
            .unwrap_or_else(|| panic!("line {}: no ```text output follows", b.line));
        let want = expected_lines(&output.text);
        assert!(!want.is_empty(), "line {}: the output block names no problem", output.line);
        for w in want {
            assert!(
                message.contains(&w),
                "line {}: documented output {w:?} is not what riskwatch says:\n{message}",
                output.line
            );
        }
        let documented = output.text.lines().filter(|l| l.trim().starts_with("rules.toml:")).count();
        let actual = message.lines().filter(|l| l.trim().starts_with("rules.toml:")).count();
        assert_eq!(
            documented, actual,
            "line {}: riskwatch reports {actual} problems, the doc shows {documented}:\n{message}",
            output.line
        );
    }
    assert!(seen >= 2, "expected the two `rules check` error examples, found {seen}");
}
