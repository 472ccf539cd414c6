//! `riskwatch sink` checks its QuestDB tables before the first write: a table without its dedup
//! keys (or created by ILP with the wrong designated timestamp) stops it with the statement that
//! fixes it; missing tables are created from deploy/questdb/schema.sql (or, with
//! `tables = "check"`, refused); an endpoint that is not QuestDB is refused unless
//! `tables = "unchecked"`.
//!
//! There is no QuestDB on the test machine. The SQL side here is a stand-in answering `/exec`
//! the way QuestDB 8.2 documents it (`tables()`, `table_columns()`, DDL answered `{"ddl":"OK"}`,
//! errors as HTTP 400 with `{"error": …}`); the "not QuestDB" case uses a real victoria-metrics.

mod common;
mod servers;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use riskwatch_sinks::questdb_tables::{tables_of, SCHEMA_SQL};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A table as the stand-in holds it: (column, designated, upsertKey) per column.
type Columns = Vec<(String, bool, bool)>;

#[derive(Default)]
struct Db {
    tables: BTreeMap<String, Columns>,
    /// Every DDL statement received, in order.
    ddl: Vec<String>,
}

/// Columns of a schema table as QuestDB would report them once created from the schema.
fn as_created(name: &str) -> Columns {
    let t = tables_of(SCHEMA_SQL).into_iter().find(|t| t.name == name).expect("in schema");
    let mut cols = vec![(t.timestamp.clone(), true, t.upsert_keys.contains(&t.timestamp))];
    for k in t.upsert_keys.iter().filter(|k| **k != t.timestamp) {
        cols.push((k.clone(), false, true));
    }
    cols.push(("value".into(), false, false));
    cols
}

async fn exec(State(db): State<Arc<Mutex<Db>>>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let query = q.get("query").cloned().unwrap_or_default();
    let mut db = db.lock().unwrap();
    let error = |msg: String| (StatusCode::BAD_REQUEST, Json(json!({"query": query, "error": msg, "position": 0})));
    if query == "SELECT * FROM tables()" {
        let rows: Vec<Value> = db
            .tables
            .iter()
            .enumerate()
            .map(|(i, (name, cols))| {
                let ts = cols.iter().find(|c| c.1).map(|c| c.0.clone());
                let dedup = cols.iter().any(|c| c.2);
                json!([i + 1, name, ts, "DAY", 500000, 600000000, true, format!("{name}~{}", i + 1), dedup])
            })
            .collect();
        let columns = [
            ("id", "INT"),
            ("table_name", "STRING"),
            ("designatedTimestamp", "STRING"),
            ("partitionBy", "STRING"),
            ("maxUncommittedRows", "INT"),
            ("o3MaxLag", "LONG"),
            ("walEnabled", "BOOLEAN"),
            ("directoryName", "STRING"),
            ("dedup", "BOOLEAN"),
        ];
        let columns: Vec<Value> = columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
        let count = rows.len();
        return (
            StatusCode::OK,
            Json(json!({"query": query, "columns": columns, "timestamp": -1, "dataset": rows, "count": count})),
        );
    }
    if let Some(rest) = query.strip_prefix("SELECT * FROM table_columns('") {
        let name = rest.trim_end_matches("')");
        let Some(cols) = db.tables.get(name) else {
            return error(format!("table does not exist [table={name}]"));
        };
        let rows: Vec<Value> = cols
            .iter()
            .map(|(c, designated, upsert)| json!([c, "SYMBOL", false, 0, true, 128, designated, upsert]))
            .collect();
        let columns = [
            ("column", "STRING"),
            ("type", "STRING"),
            ("indexed", "BOOLEAN"),
            ("indexBlockCapacity", "INT"),
            ("symbolCached", "BOOLEAN"),
            ("symbolCapacity", "INT"),
            ("designated", "BOOLEAN"),
            ("upsertKey", "BOOLEAN"),
        ];
        let columns: Vec<Value> = columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
        let count = rows.len();
        return (
            StatusCode::OK,
            Json(json!({"query": query, "columns": columns, "timestamp": -1, "dataset": rows, "count": count})),
        );
    }
    if query.starts_with("CREATE TABLE IF NOT EXISTS") {
        let Some(t) = tables_of(&query).into_iter().next() else {
            return error("unparsable CREATE TABLE".into());
        };
        db.ddl.push(query.clone());
        let cols = as_created(&t.name);
        db.tables.entry(t.name).or_insert(cols);
        return (StatusCode::OK, Json(json!({"ddl": "OK"})));
    }
    error(format!("unexpected query: {query}"))
}

