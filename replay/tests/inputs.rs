//! Replay inputs as hydrology offices have them: long CSV, yearbook CSV, JSON lines, the
//! embedded store and QuestDB's CSV export — each validated against the registry, in event-time
//! order, every refused line named with where and why.

use riskwatch_core::{Quality, Reading, Registry, Timestamp, Value};
use riskwatch_replay::hindcast::{self, RunOptions};
use riskwatch_replay::input::{self, Format, InputOptions};
use riskwatch_rules::RuleSet;
use std::io::{Read, Write};
use std::path::Path;

const REGISTRY: &str = r#"
    [[sites]]
    id = "hankou"
    [[sites]]
    id = "plant-a"
    [[sensors]]
    id = "hankou-wl"
    site = "hankou"
    kind = "water_level"
    unit = "m"
    attributes = { warning_level = 27.30 }
    [[sensors]]
    id = "plant-a-gnss"
    site = "plant-a"
    kind = "gnss_displacement"
    unit = "mm"
"#;

fn registry() -> Registry {
    Registry::from_toml(REGISTRY).unwrap()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/replay").join(name).to_string_lossy().into_owned()
}

fn values(rs: &[Reading]) -> Vec<(i64, f64)> {
    rs.iter()
        .map(|r| match r.value {
            Value::Scalar(v) => (r.ts.millis(), v),
            _ => (r.ts.millis(), f64::NAN),
        })
        .collect()
}

#[test]
fn long_csv_is_validated_line_by_line_and_streamed_when_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levels.csv");
    std::fs::write(
        &path,
        "ts,sensor,value,unit,quality\n\
         2020-07-12T08:00:00+08:00,hankou-wl,27.10,m,1\n\
         1594512060000,hankou-wl,27.20,,\n\
         2020-07-12T08:02:00+08:00,hankou-wl,27.30,ft,1\n\
         2020-07-12T08:03:00+08:00,wuhan-wl,1.0,m,1\n\
         2020-07-12T08:04:00+08:00,hankou-wl,NaN,m,1\n\
         2020-07-12T08:05:00+08:00,hankou-wl,27.40,m,7\n\
         2020-07-12T08:06:00+08:00,plant-a-gnss,3.0,mm,1\n\
         2020-07-12T08:07:00Z,hankou-wl,27.50,m,3\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    assert_eq!(Format::guess(file).unwrap(), Format::Csv);
    let reg = registry();
    let opts = InputOptions::new(Format::Csv);
    let loaded = input::load(file, &opts, &reg).unwrap();
    assert_eq!(
        values(&loaded.readings),
        [(1_594_512_000_000, 27.1), (1_594_512_060_000, 27.2), (1_594_541_220_000, 27.5)]
    );
    assert_eq!(loaded.readings[0].quality, Quality::Good);
    assert_eq!(loaded.readings[1].quality, Quality::NotEvaluated);
    assert_eq!(loaded.readings[2].quality, Quality::Suspect);
    let reasons: Vec<(String, String)> = loaded.rejected.iter().map(|r| (r.at.clone(), r.reason.clone())).collect();
    let expect = [
        (4, "unit: \"ft\""),
        (5, "sensor \"wuhan-wl\" is not in the registry"),
        (6, "not a finite number"),
        (7, "quality: \"7\""),
        (8, "not a single number"),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for ((at, reason), (line, text)) in reasons.iter().zip(expect) {
        assert_eq!(at, &format!("{file}:{line}"));
        assert!(reason.contains(text), "line {line}: {reason}");
    }
    // The streaming reader gives the same readings and rejections without loading the file.
    let mut streamed = Vec::new();
    let mut fractions = Vec::new();
    let s = input::stream(file, &opts, &reg, 2, |b, done| {
        streamed.extend(b);
        fractions.push(done);
    })
    .unwrap();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]) && fractions.last() == Some(&Some(1.0)), "{fractions:?}");
    assert!(s.ordered);
    assert_eq!(values(&streamed), values(&loaded.readings));
    assert_eq!(s.rejected, loaded.rejected);
    // A time window.
    let mut window = InputOptions::new(Format::Csv);
    window.from = Some(Timestamp(1_594_512_060_000));
    window.to = Some(Timestamp(1_594_537_620_000));
    assert_eq!(values(&input::load(file, &window, &reg).unwrap().readings), [(1_594_512_060_000, 27.2)]);
}

