//! Log lines as they reach a file, a pipe or `docker logs`: plain text without colour codes,
//! no colour on a terminal with `NO_COLOR`, and one JSON object per line with
//! `--log-format json` / `RISKWATCH_LOG_FORMAT=json`.
//!
//! Each test runs `riskwatch run` for one second on a tiny registry at `RISKWATCH_LOG=info`
//! (the broker and pipeline log as they start).

use std::path::Path;
use std::process::{Command, Output, Stdio};

const ESC: &str = "\x1b[";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("registry.toml"),
        "[[sites]]\nid = \"a\"\n[[sensors]]\nid = \"s1\"\nsite = \"a\"\nkind = \"water_level\"\nunit = \"m\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rules]]\nid = \"wl\"\napplies_to = { kind = \"water_level\" }\nlevels = { red = 30 }\n",
    )
    .unwrap();
    dir
}

const RUN: [&str; 11] = [
    "run",
    "--registry",
    "registry.toml",
    "--rules",
    "rules.toml",
    "--db",
    "store.db",
    "--listen",
    "127.0.0.1:0",
    "--duration",
    "1s",
];

fn riskwatch(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riskwatch"));
    c.current_dir(dir).env("RISKWATCH_LOG", "info").env_remove("RISKWATCH_LOG_FORMAT").env_remove("NO_COLOR");
    c.stdin(Stdio::null());
    c
}

fn stderr_of(o: &Output) -> String {
    assert!(o.status.success(), "riskwatch failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn logs_to_a_pipe_are_plain_text() {
    let dir = setup();
    let log = stderr_of(&riskwatch(dir.path()).args(RUN).output().unwrap());
    assert!(log.contains(" INFO "), "expected info lines: {log}");
    assert!(!log.contains(ESC), "colour codes in piped logs: {log:?}");
}

#[test]
fn json_format_gives_one_object_per_line_with_level_and_message() {
    let dir = setup();
    for (flag, env) in [(true, None), (false, Some("json"))] {
        let mut cmd = riskwatch(dir.path());
        if flag {
            cmd.arg("--log-format").arg("json");
        }
        if let Some(v) = env {
            cmd.env("RISKWATCH_LOG_FORMAT", v);
        }
        let log = stderr_of(&cmd.args(RUN).output().unwrap());
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "expected log lines: {log}");
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v["level"].is_string() && v["message"].is_string(), "level and message: {l}");
        }
    }
}

#[test]
fn a_bad_log_format_is_named() {
    let dir = setup();
    let o = riskwatch(dir.path()).env("RISKWATCH_LOG_FORMAT", "xml").args(RUN).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("RISKWATCH_LOG_FORMAT") && err.contains("xml"), "{err}");
}

/// Runs riskwatch under a pseudo-terminal (util-linux `script`), returning what it wrote.
fn on_a_terminal(dir: &Path, no_color: Option<&str>) -> Option<String> {
    let line = format!("{} {}", env!("CARGO_BIN_EXE_riskwatch"), RUN.join(" "));
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .env("RISKWATCH_LOG", "info")
        .env_remove("RISKWATCH_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let o = cmd.output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let dir = setup();
    let Some(coloured) = on_a_terminal(dir.path(), None) else {
        // The decision itself is unit-tested (src/logging.rs); this needs `script`.
        eprintln!("skipped: util-linux `script` is not available to provide a terminal");
        return;
    };
    assert!(coloured.contains(ESC), "a terminal gets colour (else this test proves nothing): {coloured:?}");
    let plain = on_a_terminal(dir.path(), Some("1")).expect("script ran before");
    assert!(plain.contains("INFO"), "{plain}");
    assert!(!plain.contains(ESC), "NO_COLOR=1 yet colour codes: {plain:?}");
}
