//! Readings history for the alert detail chart, read from the pipeline's own store, so a chart
//! shows the readings around the alert — also for alerts older than the console process, and
//! replayed ones — not only those the console saw live:
//!
//! - the embedded wiring's SQLite file (`riskwatch run` / `demo`), opened read-only, one short
//!   query per chart (SQLite's WAL lets the writer go on);
//! - QuestDB on the production path, over its HTTP `/exp` endpoint (CSV), with reqwest.

use riskwatch_core::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Where chart history comes from.
pub enum History {
    /// A riskwatch SQLite store.
    Sqlite(StoreHistory),
    /// QuestDB's HTTP endpoint.
    Questdb(QuestdbHistory),
}

impl History {
    /// Up to `limit` readings of `sensor` at or before `until_ms` (epoch ms), oldest first, as
    /// (ts, value); readings without a scalar value are left out.
    pub async fn readings(&self, sensor: &str, until_ms: i64, limit: usize) -> Result<Vec<(i64, f64)>, String> {
        match self {
            History::Sqlite(h) => h.readings(sensor, until_ms, limit),
            History::Questdb(h) => h.readings(sensor, until_ms, limit).await,
        }
    }
}

/// The readings table of a riskwatch SQLite store.
pub struct StoreHistory {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl StoreHistory {
    /// A reader of the store at `path` (opened on first use: the pipeline may create it later).
    pub fn new(path: &Path) -> StoreHistory {
        StoreHistory { path: path.to_path_buf(), conn: Mutex::new(None) }
    }

    /// See [`History::readings`].
    pub fn readings(&self, sensor: &str, until_ms: i64, limit: usize) -> Result<Vec<(i64, f64)>, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("opening the store {}: {e}", self.path.display()))?;
            let has_table = conn
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = 'readings'",
                    [],
                    |_| Ok(()),
                )
                .optional()
                .map_err(|e| e.to_string())?
                .is_some();
            if !has_table {
                return Err(format!("{} is not a riskwatch store (no readings table)", self.path.display()));
            }
            *guard = Some(conn);
        }
        let conn = guard.as_ref().expect("opened above");
        // Newest first from `until_ms` back, so SQLite walks the time key from there and stops
        // after `limit` rows of this sensor.
        let mut stmt = conn
            .prepare_cached(
                "SELECT ts, value FROM readings WHERE sensor = ?1 AND ts <= ?2 AND value IS NOT NULL \
                 ORDER BY ts DESC LIMIT ?3",
            )
            .map_err(|e| e.to_string())?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(rusqlite::params![sensor, until_ms, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))
            .map_err(|e| e.to_string())?;
        let mut v = rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        v.reverse();
        Ok(v)
    }
}

/// QuestDB's `readings` table (docs/questdb.md), read over HTTP.
pub struct QuestdbHistory {
    base: String,
    http: reqwest::Client,
}

impl QuestdbHistory {
    /// A reader of QuestDB at `base` (`http://host:9000`; https works too).
    pub fn new(base: &str) -> Result<QuestdbHistory, String> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--questdb {base:?}: expected an http:// or https:// address"));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        Ok(QuestdbHistory { base, http })
    }

    /// The SQL for one chart: `sensor` is a registry id (letters, digits, `-_.`), quoted anyway.
    pub fn query(sensor: &str, until_ms: i64, limit: usize) -> String {
        let until = if until_ms == i64::MAX { None } else { Some(Timestamp(until_ms).to_rfc3339()) };
        format!(
            "SELECT ts, value FROM readings WHERE sensor = '{}'{} ORDER BY ts DESC LIMIT {limit}",
            sensor.replace('\'', "''"),
            until.map(|t| format!(" AND ts <= '{t}'")).unwrap_or_default()
        )
    }

    /// See [`History::readings`].
    pub async fn readings(&self, sensor: &str, until_ms: i64, limit: usize) -> Result<Vec<(i64, f64)>, String> {
        let answer = self
            .http
            .get(format!("{}/exp", self.base))
            .query(&[("query", Self::query(sensor, until_ms, limit))])
            .send()
            .await
            .map_err(|e| format!("QuestDB at {}: {e}", self.base))?;
        let status = answer.status();
        let body = answer.text().await.map_err(|e| format!("QuestDB at {}: {e}", self.base))?;
        if !status.is_success() {
            return Err(format!("QuestDB answered {status}: {}", body.chars().take(300).collect::<String>()));
        }
        let mut v = parse_export(&body)?;
        v.reverse();
        Ok(v)
    }
}