#[test]
fn a_yearbook_file_station_by_station_is_detected_as_unordered_and_sorted_on_load() {
    let reg = Registry::from_toml(&std::fs::read_to_string(fixture("registry.toml")).unwrap()).unwrap();
    let opts = InputOptions::new(Format::Yearbook);
    let file = fixture("levels.csv");
    assert_eq!(Format::guess(&file).unwrap(), Format::Yearbook);
    let s = input::stream(&file, &opts, &reg, 4096, |_, _| {}).unwrap();
    assert!(!s.ordered, "the second station starts back at July 1");
    let loaded = input::load(&file, &opts, &reg).unwrap();
    assert_eq!(loaded.readings.len(), 4 * 577);
    assert!(loaded.readings.windows(2).all(|w| w[0].ts <= w[1].ts));
    // Station ids are site ids with one water-level gauge; times are Beijing time.
    assert_eq!(loaded.readings[0].ts, Timestamp::parse_rfc3339("2020-07-01T00:00:00+08:00").unwrap());
    assert!(loaded.readings.iter().any(|r| r.sensor.as_str() == "hankou-wl"));
    // Another offset moves every reading.
    let mut utc = InputOptions::new(Format::Yearbook);
    utc.utc_offset_s = 0;
    let shifted = input::load(&file, &utc, &reg).unwrap();
    assert_eq!(shifted.readings[0].ts.millis() - loaded.readings[0].ts.millis(), 8 * 3_600_000);
}

#[test]
fn quoted_csv_fields_may_hold_commas_line_breaks_and_quotes_and_a_broken_line_is_named() {
    // A yearbook sheet saved from Excel as "CSV UTF-8" (byte-order mark) with a remarks
    // column: quoted remarks with commas, a line break and doubled quotes; a level that is
    // not a number; a line in GBK (Excel's other CSV); a quote left open at the end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levels.csv");
    let mut text = b"\xef\xbb\xbfstation,time,level,remark\n\
        hankou,2020-07-12 08:00,27.10,\"read by hand, from the boat\"\n\
        \"hankou\",\"2020-07-12 09:00\",\"27.20\",\"two lines:\nsecond\"\n\
        hankou,2020-07-12 10:00,27.30,\"the keeper said \"\"high\"\"\"\n\
        hankou,2020-07-12 11:00,\"27,40\",\"decimal comma\"\n\
        hankou,2020-07-12 12:00,27.50,\n"
        .to_vec();
    text.extend_from_slice(b"hankou,2020-07-12 12:30,27.55,\xba\xba\xbf\xda\n");
    text.extend_from_slice(b"hankou,\"2020-07-12 13:00,27.60,\nhankou,2020-07-12 14:00,27.70,\n");
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    assert_eq!(Format::guess(file).unwrap(), Format::Yearbook, "the byte-order mark is not part of the header");
    let reg = Registry::from_toml(&std::fs::read_to_string(fixture("registry.toml")).unwrap()).unwrap();
    let opts = InputOptions::new(Format::Yearbook);
    let loaded = input::load(file, &opts, &reg).unwrap();
    let at = |hh: i64| 1_594_512_000_000 + (hh - 8) * 3_600_000;
    assert_eq!(values(&loaded.readings), [(at(8), 27.1), (at(9), 27.2), (at(10), 27.3), (at(12), 27.5)]);
    let reasons: Vec<(&str, &str)> = loaded.rejected.iter().map(|r| (r.at.as_str(), r.reason.as_str())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, format!("{file}:6"), "line numbers count the line break inside the quoted remark");
    assert!(reasons[0].1.contains("level: \"27,40\" is not a number"), "{reasons:?}");
    assert_eq!(reasons[1].0, format!("{file}:8"));
    assert!(reasons[1].1.contains("not UTF-8"), "{reasons:?}");
    assert_eq!(reasons[2].0, format!("{file}:9"));
    assert!(reasons[2].1.contains("runs on to line 10: a quote not closed?"), "{reasons:?}");
    // Streaming reads the same.
    let mut streamed = Vec::new();
    let s = input::stream(file, &opts, &reg, 2, |b, _| streamed.extend(b)).unwrap();
    assert!(s.ordered);
    assert_eq!(values(&streamed), values(&loaded.readings));
    assert_eq!(s.rejected, loaded.rejected);
}

