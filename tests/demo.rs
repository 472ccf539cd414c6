//! The newcomer's first command: `riskwatch demo --duration 60s` runs with no external
//! services, shows alerts of all four colours caused by the simulated physics, reports the one
//! deliberately malformed gateway message, and exits 0; with `--console`, the web board shows
//! its alerts to the officer whose one-time password it prints.

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
    // Every family raises something, and the feed names its stations as the registry does
    // (`name_zh`), never by id, with values rounded to the rule's precision.
    let feed: Vec<&String> = out.iter().filter(|l| l.contains(" ● ") || l.contains(" ○ ")).collect();
    for site in ["汉口水文站", "沙河水位站（示例）", "A化工厂罐区（示例）", "01号滑坡监测点（示例）", "强震动监测终端A"]
    {
        assert!(feed.iter().any(|l| l.contains(site)), "no alert naming {site}:\n{text}");
    }
    for id in ["hankou/", "plant-a-lel-0", "slope-01-gnss"] {
        assert!(!feed.iter().any(|l| l.contains(id)), "an id ({id}) where a name belongs:\n{text}");
    }
    assert!(feed.iter().any(|l| l.contains("可燃气体探测器 LEL-0")), "sensor names too:\n{text}");
    // Numbers as the rules' precision says: no 9.231764942589765 m.
    let long_number = first_long_decimal(&feed);
    assert!(long_number.is_none(), "an unrounded number in the feed: {long_number:?}");
    // Lines say which scenario they belong to, and the run reports progress.
    assert!(feed.iter().all(|l| l.contains(" [")), "every feed line labelled:\n{text}");
    assert!(out.iter().any(|l| l.starts_with("── ") && l.contains("messages taken in")), "no progress:\n{text}");
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
    // The alerts still open at the end, listed by name and level.
    let open: usize = out
        .iter()
        .find_map(|l| l.strip_prefix("still active at end   "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no open-alert count:\n{text}"));
    let listed: Vec<&String> = out.iter().filter(|l| l.starts_with("  ") && l.contains("预警 ")).collect();
    assert_eq!(listed.len(), open, "each open alert listed:\n{text}");
    assert!(listed.iter().all(|l| l.contains("since ")), "{listed:?}");

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

#[test]
fn demo_with_console_serves_its_alerts_on_the_web_board() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut rw = Riskwatch::spawn(
        &["demo", "--duration", "25s", "--no-color", "--port", &port, "--db", "demo.db", "--console", &listen],
        dir.path(),
    );
    let line = rw.wait_for_line("duty console:", Duration::from_secs(60));
    let password = line.split("password `").nth(1).and_then(|r| r.split('`').next()).expect("password printed");
    let http = reqwest::blocking::Client::builder().cookie_store(true).build().unwrap();
    let r = http
        .post(format!("http://{listen}/api/login"))
        .json(&serde_json::json!({"name": "duty", "password": password}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "login with the printed password: {}", r.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let board: serde_json::Value = http.get(format!("http://{listen}/api/alerts")).send().unwrap().json().unwrap();
        if board["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alert reached the console's board: {board}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = rw.wait_exit(Duration::from_secs(90));
    assert_eq!(code, 0, "{}", out.join("\n"));
}

/// The first number in the feed lines with more than four decimals, if any.
fn first_long_decimal(lines: &[&String]) -> Option<String> {
    for l in lines {
        let b = l.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                    let dot = i;
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i - dot - 1 > 4 {
                        return Some(l[start..i].to_string());
                    }
                }
            } else {
                i += 1;
            }
        }
    }
    None
}
