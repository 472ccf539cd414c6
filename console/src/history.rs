//! Readings history for the alert detail chart, read from the pipeline's own store (the SQLite
//! file of `riskwatch run` / `demo`), so a chart shows the readings around the alert — also for
//! alerts older than the console process, and replayed ones — not only those the console saw
//! live.
//!
//! The store is opened read-only, one short query per chart; SQLite's WAL lets the writer go on.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

    /// Up to `limit` readings of `sensor` at or before `until_ms` (epoch ms), oldest first, as
    /// (ts, value). Readings without a scalar value (waveforms, displacements) are left out.
    pub fn readings(&self, sensor: &str, until_ms: i64, limit: usize) -> Result<Vec<(i64, f64)>, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("opening the store {}: {e}", self.path.display()))?;
            let has_table = conn
                .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'", [], |_| Ok(()))
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
}