#[test]
fn json_lines_are_decoded_exactly_as_live_ingest_decodes_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(
        &path,
        r#"{"sensor":"hankou-wl","kind":"water_level","ts":"2020-07-12T08:00:00+08:00","unit":"m","value":27.1}
{"readings":[{"sensor":"plant-a-gnss","kind":"gnss_displacement","ts":1594512000000,"unit":"mm","value":{"e":1.0,"n":2.0,"u":-3.0}},{"sensor":"plant-a-gnss","kind":"gnss_displacement","ts":1594512060000,"unit":"m","value":{"e":1.0,"n":2.0,"u":-3.0}}]}
not json
{"sensor":"hankou-wl","kind":"water_level","ts":"2020-07-12T07:00:00+08:00","unit":"m","value":26.9}
"#,
    )
    .unwrap();
    let file = path.to_str().unwrap();
    assert_eq!(Format::guess(file).unwrap(), Format::Jsonl);
    let loaded = input::load(file, &InputOptions::new(Format::Jsonl), &registry()).unwrap();
    let got: Vec<(&str, i64)> = loaded.readings.iter().map(|r| (r.sensor.as_str(), r.ts.millis())).collect();
    assert_eq!(
        got,
        [("hankou-wl", 1_594_508_400_000), ("hankou-wl", 1_594_512_000_000), ("plant-a-gnss", 1_594_512_000_000)]
    );
    assert!(matches!(loaded.readings[2].value, Value::Displacement(_)));
    let at: Vec<&str> = loaded.rejected.iter().map(|r| r.at.as_str()).collect();
    assert_eq!(at, [format!("{file}:2 readings[1]"), format!("{file}:3")]);
    assert!(loaded.rejected[0].reason.contains("unit"), "{:?}", loaded.rejected[0]);
}

#[test]
fn the_embedded_store_is_read_back_in_time_order() {
    use riskwatch_sinks::sqlite::{SqliteStore, StoreItem};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let reg = registry();
    let s = reg.sensor("hankou-wl").unwrap();
    let r = |ts: i64, v: f64| Reading {
        sensor: s.id.clone(),
        site: s.site.clone(),
        kind: s.kind.clone(),
        ts: Timestamp(ts),
        value: Value::Scalar(v),
        unit: s.unit.clone(),
        quality: Quality::Good,
        exercise: false,
    };
    let mut store = SqliteStore::open(&db).unwrap();
    store.write(&[StoreItem::Readings(vec![r(3_000, 27.3), r(1_000, 27.1), r(2_000, 27.2)])]).unwrap();
    drop(store);
    let file = db.to_str().unwrap();
    assert_eq!(Format::guess(file).unwrap(), Format::Sqlite);
    let mut opts = InputOptions::new(Format::Sqlite);
    let loaded = input::load(file, &opts, &reg).unwrap();
    assert_eq!(values(&loaded.readings), [(1_000, 27.1), (2_000, 27.2), (3_000, 27.3)]);
    opts.from = Some(Timestamp(2_000));
    assert_eq!(input::load(file, &opts, &reg).unwrap().readings.len(), 2);
}

