//! End to end over TCP: a simulated SL 651-2014 RTU (`riskwatch simulate --sl651`) reports a
//! flood to a running `riskwatch run --sl651`; every report is acknowledged once stored, the
//! readings land in SQLite, a red alert reaches an MQTT subscriber, and broken frames and an
//! unknown station land in dead letters with their reasons (and are seen on the rejection
//! topic), unacknowledged where the frame cannot be trusted.

mod common;
mod servers;

use common::{free_port, Riskwatch, TestClient};
use riskwatch_core::{AlertEvent, Timestamp};
use riskwatch_ingest::sl651::frame::{encode, ESC};
use riskwatch_ingest::sl651::report::{Element, Outgoing};
use riskwatch_simulators::sl651_rtu::{flood_reports, PlannedReport, Rtu, RtuIdentity};
use std::time::{Duration, Instant};

const REGISTRY: &str = r#"
[[sites]]
id = "hankou"

[[sensors]]
id = "hankou-wl"
site = "hankou"
kind = "water_level"
unit = "m"
attributes = { warning_level = 27.30, guaranteed_level = 28.50, record_level = 28.70 }
sl651 = { station = "0012345678", element = "39" }

[[sensors]]
id = "hankou-rain"
site = "hankou"
kind = "rainfall"
unit = "mm"
sl651 = { station = "0012345678", element = "F4" }
"#;

