//! `riskwatch rules check` as an operator runs it: without a registry it refuses an unknown
//! kind and thresholds out of order, naming the field's line; a registry's duplicate id names
//! both lines.

use std::path::Path;
use std::process::{Command, Output};

fn check(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["rules", "check"])
        .args(args)
        .current_dir(dir)
        .env_remove("RISKWATCH_LOG_FORMAT")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn without_a_registry_an_unknown_kind_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.toml",
        "[[rules]]\nid = \"wl\"\napplies_to = { kind = \"water_levle\" }\nlevels = { yellow = 1, red = 2 }\n",
    );
    let o = check(dir.path(), &["rules.toml"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("rules.toml:3: rules[0].applies_to.kind: unknown kind \"water_levle\""), "{out}");
    assert!(out.contains("water_level"), "the known kinds are listed: {out}");
    assert!(out.contains("--registry"), "says how to check a registry-declared kind: {out}");
}

#[test]
fn without_a_registry_thresholds_out_of_order_are_refused_at_the_line_of_the_level() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.toml",
        "[[rules]]\nid = \"gas\"\napplies_to = { kind = \"gas_combustible\" }\n[rules.levels]\nyellow = 20\norange = 25\nred = 10\n\n\
         [[rules]]\nid = \"low\"\ndirection = \"falling\"\napplies_to = { kind = \"water_level\" }\nlevels = { blue = 5, red = 6 }\n",
    );
    let o = check(dir.path(), &["rules.toml"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("rules.toml:7: rules[0].levels.red: value: orange threshold 25 must be ≤ red threshold 10"),
        "{out}"
    );
    assert!(
        out.contains("rules.toml:13: rules[1].levels.red: value: blue threshold 5 must be ≥ red threshold 6"),
        "{out}"
    );
    assert!(out.contains("2 problem(s)"), "both in one pass: {out}");
}

#[test]
fn a_valid_file_passes_and_says_what_only_a_registry_can_check() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.toml",
        "[[rules]]\nid = \"wl\"\napplies_to = { kind = \"water_level\" }\nlevels = { yellow = \"warning_level\", red = 30 }\n",
    );
    let o = check(dir.path(), &["rules.toml"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("rules.toml: 1 rule(s): OK"), "{out}");
    assert!(out.contains("1 threshold(s) name sensor attributes"), "{out}");
}

#[test]
fn a_registry_duplicate_names_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.toml",
        "[[rules]]\nid = \"wl\"\napplies_to = { kind = \"water_level\" }\nlevels = { red = 30 }\n",
    );
    write(
        dir.path(),
        "registry.toml",
        "[[sites]]\nid = \"a\"\n\n[[sensors]]\nid = \"wl-1\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"m\"\n\n\
         [[sensors]]\nid = \"wl-1\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"ft\"\n",
    );
    let o = check(dir.path(), &["rules.toml", "--registry", "registry.toml"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(
            "registry.toml:11: sensors[1].id: sensor id \"wl-1\" is used twice (first at line 5, sensors[0].id)"
        ),
        "{out}"
    );
    assert!(out.contains("registry.toml:14: sensors[1].unit: \"ft\""), "every problem in one pass: {out}");
}
