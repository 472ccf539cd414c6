//! `riskwatch replay` as hydrology staff use it: a multi-station flood file through the rules,
//! the alert timeline, skill scores against an incident log, a what-if comparison and the
//! report with its plots. The fixture (tests/data/replay) is a synthetic four-station flood;
//! its expected timeline was computed by tests/data/replay/make_flood.py independently of
//! riskwatch.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay").join(name).to_string_lossy().into_owned()
}

fn replay(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["replay", "--registry", &fixture("registry.toml"), "--rules", &fixture("rules.toml")])
        .args(["--input", &fixture("levels.csv"), "--format", "yearbook"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "replay failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// (time in Beijing time, sensor, change, level) of the level changes in an events array.
fn timeline(events: &serde_json::Value) -> Vec<(String, String, String, String)> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] != "reminder")
        .map(|e| {
            let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap()).unwrap();
            let cst = ts.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
            (
                cst.to_rfc3339(),
                e["subject"].as_str().unwrap().to_string(),
                e["change"].as_str().unwrap().to_string(),
                e["level"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

#[test]
fn a_multi_station_flood_gives_the_expected_timeline_skill_scores_and_what_if_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("review");
    let stdout = replay(&[
        "--observed",
        &fixture("observed.csv"),
        "--set",
        "nanjing:guaranteed_level-=0.6",
        "--report",
        report.to_str().unwrap(),
    ]);

    // The timeline: exactly the level changes the independent calculation gives, in order.
    let want: Vec<(String, String, String, String)> = std::fs::read_to_string(fixture("expected-timeline.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect();
    assert_eq!(want.len(), 16);
    let got = timeline(&json(report.join("events.json")));
    assert_eq!(got, want, "baseline alert timeline");

    // Skill against the incident log: Hankou (orange, 13 h ahead) and Jiujiang (yellow, 45 h
    // ahead) warned; Nanjing's orange-level event only got yellow (a miss); Datang's blue
    // alert matches no incident (a false alarm).
    let summary = json(report.join("report.json"));
    let base = &summary["runs"][0]["skill"];
    assert_eq!(
        (base["hits"].as_u64(), base["misses"].as_u64(), base["false_alarms"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    let close = |v: &serde_json::Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(close(&base["pod"], 2.0 / 3.0) && close(&base["far"], 1.0 / 3.0) && close(&base["csi"], 0.5), "{base}");
    assert!(close(&base["mean_lead_hours"], 29.0), "{base}");
    let leads: Vec<f64> =
        base["verdicts"].as_array().unwrap().iter().filter_map(|v| v["lead_hours"].as_f64()).collect();
    assert_eq!(leads, [13.0, 45.0]);
    assert!(stdout.contains("POD 0.67  FAR 0.33  CSI 0.50"), "{stdout}");

    // What-if: Nanjing's guaranteed level 0.6 m lower turns its yellow alert orange on
    // 07-14 11:00, 25 h before the event: now all three events are warned of.
    let alt = &summary["runs"][1];
    assert_eq!(alt["overrides"][0]["sensor"], "nanjing-wl");
    assert!(close(&alt["overrides"][0]["after"], 10.0));
    let alt_skill = &alt["skill"];
    assert_eq!((alt_skill["hits"].as_u64(), alt_skill["misses"].as_u64()), (Some(3), Some(0)));
    assert!(close(&alt_skill["pod"], 1.0) && close(&alt_skill["far"], 0.25) && close(&alt_skill["csi"], 0.75));
    let cmp = &summary["comparison"];
    assert_eq!(cmp["gained"].as_array().unwrap().len(), 0);
    assert_eq!(cmp["lost"].as_array().unwrap().len(), 0);
    let nanjing = cmp["matched"].as_array().unwrap().iter().find(|m| m["subject"] == "nanjing-wl").unwrap();
    assert_eq!(
        (nanjing["baseline_highest"].as_str(), nanjing["what_if_highest"].as_str()),
        (Some("yellow"), Some("orange"))
    );
    let orange = nanjing["shifts"].as_array().unwrap().iter().find(|s| s["level"] == "orange").unwrap();
    assert!(orange["baseline"].is_null());
    assert_eq!(orange["what_if"], "2020-07-14T03:00:00.000Z");
    // The other stations are unchanged.
    for m in cmp["matched"].as_array().unwrap().iter().filter(|m| m["subject"] != "nanjing-wl") {
        assert!(m["shifts"].as_array().unwrap().iter().all(|s| s["earlier_by_hours"] == 0.0), "{m}");
    }
    assert!(stdout.contains("baseline vs what-if: 0 alert(s) gained, 0 lost, 1 changed"), "{stdout}");

    // The report documents all of it.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in [
        "## Skill scores",
        "## Baseline vs what-if",
        "## Alert timeline — baseline",
        "nanjing-wl guaranteed_level 10.60 → 10.00",
        "plots/hankou-wl.png",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2020-07-")).collect();
    assert_eq!(rows.len(), 16 + 18, "16 level changes, and 18 in the what-if (Nanjing up to orange and back)");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<img src=\"plots/hankou-wl.svg\"") && html.contains("POD"), "report.html");
}

#[test]
fn report_plots_are_svg_and_png_of_the_documented_size_with_bands_and_threshold_lines() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    replay(&["--report", report.to_str().unwrap()]);
    let plots = report.join("plots");
    for sensor in ["hankou-wl", "jiujiang-wl", "nanjing-wl", "datang-wl"] {
        assert_eq!(png_size(&plots.join(format!("{sensor}.png"))), (1200, 480), "{sensor}: default size");
        let svg = std::fs::read_to_string(plots.join(format!("{sensor}.svg"))).unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("width=\"1200\" height=\"480\""));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }
    // Hankou went to orange and never red: an orange band, no red band; its threshold lines
    // are labelled with their values.
    let hankou = std::fs::read_to_string(plots.join("hankou-wl.svg")).unwrap();
    assert!(hankou.contains("fill=\"#f07f13\" fill-opacity"), "orange band");
    assert!(!hankou.contains("fill=\"#d61f1f\" fill-opacity"), "no red band");
    for label in ["yellow 27.30", "orange 28.50", "red 29.73"] {
        assert!(hankou.contains(label), "threshold label {label}");
    }
    // The PNG shows the same: pixels of the orange band's tint inside the plot, none of red's.
    let png = decode_png(&plots.join("hankou-wl.png"));
    let tint = |c: [u8; 3]| -> [u8; 3] { c.map(|v| (255.0 + (f64::from(v) - 255.0) * 0.28).round() as u8) };
    let count = |c: [u8; 3]| png.chunks(3).filter(|p| *p == c).count();
    assert!(count(tint([0xf0, 0x7f, 0x13])) > 1000, "orange band pixels");
    assert_eq!(count(tint([0xd6, 0x1f, 0x1f])), 0, "red band pixels");
    assert!(count([0xd6, 0x1f, 0x1f]) > 100, "the red threshold line is drawn");

    // Another size on request.
    let small = dir.path().join("s");
    replay(&["--report", small.to_str().unwrap(), "--plot-size", "800x300"]);
    assert_eq!(png_size(&small.join("plots/datang-wl.png")), (800, 300));
}

/// RGB bytes of an 8-bit RGB, non-interlaced PNG with filter type 0 rows (what riskwatch writes).
fn decode_png(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let b = std::fs::read(path).unwrap();
    let (w, _) = png_size(path);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        if &b[i + 4..i + 8] == b"IDAT" {
            idat.extend_from_slice(&b[i + 8..i + 8 + len]);
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let row = 1 + w as usize * 3;
    raw.chunks(row)
        .flat_map(|r| {
            assert_eq!(r[0], 0, "filter type 0");
            r[1..].to_vec()
        })
        .collect()
}

#[test]
fn bad_options_and_broken_input_are_reported_clearly() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_riskwatch"))
            .args(["replay", "--registry", &fixture("registry.toml"), "--rules", &fixture("rules.toml")])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--input", &fixture("levels.csv"), "--set", "warnig_level-=0.3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sensor has attribute \"warnig_level\""));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "station,time,level\nhankou,2020-07-01 00:00,25.2\nhankou,2020-07-01 01:00,abc\nwuhan,2020-07-01 01:00,1\nhankou,2020-07-01 02:00,25.3\n").unwrap();
    let out = run(&["--input", broken.to_str().unwrap()]);
    assert!(out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 readings") && stdout.contains("2 rejected"), "{stdout}");
    assert!(stderr.contains("broken.csv:3: level: \"abc\" is not a number"), "{stderr}");
    assert!(stderr.contains("broken.csv:4: station \"wuhan\""), "{stderr}");
}

#[test]
fn a_simulated_scenario_replays_to_the_alerts_its_file_expects() {
    // `simulate --dry-run` writes the messages a scenario's gateways would send; replaying them
    // through the scenario's own registry and rules must raise what the scenario states, as
    // the live pipeline does (tests/scenarios.rs).
    use riskwatch_simulators::scenario::{ObservedAlert, Scenario};
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/yangtze-2020.toml");
    let plan = dir.path().join("plan.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["simulate", "--scenario", path.to_str().unwrap(), "--dry-run", "--seed", "2020", "--output"])
        .arg(&plan)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let report = dir.path().join("r");
    let out = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["replay", "--scenario", path.to_str().unwrap(), "--input", plan.to_str().unwrap(), "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = json(report.join("events.json"));
    let alerts: Vec<ObservedAlert> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ObservedAlert {
            rule: e["rule_id"].as_str().unwrap().into(),
            subject: e["subject"].as_str().unwrap().into(),
            change: e["change"].as_str().unwrap().into(),
            level: e["level"].as_str().unwrap().parse().unwrap(),
            ts: chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap()).unwrap().timestamp_millis(),
        })
        .collect();
    let scenario = Scenario::load(&path).unwrap();
    let start = scenario.fixed_start().unwrap();
    assert!(!alerts.is_empty());
    if let Err(problems) = scenario.check(start, &alerts) {
        panic!("{}", problems.join("\n"));
    }
}