/// QuestDB's CSV export of `ts, value`: a quoted header, then ISO timestamps (microseconds)
/// and numbers; an empty value (NULL) is skipped.
fn parse_export(body: &str) -> Result<Vec<(i64, f64)>, String> {
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (ts, value) = line.split_once(',').ok_or_else(|| format!("QuestDB export line {}: {line:?}", i + 1))?;
        let ts = Timestamp::parse_rfc3339(ts.trim_matches('"'))
            .map_err(|e| format!("QuestDB export line {}: time {ts:?}: {e}", i + 1))?;
        let value = value.trim().trim_matches('"');
        if value.is_empty() || value.eq_ignore_ascii_case("null") {
            continue;
        }
        let value: f64 = value.parse().map_err(|_| format!("QuestDB export line {}: value {value:?}", i + 1))?;
        out.push((ts.millis(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_sensors_readings_up_to_a_time_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE readings (sensor TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
             value REAL, value_json TEXT, unit TEXT NOT NULL, quality INTEGER NOT NULL, PRIMARY KEY (ts, sensor)) WITHOUT ROWID;",
        )
        .unwrap();
        for (ts, sensor, v) in [(1, "a", 1.0), (2, "b", 9.0), (3, "a", 2.0), (4, "a", 3.0), (5, "a", 4.0)] {
            c.execute(
                "INSERT INTO readings VALUES (?1, 's', 'water_level', ?2, ?3, NULL, 'm', 0)",
                rusqlite::params![sensor, ts, v],
            )
            .unwrap();
        }
        let h = StoreHistory::new(&path);
        assert_eq!(h.readings("a", 4, 10).unwrap(), vec![(1, 1.0), (3, 2.0), (4, 3.0)]);
        assert_eq!(h.readings("a", i64::MAX, 2).unwrap(), vec![(4, 3.0), (5, 4.0)], "the latest two");
        assert!(h.readings("zzz", i64::MAX, 2).unwrap().is_empty());
        let missing = StoreHistory::new(&dir.path().join("nope.db"));
        assert!(missing.readings("a", 1, 1).is_err(), "a store that is not there is an error, not a panic");
    }

    /// No QuestDB server runs here (victoria-metrics stands in for its line protocol only): a
    /// local listener plays back an answer in QuestDB's `/exp` CSV dialect and records the
    /// request, as replay's QuestDB input test does.
    #[tokio::test]
    async fn questdb_history_is_asked_for_one_sensor_newest_first_and_read_back_oldest_first() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = "\"ts\",\"value\"\r\n\"2020-07-12T00:10:00.000000Z\",27.3\r\n\"2020-07-12T00:05:00.000000Z\",\r\n\"2020-07-12T00:00:00.000000Z\",27.1\r\n";
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.unwrap();
            let answer =
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        let h = QuestdbHistory::new(&format!("http://{addr}/")).unwrap();
        let until = Timestamp::parse_rfc3339("2020-07-12T01:00:00Z").unwrap().millis();
        let got = h.readings("hankou-wl", until, 100).await.unwrap();
        assert_eq!(got, vec![(1_594_512_000_000, 27.1), (1_594_512_600_000, 27.3)], "oldest first, the NULL left out");
        let request = server.await.unwrap();
        let first = request.lines().next().unwrap();
        assert!(first.starts_with("GET /exp?query=SELECT"), "{first}");
        assert!(first.contains("hankou-wl"), "{first}");
        assert_eq!(
            QuestdbHistory::query("hankou-wl", until, 100),
            "SELECT ts, value FROM readings WHERE sensor = 'hankou-wl' AND ts <= '2020-07-12T01:00:00.000Z' ORDER BY ts DESC LIMIT 100"
        );
        assert_eq!(
            QuestdbHistory::query("x'y", i64::MAX, 5),
            "SELECT ts, value FROM readings WHERE sensor = 'x''y' ORDER BY ts DESC LIMIT 5"
        );
        assert!(QuestdbHistory::new("questdb:9000").is_err(), "an address without a scheme is refused");
        assert!(parse_export("\"ts\",\"value\"\nnot a time,1\n").is_err(), "a bad line is an error, not a panic");
    }
}
