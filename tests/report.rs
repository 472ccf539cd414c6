//! `riskwatch report`: the alarm KPIs of a period of a store's alert events (docs/alarm-kpis.md).
//! A hand-built stream with known counts (tests/data/alarm-kpi-stream.jsonl, the stream the KPI
//! module's unit tests use) is written into a store by the store's own writer and reported on;
//! and the demo's store is reported on, its alert count checked against the store's rows.

mod common;

use common::{free_port, Riskwatch};
use riskwatch_core::{AlertEvent, Timestamp};
use riskwatch_sinks::sqlite::{SqliteStore, StoreItem};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn report(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch")).arg("report").args(args).current_dir(dir).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hand_built_store(path: &Path) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/alarm-kpi-stream.jsonl"))
        .unwrap();
    let events: Vec<AlertEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut store = SqliteStore::open(path).unwrap();
    store.write(&[StoreItem::Events(events)]).unwrap();
}

const PERIOD: [&str; 4] = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T10:00:00+08:00"];

#[test]
fn report_prints_the_kpis_of_a_hand_built_stream() {
    let dir = tempfile::tempdir().unwrap();
    hand_built_store(&dir.path().join("store.db"));
    let (ok, out, err) = report(dir.path(), &[&["--store", "store.db"][..], &PERIOD[..]].concat());
    assert!(ok, "{err}");
    for line in [
        "Alerts: 18 (17 raised, 1 escalated); exercise events left out: 1.",
        "| Alerts per officer per 10 min (mean) | 每名值班员每 10 分钟预警数（平均） | 1.50 | ≤ 1 manageable (EEMUA 191) | NO |",
        "| Alerts per officer per day (mean) | 每名值班员每天预警数（平均） | 216 | ~150 acceptable, ~300 at most (ISA-18.2) | NO |",
        "| Peak alerts per officer in 10 min | 10 分钟内预警数峰值（每名值班员） | 10 | ≤ 10 (ISA-18.2) | yes |",
        "| Time in flood (%) | 预警泛滥时间占比（%） | 8.33 | < 1 % (ISA-18.2) | NO |",
        "| Chattering sources | 抖动预警源 | 1 | 0 (ISA-18.2) | NO |",
        "| Standing alerts (open > 24 h) | 长期未闭环预警（超过 24 小时） | 1 | 0 (ISA-18.2: stale alarms fixed) | NO |",
        "| Share of the top-10 bad actors (%) | 前 10 个频发预警源占比（%） | 83.33 | < 1–5 % (ISA-18.2) | NO |",
        "| Median time to acknowledge (s) | 确认用时中位数（秒） | 180 | site target (no standard figure) | – |",
        "Peak: 10 alert(s) in the 10 minutes from 2026-01-01T08:00:00+08:00. Flood windows (≥ 10 alerts in 10 min): 1 of 12 (8.33 % of the time).",
        "| 2026-01-01T08:00:00+08:00 | 10 |",
        "| 1 | chatter-wl gauge `chatter-wl` | `water-level` | `chatter` | 3 | 16.67 | ██████████████████████████████ |",
        "| chatter-wl gauge `chatter-wl` | `water-level` | 3 | 3 |",
        "| `old-open` | old-a gauge `old-a` | orange | 2025-12-31T02:00:00+08:00 | 32 |",
        "Of the alerts raised in the period, 4 acknowledged, 13 not. Median 180 s, 90th percentile 600 s, mean 277.50 s, longest 600 s.",
        "| 5–10 min | 1 |",
    ] {
        assert!(out.lines().any(|l| l.trim_end() == line || l.starts_with(line)), "no line {line:?} in:\n{out}");
    }
    assert!(
        !out.contains("near-wl gauge `near-wl` | `water-level` | 3 | 3"),
        "three raises over 60 s are not chattering"
    );

    // Two officers: half the rate, and no flood (20 alerts in 10 minutes would be one).
    let (ok, out, err) = report(dir.path(), &[&["--store", "store.db", "--officers", "2"][..], &PERIOD[..]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("| 0.75 |") && !out.contains("1 of 12") && out.contains("0 of 12 (0 % of the time)"), "{out}");

    // HTML to a file: the same figures, and the chart with its flood line.
    let (ok, out, err) = report(
        dir.path(),
        &[&["--store", "store.db", "--format", "html", "--out", "kpi.html"][..], &PERIOD[..]].concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("kpi.html"), "{out}");
    let html = std::fs::read_to_string(dir.path().join("kpi.html")).unwrap();
    assert!(html.contains("<td>Time in flood (%)</td><td>预警泛滥时间占比（%）</td><td>8.33</td>"), "{html}");
    assert!(html.contains("<svg") && html.contains("flood ≥ 10"), "rate chart with its flood line");

    // Mistakes are named.
    let (ok, _, err) = report(dir.path(), &["--store", "store.db", "--from", "yesterday"]);
    assert!(!ok && err.contains("--from \"yesterday\""), "{err}");
    let (ok, _, err) = report(dir.path(), &["--store", "missing.db"]);
    assert!(!ok && err.contains("missing.db: no such file"), "{err}");
    std::fs::write(dir.path().join("empty.db"), b"").unwrap();
    let (ok, _, err) = report(dir.path(), &["--store", "empty.db"]);
    assert!(!ok && err.contains("not a riskwatch store"), "{err}");
}

#[test]
fn report_over_the_demos_store_counts_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let start = Timestamp::now();
    let rw =
        Riskwatch::spawn(&["demo", "--duration", "20s", "--no-color", "--port", &port, "--db", "demo.db"], dir.path());
    let (code, out) = rw.wait_exit(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", out.join("\n"));
    // The whole demo: its clocks run from the Hankou flood of July 2020 to 30 days from now
    // (the landslide's creep, time-compressed).
    let from = Timestamp::parse_rfc3339("2020-01-01T00:00:00Z").unwrap();
    let to = start.plus_millis(40 * 86_400_000);
    let db = rusqlite::Connection::open(dir.path().join("demo.db")).unwrap();
    let count = |change: &str| -> u64 {
        db.query_row(
            "SELECT count(*) FROM alert_events WHERE change = ?1 AND exercise = 0 AND ts >= ?2 AND ts < ?3",
            rusqlite::params![change, from.millis(), to.millis()],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (raised, escalated) = (count("raised"), count("escalated"));
    assert!(raised > 0, "the demo raised no alert");
    let (ok, out, err) =
        report(dir.path(), &["--store", "demo.db", "--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()]);
    assert!(ok, "{err}");
    let expected = format!("Alerts: {} ({raised} raised, {escalated} escalated)", raised + escalated);
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
    assert!(out.contains("| Alerts per officer per 10 min (mean) |"), "{out}");
}
