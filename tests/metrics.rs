//! The Prometheus endpoint of the embedded pipeline, scraped during a run: the counters move
//! as the readings, rejections and alerts a gateway causes say they should; health and
//! readiness answer. (The Kafka path's endpoints: tests/kafka_path.rs.)

mod common;
mod servers;

use common::{duty, free_port, Riskwatch, TestClient};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use servers::metric_sample as sample;

async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

/// Scrapes until every `(series, value)` holds; panics with the last scrape at the deadline.
async fn wait_for(base: &str, want: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(base).await;
        if want.iter().all(|(s, v)| sample(&text, s) == Some(*v)) {
            return text;
        }
        let wrong: Vec<String> = want
            .iter()
            .filter(|(s, v)| sample(&text, s) != Some(*v))
            .map(|(s, v)| format!("{s} = {:?}, want {v}", sample(&text, s)))
            .collect();
        assert!(Instant::now() < deadline, "{}\n--- last scrape:\n{text}", wrong.join("\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_readings_rejections_and_alerts_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    duty::write_files(d);
    let (mqtt_port, metrics_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{mqtt_port}");
    let metrics_at = format!("127.0.0.1:{metrics_port}");
    let mut rw = Riskwatch::spawn(
        &[
            "run",
            "--registry",
            "registry.toml",
            "--rules",
            "rules.toml",
            "--db",
            "store.db",
            "--listen",
            &listen,
            "--metrics",
            &metrics_at,
        ],
        d,
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let base = format!("http://{metrics_at}");
    assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200, "subscribed: ready");

    // Before anything arrives: every series exists, at zero.
    let text = scrape(&base).await;
    for s in [
        "riskwatch_mqtt_messages_total",
        "riskwatch_readings_in_total{source=\"mqtt\"}",
        "riskwatch_alert_events_total{level=\"red\",change=\"raised\"}",
        "riskwatch_alerts_active{level=\"red\"}",
        "riskwatch_readings_stored_total{sink=\"sqlite\"}",
        "riskwatch_mqtt_reconnects_total{client=\"ingest\"}",
        "riskwatch_mqtt_coalesced_reads_total",
    ] {
        assert_eq!(sample(&text, s), Some(0.0), "{s} at zero before any input:\n{text}");
    }
    assert!(text.contains("riskwatch_build_info{version=\""), "{text}");

    let mut gw = TestClient::connect(mqtt_port, "gw-plant-a", &[]).await;
    let t0 = riskwatch_core::Timestamp::now().millis() - 60_000;
    for i in 0..10 {
        let v = if i == 9 { 55.0 } else { 5.0 + i as f64 };
        let body = json!({"kind": "gas_combustible", "ts": t0 + i * 1000, "unit": "%LEL", "value": v});
        gw.publish_acked("riskwatch/v1/readings/plant-a/a-gas-1", body.to_string()).await;
    }
    gw.publish_acked("riskwatch/v1/readings/plant-a/a-gas-1", "{not json").await;
    let stranger = json!({"kind": "gas_combustible", "ts": t0, "unit": "%LEL", "value": 1.0});
    gw.publish_acked("riskwatch/v1/readings/plant-a/no-such-sensor", stranger.to_string()).await;

    let text = wait_for(
        &base,
        &[
            ("riskwatch_mqtt_messages_total", 12.0),
            ("riskwatch_readings_in_total{source=\"mqtt\"}", 10.0),
            ("riskwatch_readings_evaluated_total", 10.0),
            ("riskwatch_rejections_total{reason=\"not_json\"}", 1.0),
            ("riskwatch_rejections_total{reason=\"unknown_sensor\"}", 1.0),
            ("riskwatch_readings_stored_total{sink=\"sqlite\"}", 10.0),
            ("riskwatch_alert_events_total{level=\"red\",change=\"raised\"}", 1.0),
            ("riskwatch_alert_events_stored_total{sink=\"sqlite\"}", 1.0),
            ("riskwatch_alerts_active{level=\"red\"}", 1.0),
        ],
    )
    .await;
    // One evaluation per batch: the messages ingest read together (1 to 10 of them here).
    let evaluations = sample(&text, "riskwatch_rule_evaluation_seconds_count").unwrap();
    assert!((1.0..=10.0).contains(&evaluations), "{evaluations} evaluations of 10 readings:\n{text}");
    assert_eq!(sample(&text, "riskwatch_rule_evaluation_seconds_bucket{le=\"+Inf\"}"), Some(evaluations), "{text}");
    assert!(sample(&text, "riskwatch_sink_flush_seconds_count{sink=\"sqlite\"}").unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, "riskwatch_sink_flush_errors_total{sink=\"sqlite\"}"), Some(0.0));
    assert_eq!(servers::undocumented_metrics(&text), Vec::<String>::new(), "every metric is in docs/operations.md");

    // An officer acknowledges: the event is counted under its change.
    let db = rusqlite::Connection::open(d.join("store.db")).unwrap();
    let alert: String = db.query_row("SELECT alert_id FROM alert_events LIMIT 1", [], |r| r.get(0)).unwrap();
    let cmd =
        json!({"command_id": "c-1", "action": "acknowledge", "alert_id": alert, "by": "li.wei", "site": "plant-a"});
    gw.publish_acked("riskwatch/v1/commands", cmd.to_string()).await;
    let text = wait_for(&base, &[("riskwatch_alert_events_total{level=\"red\",change=\"acknowledged\"}", 1.0)]).await;

    // What dashboards and alert rules rely on: each sample's name, its family's type and help, and
    // its label names, as they were when the run had seen every kind of input above.
    let expected_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics_families.txt");
    let expected: BTreeSet<String> = std::fs::read_to_string(&expected_file)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let got = families(&text);
    let missing: Vec<&String> = expected.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "families differ from {}:\nmissing: {missing:#?}\nextra: {extra:#?}\n--- now:\n{}",
        expected_file.display(),
        got.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    // The process's own series describe the riskwatch process itself.
    let process = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    let pid_rss = servers::rss_kib(rw.child.id()) as f64 * 1024.0;
    let rss = process("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < process("process_virtual_memory_bytes"), "rss {rss}");
    assert!((rss - pid_rss).abs() < rss / 2.0, "rss {rss} against /proc/{}/status {pid_rss}", rw.child.id());
    let fds = process("process_open_fds");
    assert!(fds >= 3.0 && fds <= process("process_max_fds"), "{fds} open fds:\n{text}");
    assert!(process("process_cpu_seconds_total") > 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = process("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 600.0, "started {started}, now {now}");

    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
}

/// Each sample of a Prometheus text exposition (format 0.0.4) as `name type label,names help`
/// (`-` for no labels), `type` and `help` being its family's. Panics, naming the line, where
/// Prometheus' text parser would refuse the exposition or where a sample has no `# TYPE`/`# HELP`
/// before it.
fn families(text: &str) -> BTreeSet<String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut helps: HashMap<&str, &str> = HashMap::new();
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "{at}: bad metric name");
            assert!(helps.insert(name, help).is_none(), "{at}: second HELP");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{at}: no type"));
            assert!(valid_name(name), "{at}: bad metric name");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{at}: unknown type");
            assert!(types.insert(name, kind).is_none(), "{at}: second TYPE");
            continue;
        }
        if line.starts_with('#') {
            continue; // a comment
        }
        let end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{at}: no value"));
        let name = &line[..end];
        assert!(valid_name(name), "{at}: bad metric name");
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(mut l) = rest.strip_prefix('{') {
            loop {
                l = l.trim_start();
                if let Some(r) = l.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = l.find('=').unwrap_or_else(|| panic!("{at}: label without '='"));
                let label = l[..eq].trim();
                assert!(valid_name(label) && !label.contains(':'), "{at}: bad label name {label:?}");
                labels.push(label.to_string());
                let mut chars = l[eq + 1..].trim_start().char_indices();
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{at}: unquoted label value");
                let close = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let e = chars.next().map(|c| c.1);
                            assert!(matches!(e, Some('\\' | '"' | 'n')), "{at}: bad escape");
                        }
                        Some((j, '"')) => break j,
                        Some(_) => {}
                        None => panic!("{at}: unterminated label value"),
                    }
                };
                l = l[eq + 1..].trim_start()[close + 1..].trim_start();
                l = l.strip_prefix(',').unwrap_or(l);
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| panic!("{at}: no value"));
        assert!(value.parse::<f64>().is_ok(), "{at}: value is not a number");
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "{at}: bad timestamp");
        }
        assert!(fields.next().is_none(), "{at}: trailing text");
        let family = std::iter::once(name)
            .chain(["_bucket", "_sum", "_count"].iter().filter_map(|s| name.strip_suffix(s)))
            .find(|f| types.contains_key(f))
            .unwrap_or_else(|| panic!("{at}: no # TYPE for its family before it"));
        let kind = types[family];
        assert!(family == name || matches!(kind, "histogram" | "summary"), "{at}: suffix on a {kind}");
        let help = helps.get(family).unwrap_or_else(|| panic!("{at}: no # HELP for its family before it"));
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len(), "{at}: a label twice");
        let labels = if sorted.is_empty() { "-".to_string() } else { sorted.join(",") };
        out.insert(format!("{name} {kind} {labels} {help}"));
    }
    out
}
