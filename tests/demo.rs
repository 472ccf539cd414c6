//! The newcomer's first command: `riskwatch demo --duration 60s` runs with no external
//! services, shows alerts of all four colours caused by the simulated physics, reports the one
//! deliberately malformed gateway message, and exits 0.

mod common;

use common::{free_port, Riskwatch};
use std::time::Duration;

#[test]
fn demo_shows_all_four_colours_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let rw =
        Riskwatch::spawn(&["demo", "--duration", "60s", "--no-color", "--port", &port, "--db", "demo.db"], dir.path());
    let (code, out) = rw.wait_exit(Duration::from_secs(150));
    let text = out.join("\n");
    assert_eq!(code, 0, "demo exit code; output:\n{text}");

    // The live feed shows each colour being entered (raised or escalated).
    for level in ["BLUE", "YELLOW", "ORANGE", "RED"] {
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("● {level:<6} raised")) || l.contains(&format!("● {level:<6} escalated"))),
            "no {level} alert in the feed:\n{text}"
        );
    }
    // Every family raises something.
    for site in ["hankou/", "shahe/", "plant-a/", "slope-01/", "eq-a/"] {
        assert!(out.iter().any(|l| l.contains(site)), "no alert from {site}:\n{text}");
    }
    // The summary counts alerts at every level and the one NaN the plant gateway sent.
    let line =
        out.iter().find(|l| l.starts_with("alerts reaching level")).unwrap_or_else(|| panic!("no summary:\n{text}"));
    for level in ["red", "orange", "yellow", "blue"] {
        let n: u64 = line
            .split(&format!("{level} "))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "summary shows no {level} alert: {line}");
    }
    assert!(text.contains("rejected (dead letter) 1  (non_finite: 1)"), "{text}");

    // The store holds what the summary says.
    let db = rusqlite::Connection::open(dir.path().join("demo.db")).unwrap();
    let levels: Vec<String> = db
        .prepare("SELECT DISTINCT level FROM alert_events ORDER BY level")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(levels, vec!["blue", "orange", "red", "yellow"]);
    let readings: i64 = db.query_row("SELECT count(*) FROM readings", [], |r| r.get(0)).unwrap();
    assert!(text.contains(&format!("readings processed    {readings}")), "store has {readings} readings:\n{text}");
}
