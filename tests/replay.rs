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

/// What a person sees in an SVG plot: its size, texts, filled rectangles and line colours.
struct Svg {
    size: (String, String),
    texts: Vec<String>,
    /// (fill, opacity) of every filled rectangle.
    rects: Vec<(String, String)>,
    strokes: Vec<String>,
}

impl Svg {
    fn has_text(&self, t: &str) -> bool {
        self.texts.iter().any(|x| x == t)
    }

    fn rects(&self, fill: &str, opacity: &str) -> usize {
        self.rects.iter().filter(|(f, o)| f == fill && o == opacity).count()
    }
}

fn svg(path: &Path) -> Svg {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not SVG: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let attr = |n: roxmltree::Node<'_, '_>, a: &str| n.attribute(a).unwrap_or_default().to_string();
    let named = |tag: &'static str| doc.descendants().filter(move |n| n.tag_name().name() == tag);
    Svg {
        size: (attr(root, "width"), attr(root, "height")),
        texts: named("text").map(|n| n.text().unwrap_or_default().trim().to_string()).collect(),
        rects: named("rect").map(|n| (attr(n, "fill"), attr(n, "opacity"))).collect(),
        strokes: doc.descendants().filter_map(|n| n.attribute("stroke")).map(str::to_string).collect(),
    }
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
        "南京 `nanjing-wl` guaranteed_level 10.60 → 10.00",
        "| 汉口 `hankou-wl` |",
        "![汉口 hankou-wl](plots/hankou-wl.svg)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    assert!(stdout.contains("汉口 (hankou-wl)"), "the printed timeline names the station: {stdout}");
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2020-07-")).collect();
    assert_eq!(rows.len(), 16 + 18, "16 level changes, and 18 in the what-if (Nanjing up to orange and back)");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<img src=\"plots/hankou-wl.svg\"") && html.contains("POD"), "report.html");
    assert!(html.contains("汉口 <small><code>hankou-wl</code></small>"), "report.html: name, id in small type");

    // Baseline and what-if on one chart: Nanjing's what-if guaranteed level as its own labelled
    // line, and a strip per run where only the what-if's reaches orange.
    assert!(!report.join("plots/nanjing-wl.what-if.svg").exists(), "no separate what-if plot");
    let nanjing = svg(&report.join("plots/nanjing-wl.svg"));
    for label in ["南京", "orange 10.60", "what-if orange 10.00", "baseline", "what-if"] {
        assert!(nanjing.has_text(label), "nanjing-wl.svg lacks {label:?}: {:?}", nanjing.texts);
    }
    assert!(nanjing.rects("#F2C11B", "1") >= 2, "yellow in both strips");
    assert_eq!(nanjing.rects("#F07F13", "1"), 1, "orange only in the what-if strip");
    let hankou = svg(&report.join("plots/hankou-wl.svg"));
    let what_if_lines: Vec<&String> = hankou
        .texts
        .iter()
        .filter(|t| t.starts_with("what-if ") && t.ends_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(what_if_lines.is_empty(), "unchanged thresholds are drawn once: {what_if_lines:?}");
}

#[test]
fn report_plots_are_svg_charts_with_station_names_a_dated_axis_threshold_lines_and_alert_bands() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    replay(&["--report", report.to_str().unwrap()]);
    let plots = report.join("plots");
    for (sensor, name) in
        [("hankou-wl", "汉口"), ("jiujiang-wl", "九江"), ("nanjing-wl", "南京"), ("datang-wl", "大塘")]
    {
        let svg = svg(&plots.join(format!("{sensor}.svg")));
        assert_eq!(svg.size, ("1200".into(), "480".into()), "{sensor}: default size");
        assert!(svg.has_text(name), "{sensor}: titled with the station's Chinese name: {:?}", svg.texts);
        assert!(svg.has_text(&format!("{sensor} · water_level")), "{sensor}: id beside the name");
        // A dated axis: day labels, the year in the caption (the flood is within 2020).
        let days = svg.texts.iter().filter(|t| t.len() == 5 && t.starts_with("07-")).count();
        assert!((6..=25).contains(&days), "{sensor}: {days} date labels");
        assert!(svg.has_text("2020 · 北京时间 Beijing time (UTC+8)"), "{sensor}: year on the axis");
    }
    let files: Vec<String> =
        std::fs::read_dir(&plots).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(files.iter().all(|f| f.ends_with(".svg")), "SVG only: {files:?}");
    // Hankou went to orange and never red: an orange band, no red band; its threshold lines
    // are drawn in their colours and labelled with their values.
    let hankou = svg(&plots.join("hankou-wl.svg"));
    assert!(hankou.rects("#F07F13", "0.28") >= 1, "orange band");
    assert!(hankou.rects("#F2C11B", "0.28") >= 1, "yellow band");
    assert_eq!(hankou.rects("#D61F1F", "0.28"), 0, "no red band");
    for label in ["yellow 27.30", "orange 28.50", "red 29.73"] {
        assert!(hankou.has_text(label), "threshold label {label}");
    }
    assert!(hankou.strokes.iter().any(|s| s == "#D61F1F"), "the red threshold line is drawn");

    // Another size, and English names, on request.
    let small = dir.path().join("s");
    replay(&["--report", small.to_str().unwrap(), "--plot-size", "800x300", "--names", "en"]);
    let datang = svg(&small.join("plots/datang-wl.svg"));
    assert_eq!(datang.size, ("800".into(), "300".into()));
    assert!(datang.has_text("Datang (tributary)") && !datang.has_text("大塘"), "English name");
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