/// The stand-in on a free port, with its own runtime on a thread.
fn stand_in(db: Arc<Mutex<Db>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route("/exec", axum::routing::get(exec)).with_state(db);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// `riskwatch sink` with its stderr collected line by line; Kafka is never reached (the table
/// check comes first).
struct Sink {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sink {
    fn start(dir: &Path, questdb_port: u16, tables: Option<&str>) -> Sink {
        std::fs::write(dir.join("registry.toml"), common::gas_plant::REGISTRY).unwrap();
        std::fs::write(dir.join("rules.toml"), common::gas_plant::RULES).unwrap();
        let policy = tables.map(|t| format!("tables = \"{t}\"\n")).unwrap_or_default();
        let config = format!(
            "registry = \"registry.toml\"\nrules = \"rules.toml\"\ncomponents = [\"sink\"]\n\
             [kafka]\nbrokers = \"127.0.0.1:{}\"\n\
             [questdb]\nconf = \"http::addr=127.0.0.1:{questdb_port};\"\n{policy}",
            servers::free_port()
        );
        std::fs::write(dir.join("sink.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
            .args(["sink", "--config", "sink.toml"])
            .current_dir(dir)
            .env("RISKWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sink { child, lines, seen: Vec::new() }
    }

    /// Waits for the process to exit; its code and everything it wrote to stderr.
    fn exit(mut self, within: Duration) -> (i32, String) {
        let deadline = Instant::now() + within;
        loop {
            self.seen.extend(self.lines.try_iter());
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; take what is left.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(l);
                }
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the sink did not stop within {within:?}; stderr:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return;
            }
        }
        panic!("no stderr line with {needle:?} within {within:?}:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_table_without_dedup_keys_or_made_by_ilp_stops_the_sink_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Mutex::new(Db::default()));
    {
        let mut d = db.lock().unwrap();
        for t in tables_of(SCHEMA_SQL) {
            let cols = as_created(&t.name);
            d.tables.insert(t.name, cols);
        }
        // Created by hand without DEDUP: same columns, no upsert keys.
        for c in d.tables.get_mut("readings").unwrap() {
            c.2 = false;
        }
        // Created by the first ILP row: designated timestamp `timestamp`, no dedup.
        d.tables.insert(
            "gnss_readings".into(),
            vec![("sensor".into(), false, false), ("e".into(), false, false), ("timestamp".into(), true, false)],
        );
    }
    let port = stand_in(Arc::clone(&db));
    let (code, stderr) = Sink::start(dir.path(), port, None).exit(Duration::from_secs(30));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("readings: deduplication keys are [none], not [ts, sensor]")
            && stderr.contains("ALTER TABLE readings DEDUP ENABLE UPSERT KEYS(ts, sensor);"),
        "names the table and the statement that fixes it:\n{stderr}"
    );
    assert!(
        stderr.contains("gnss_readings: its designated timestamp is `timestamp` instead of ts"),
        "a table ILP created on its own is named too:\n{stderr}"
    );
    for fine in ["alert_events:", "waveform_packets:", "exercise_readings:"] {
        assert!(!stderr.contains(fine), "{fine} is as it should be, yet named:\n{stderr}");
    }
    assert!(db.lock().unwrap().ddl.is_empty(), "nothing is created or altered behind the operator's back");
}

#[test]
fn missing_tables_are_created_from_the_schema_then_found_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Mutex::new(Db::default()));
    let port = stand_in(Arc::clone(&db));
    let schema = tables_of(SCHEMA_SQL);
    let mut sink = Sink::start(dir.path(), port, None);
    wait_until("every table created", Duration::from_secs(30), || db.lock().unwrap().ddl.len() >= schema.len());
    sink.wait_for("QuestDB tables have their dedup keys", Duration::from_secs(10));
    drop(sink);
    {
        let d = db.lock().unwrap();
        let mut created: Vec<&str> = d.ddl.iter().map(String::as_str).collect();
        let mut wanted: Vec<&str> = schema.iter().map(|t| t.create.as_str()).collect();
        created.sort();
        wanted.sort();
        assert_eq!(created, wanted, "each table once, with the schema's statement (dedup keys included)");
        for stmt in &d.ddl {
            assert!(stmt.contains("DEDUP UPSERT KEYS("), "{stmt}");
        }
    }
    // Tables managed by their owners: `check` creates nothing and is satisfied.
    let mut sink = Sink::start(dir.path(), port, Some("check"));
    sink.wait_for("QuestDB tables have their dedup keys", Duration::from_secs(30));
    drop(sink);
    assert_eq!(db.lock().unwrap().ddl.len(), schema.len(), "nothing created the second time");
}

#[test]
fn with_tables_check_a_missing_table_is_refused_naming_the_schema_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Mutex::new(Db::default()));
    db.lock().unwrap().tables.insert("alert_events".into(), as_created("alert_events"));
    let port = stand_in(Arc::clone(&db));
    let (code, stderr) = Sink::start(dir.path(), port, Some("check")).exit(Duration::from_secs(30));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("readings: missing; create it with its statement in deploy/questdb/schema.sql"),
        "{stderr}"
    );
    assert!(!stderr.contains("alert_events:"), "{stderr}");
    assert!(db.lock().unwrap().ddl.is_empty());
}

#[test]
fn a_line_protocol_endpoint_that_is_not_questdb_is_refused_unless_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let vm = servers::victoria_metrics(dir.path());
    let (code, stderr) = Sink::start(dir.path(), vm.port, None).exit(Duration::from_secs(30));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not look like QuestDB's SQL endpoint")
            && stderr.contains("questdb.tables = \"unchecked\""),
        "{stderr}"
    );
    let mut sink = Sink::start(dir.path(), vm.port, Some("unchecked"));
    sink.wait_for("tables not checked", Duration::from_secs(30));
}