const RULES: &str = r#"
[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
levels = { blue = "warning_level - 0.50", yellow = "warning_level", orange = "guaranteed_level", red = "record_level" }
"#;

const START: &str = "2020-07-01T00:00:00+08:00";
const HOURS: u32 = 66;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_over_tcp_gets_its_reports_acknowledged_stored_and_turned_into_a_red_alert() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let (mqtt_port, rtu_port) = (free_port(), free_port());
    let (listen, sl651) = (format!("127.0.0.1:{mqtt_port}"), format!("127.0.0.1:{rtu_port}"));
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
            "--sl651",
            &sl651,
        ],
        dir.path(),
    );
    let ready = rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    assert!(ready.contains(&format!("SL 651 {sl651}")), "{ready}");
    let mut officer =
        TestClient::connect(mqtt_port, "duty-officer", &["riskwatch/v1/alerts/#", "riskwatch/v1/rejections/#"]).await;

    // The simulated RTU: a 66-hour flood, hourly, timed and added reports, each acknowledged.
    let start = Timestamp::parse_rfc3339(START).unwrap();
    let plan = flood_reports(&Default::default(), &Default::default(), start, HOURS, 0.1);
    let sim = Riskwatch::spawn(
        &["simulate", "--sl651", &sl651, "--hours", &HOURS.to_string(), "--speed", "1e9", "--start", START],
        dir.path(),
    );
    let (code, out) = sim.wait_exit(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", out.join("\n"));
    let sent = format!("sent {n} reports, {n} acknowledged by the centre", n = plan.len());
    assert!(out.iter().any(|l| l.contains(&sent)), "expected {sent:?} in:\n{}", out.join("\n"));

    let got = officer
        .collect_until(Duration::from_secs(30), |ps| {
            ps.iter().any(|p| p.topic.starts_with("riskwatch/v1/alerts/red/hankou/hankou-wl"))
        })
        .await;
    let events: Vec<AlertEvent> = got
        .iter()
        .filter(|p| p.topic.contains("/alerts/"))
        .map(|p| serde_json::from_slice(&p.payload).expect("alert payload is an AlertEvent"))
        .collect();
    let levels: Vec<&str> = events.iter().map(|e| e.level.as_str()).collect();
    assert!(levels.contains(&"red"), "a red alert from the RTU's readings: {levels:?}");
    assert_eq!(events[0].change.as_str(), "raised");
    assert!(events.iter().all(|e| e.subject.as_str() == "hankou-wl"), "{events:?}");

    // Broken input from a station: a frame with a CRC error (no acknowledgement: its serial
    // number cannot be trusted), then a good report, acknowledged by serial number.
    let id = RtuIdentity::river("0012345678").unwrap();
    let mut rtu = Rtu::connect(&sl651, id.clone()).await.unwrap();
    let observed = start.plus_millis(i64::from(HOURS) * 3_600_000 + 300_000);
    let report = PlannedReport {
        function: 0x33,
        observed_at: observed,
        elements: vec![Element::number(0x39, Some(28.9), 4, 3).unwrap()],
    };
    let mut broken = encode(
        &Outgoing {
            serial: 0x0BAD,
            sent_at: observed,
            station: id.station,
            category: 0x48,
            observed_at: observed,
            elements: report.elements.clone(),
        }
        .frame(1, 0, 0x33),
    )
    .unwrap();
    let n = broken.len();
    broken[n - 1] ^= 0x55;
    rtu.send_raw(&broken).await.unwrap();
    let ack = rtu.report(&report, Duration::from_secs(10)).await.expect("the good report after it is acknowledged");
    assert!(ack.down);
    assert_eq!((ack.function, ack.end, ack.station, ack.centre), (0x33, ESC, id.station, 1));
    // Acknowledged only once stored: the reading is in the store the moment the ack arrives.
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let stored: Vec<f64> = db
        .prepare("SELECT value FROM readings WHERE sensor = 'hankou-wl' AND ts = ?1")
        .unwrap()
        .query_map([observed.millis()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, [28.9], "the acknowledged reading is already committed");
    drop(db);
    // A station nobody bound: dead-lettered, and acknowledged (it is stored as a dead letter).
    let mut stranger = Rtu::connect(&sl651, RtuIdentity::river("0099999999").unwrap()).await.unwrap();
    stranger.report(&report, Duration::from_secs(10)).await.expect("a dead-lettered report is acknowledged too");

    let got = officer
        .collect_until(Duration::from_secs(30), |ps| {
            ps.iter().filter(|p| p.topic.contains("/rejections/")).count() >= 2
        })
        .await;
    let reasons: Vec<String> = got
        .iter()
        .filter(|p| p.topic.contains("/rejections/"))
        .map(|p| {
            serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["reason"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(reasons, ["sl651_crc", "sl651_unknown_station"]);

    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let count = |sensor: &str| -> i64 {
        db.query_row("SELECT count(*) FROM readings WHERE sensor = ?1", [sensor], |r| r.get(0)).unwrap()
    };
    let hourly = plan.iter().filter(|r| r.function == 0x34).count() as i64;
    assert_eq!(count("hankou-wl"), plan.len() as i64 + 1, "one level per report, and the last good one");
    assert_eq!(count("hankou-rain"), hourly * 12, "twelve 5-minute amounts per hourly report");
    let last: f64 = db
        .query_row("SELECT value FROM readings WHERE sensor = 'hankou-wl' AND ts = ?1", [observed.millis()], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(last, 28.9);
    let dead: Vec<(String, String, String, Vec<u8>)> = db
        .prepare("SELECT reason, error, topic, raw FROM dead_letters ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, "sl651_crc");
    assert!(dead[0].1.starts_with("CRC: the frame carries"), "{}", dead[0].1);
    assert_eq!(dead[0].3, broken, "the broken frame's bytes are kept");
    assert_eq!((dead[1].0.as_str(), dead[1].2.as_str()), ("sl651_unknown_station", "sl651/0099999999"));
    assert!(dead[1].1.contains("station 0099999999 is not bound"), "{}", dead[1].1);
}

/// `[sl651] listen` in a topology file runs the SL 651 source in the embedded wiring; an
/// address that cannot be bound stops `riskwatch run` with the key named.
#[test]
fn the_topology_file_sets_the_sl651_listener_and_a_taken_address_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let topology = |sl651: &str| {
        format!(
            "registry = \"registry.toml\"\nrules = \"rules.toml\"\n[embedded]\ndb = \"plant.db\"\nlisten = \"127.0.0.1:{}\"\n[sl651]\nlisten = \"{sl651}\"\n",
            free_port()
        )
    };
    std::fs::write(dir.path().join("plant.toml"), topology(&taken.local_addr().unwrap().to_string())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["run", "--config", "plant.toml", "--duration", "30s"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a taken SL 651 address stops riskwatch");
    assert!(stderr.contains("[sl651] listen in plant.toml: cannot listen for SL 651 stations"), "{stderr}");

    let free = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.path().join("plant.toml"), topology(&free)).unwrap();
    let mut rw = Riskwatch::spawn(&["run", "--config", "plant.toml"], dir.path());
    let ready = rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    assert!(ready.contains(&format!("SL 651 {free}")), "{ready}");
    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
}

/// `[sl651] idle_timeout` and `max_connections` in a topology file are honoured by
/// `riskwatch run`: beyond the limit a connection is closed at once while the first station
/// keeps reporting, a silent station is closed after the timeout, both are counted on the
/// metrics endpoint, and a bad value stops riskwatch with the key named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_file_sets_the_sl651_idle_timeout_and_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let (sl651, metrics) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let topology = |idle: &str| {
        format!(
            "registry = \"registry.toml\"\nrules = \"rules.toml\"\n[embedded]\ndb = \"plant.db\"\nlisten = \"127.0.0.1:{}\"\n\
             [metrics]\nlisten = \"{metrics}\"\n[sl651]\nlisten = \"{sl651}\"\nidle_timeout = \"{idle}\"\nmax_connections = 1\n",
            free_port()
        )
    };
    std::fs::write(dir.path().join("plant.toml"), topology("soon")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["run", "--config", "plant.toml", "--duration", "30s"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad idle timeout stops riskwatch");
    assert!(stderr.contains("sl651.idle_timeout: \"soon\" is not a duration"), "{stderr}");

    std::fs::write(dir.path().join("plant.toml"), topology("2s")).unwrap();
    // The log (stderr) to a file, to find the refusal's warning in.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "exec \"$0\" run --config plant.toml 2>riskwatch.log", env!("CARGO_BIN_EXE_riskwatch")]);
    cmd.env("RISKWATCH_LOG", "info");
    let mut rw = Riskwatch::from_command(cmd, dir.path());
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let id = RtuIdentity::river("0012345678").unwrap();
    let report = |hour: i64| PlannedReport {
        function: 0x32,
        observed_at: Timestamp::parse_rfc3339(START).unwrap().plus_millis(hour * 3_600_000),
        elements: vec![Element::number(0x39, Some(26.5), 4, 3).unwrap()],
    };
    let mut first = Rtu::connect(&sl651, id.clone()).await.unwrap();
    first.report(&report(0), Duration::from_secs(10)).await.expect("the first station is served");
    // max_connections = 1: a second connection is closed at once, the first still reports.
    let mut second = Rtu::connect(&sl651, id.clone()).await.unwrap();
    let refused = second.report(&report(1), Duration::from_secs(10)).await.expect_err("the second is refused");
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    assert!(
        matches!(refused.kind(), UnexpectedEof | ConnectionReset | BrokenPipe),
        "closed at once, not left waiting: {refused}"
    );
    first.report(&report(2), Duration::from_secs(10)).await.expect("the first station still reports");
    // idle_timeout = 2s: silent after its last acknowledgement, the first is closed.
    let since = Instant::now();
    let closed = first.acknowledgement(u16::MAX, Duration::from_secs(20)).await.expect_err("no acknowledgement");
    assert_eq!(closed.kind(), std::io::ErrorKind::UnexpectedEof, "closed for idleness: {closed}");
    assert!(since.elapsed() >= Duration::from_millis(1500), "closed after {:?}", since.elapsed());

    let base = format!("http://{metrics}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(&base).await.unwrap().text().await.unwrap();
        let got = |s: &str| servers::metric_sample(&text, s);
        if got("riskwatch_sl651_refused_total") == Some(1.0) && got("riskwatch_sl651_idle_closed_total") == Some(1.0) {
            assert_eq!(servers::undocumented_metrics(&text), Vec::<String>::new(), "every metric is documented");
            break;
        }
        assert!(Instant::now() < deadline, "metrics never counted the refusal and the idle close:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", out.join("\n"));
    let log = std::fs::read_to_string(dir.path().join("riskwatch.log")).unwrap();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("SL 651 connection refused")).collect();
    assert!(warned.len() == 1 && warned[0].contains("WARN"), "the refusal is logged as a warning:\n{log}");
    assert!(log.contains("no checked frame within sl651.idle_timeout"), "the idle close is logged:\n{log}");
}

/// With `password` in a station's bindings, over TCP: a report carrying another password is
/// dead-lettered (`sl651_bad_password`) and acknowledged, and gives no reading; the right
/// password's report is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_without_the_station_password_is_dead_lettered_and_gives_no_reading() {
    let dir = tempfile::tempdir().unwrap();
    let registry = REGISTRY.replace("station = \"0012345678\"", "station = \"0012345678\", password = \"1234\"");
    std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let sl651 = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
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
            "--sl651",
            &sl651,
        ],
        dir.path(),
    );
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let start = Timestamp::parse_rfc3339(START).unwrap();
    let report = |hour: i64, level: f64| PlannedReport {
        function: 0x32,
        observed_at: start.plus_millis(hour * 3_600_000),
        elements: vec![Element::number(0x39, Some(level), 4, 3).unwrap()],
    };
    let mut id = RtuIdentity::river("0012345678").unwrap();
    let mut impostor = Rtu::connect(&sl651, id.clone()).await.unwrap();
    impostor.report(&report(0, 30.0), Duration::from_secs(10)).await.expect("acknowledged once dead-lettered");
    id.password = 0x1234;
    let mut station = Rtu::connect(&sl651, id).await.unwrap();
    station.report(&report(1, 26.5), Duration::from_secs(10)).await.expect("the right password's report");

    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let levels: Vec<f64> = db
        .prepare("SELECT value FROM readings WHERE sensor = 'hankou-wl' ORDER BY ts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(levels, [26.5], "only the report with the station's password is read");
    let dead: Vec<(String, String, String)> = db
        .prepare("SELECT reason, error, topic FROM dead_letters ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].0.as_str(), dead[0].2.as_str()), ("sl651_bad_password", "sl651/0012345678"));
    assert!(dead[0].1.contains("password 0000 is not station 0012345678's"), "{}", dead[0].1);
    drop(db);
    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
}