/// Serves one recorded HTTP answer to the first request and returns the request line.
fn serve_once(answer: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        conn.write_all(&answer).unwrap();
        String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string()
    });
    (addr, handle)
}

/// A recorded QuestDB `/exp` answer (chunked, as QuestDB sends it; body in QuestDB's CSV
/// dialect: quoted header and strings, microsecond ISO timestamps).
const QUESTDB_BODY: &str = "\"sensor\",\"ts\",\"value\",\"quality\"\r\n\"hankou-wl\",\"2020-07-12T00:00:00.000000Z\",27.1,1\r\n\"hankou-wl\",\"2020-07-12T00:05:00.000000Z\",27.15,2\r\n\"gone-wl\",\"2020-07-12T00:05:00.000000Z\",1.0,2\r\n";

#[test]
fn questdb_export_is_read_over_http_from_a_recorded_answer() {
    // No QuestDB runs here: a local listener plays back a recorded answer.
    let (head, tail) = QUESTDB_BODY.split_at(60);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );
    let (addr, server) = serve_once(answer.into_bytes());
    let mut opts = InputOptions::new(Format::Questdb);
    opts.from = Some(Timestamp::parse_rfc3339("2020-07-12T00:00:00Z").unwrap());
    assert_eq!(Format::guess(&addr).unwrap(), Format::Questdb);
    let loaded = input::load(&addr, &opts, &registry()).unwrap();
    assert_eq!(values(&loaded.readings), [(1_594_512_000_000, 27.1), (1_594_512_300_000, 27.15)]);
    assert_eq!(loaded.rejected.len(), 1);
    assert!(loaded.rejected[0].reason.contains("gone-wl"));
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /exp?query=SELECT%20sensor%2C%20ts%2C%20value%2C%20quality%20FROM%20readings%20WHERE%20ts%20%3E%3D%20%272020-07-12T00%3A00%3A00.000Z%27"), "{request}");
    assert_eq!(
        input::questdb_query(&opts),
        "SELECT sensor, ts, value, quality FROM readings WHERE ts >= '2020-07-12T00:00:00.000Z' ORDER BY ts"
    );

    let (addr, _server) = serve_once(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 43\r\n\r\n{\"error\":\"table does not exist [readings]\"}"
            .to_vec(),
    );
    let err = input::load(&addr, &InputOptions::new(Format::Questdb), &registry()).unwrap_err();
    assert!(format!("{err:#}").contains("400") && format!("{err:#}").contains("table does not exist"), "{err:#}");
}

#[test]
fn splitting_sites_over_engines_gives_the_same_alerts() {
    let reg = Registry::from_toml(&std::fs::read_to_string(fixture("registry.toml")).unwrap()).unwrap();
    let rules = RuleSet::from_toml(&std::fs::read_to_string(fixture("rules.toml")).unwrap()).unwrap();
    let loaded = input::load(&fixture("levels.csv"), &InputOptions::new(Format::Yearbook), &reg).unwrap();
    let one = hindcast::run(&loaded.readings, &rules, &reg, &RunOptions::default()).unwrap();
    let two = hindcast::run(&loaded.readings, &rules, &reg, &RunOptions { jobs: 2, ..RunOptions::default() }).unwrap();
    let ids = |o: &riskwatch_replay::Outcome| {
        let mut v: Vec<String> = o.events.iter().map(|e| e.event_id.clone()).collect();
        v.sort();
        v
    };
    assert!(one.events.len() > 16);
    assert_eq!(ids(&one), ids(&two));
    assert!(two.events.windows(2).all(|w| w[0].ts <= w[1].ts), "merged in event-time order");
    assert_eq!((one.readings, one.span), (two.readings, two.span));
}
