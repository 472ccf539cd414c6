//! How the SQLite store keeps readings.
//!
//! A store made by this version keeps each reading as a row of integers and a number —
//! `reading_rows (ts, sid, aid, value, value_json, quality)`, keyed `(ts, sid)` — with the
//! sensor's id in `sensor_names (sid, sensor)` and its site, kind and unit in
//! `sensor_attributes (aid, site, kind, unit)`, each written once. The view `readings` joins
//! them back into the columns every reader uses (`sensor, site, kind, ts, value, value_json,
//! unit, quality`), so SQL over the store (the console, `replay --from-sqlite`, the `sqlite3`
//! shell) reads it as before. (`exercise_readings`, a drill's readings, likewise over
//! `exercise_reading_rows`.)
//!
//! Why: a row keyed by text and carrying four strings cost ~1.3 µs of the writer's CPU per
//! reading and 19 MB per 310 000 readings; keyed by integers ~0.95 µs and 8 MB
//! (docs/benchmarks.md, fourteenth round). The key is still event time and sensor, so a
//! re-delivered reading replaces itself. A sensor whose site, kind or unit changes in the
//! registry gets a new `aid` on its later rows: history keeps what each reading was stored with.
//!
//! Stores made before keep their `readings` table of text rows and are written as before.

use riskwatch_core::reading::Value;
use riskwatch_core::wire::value_json;
use riskwatch_core::{Reading, SensorId};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Transaction};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The tables and views of a store made by this version.
const COMPACT: &str = "
CREATE TABLE IF NOT EXISTS sensor_names (sid INTEGER PRIMARY KEY, sensor TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sensor_attributes (
    aid INTEGER PRIMARY KEY, site TEXT NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL,
    UNIQUE (site, kind, unit));
CREATE TABLE IF NOT EXISTS reading_rows (
    ts INTEGER NOT NULL, sid INTEGER NOT NULL, aid INTEGER NOT NULL,
    value REAL, value_json TEXT, quality INTEGER NOT NULL,
    PRIMARY KEY (ts, sid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exercise_reading_rows (
    ts INTEGER NOT NULL, sid INTEGER NOT NULL, aid INTEGER NOT NULL,
    value REAL, value_json TEXT, quality INTEGER NOT NULL,
    PRIMARY KEY (ts, sid)) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS readings AS
    SELECT n.sensor AS sensor, a.site AS site, a.kind AS kind, r.ts AS ts, r.value AS value,
           r.value_json AS value_json, a.unit AS unit, r.quality AS quality
    FROM reading_rows r JOIN sensor_names n ON n.sid = r.sid JOIN sensor_attributes a ON a.aid = r.aid;
CREATE VIEW IF NOT EXISTS exercise_readings AS
    SELECT n.sensor AS sensor, a.site AS site, a.kind AS kind, r.ts AS ts, r.value AS value,
           r.value_json AS value_json, a.unit AS unit, r.quality AS quality
    FROM exercise_reading_rows r JOIN sensor_names n ON n.sid = r.sid JOIN sensor_attributes a ON a.aid = r.aid;
";

/// The text-row tables of stores made before (kept for them; `IF NOT EXISTS` adds a missing one).
const TEXT_ROWS: &str = "
CREATE TABLE IF NOT EXISTS readings (
    sensor TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
    value REAL, value_json TEXT, unit TEXT NOT NULL, quality INTEGER NOT NULL,
    PRIMARY KEY (ts, sensor)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exercise_readings (
    sensor TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
    value REAL, value_json TEXT, unit TEXT NOT NULL, quality INTEGER NOT NULL,
    PRIMARY KEY (ts, sensor)) WITHOUT ROWID;
";

/// Which of the two layouts a store has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Integer rows behind the `readings` view (stores made by this version).
    Compact,
    /// A `readings` table of text rows (stores made before).
    TextRows,
}

/// What the writer knows of a sensor: its ids in the store, and the attributes its `aid` is for.
struct Known {
    sid: i64,
    aid: i64,
    site: riskwatch_core::SiteId,
    kind: riskwatch_core::SensorKind,
    unit: Arc<str>,
}

/// Writes readings in the store's layout.
pub struct ReadingsTable {
    layout: Layout,
    /// By sensor id, for the compact layout; only ever holds ids committed or written in the
    /// transaction in hand ([`ReadingsTable::forget`] after a failed one).
    known: FxHashMap<SensorId, Known>,
}

impl ReadingsTable {
    /// Finds the layout of the store on `conn`, creating the tables of a new store.
    pub fn open(conn: &Connection) -> rusqlite::Result<ReadingsTable> {
        let text_rows = conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'", [], |_| Ok(()))
            .optional()?
            .is_some();
        let layout = if text_rows {
            conn.execute_batch(TEXT_ROWS)?;
            Layout::TextRows
        } else {
            conn.execute_batch(COMPACT)?;
            Layout::Compact
        };
        Ok(ReadingsTable { layout, known: FxHashMap::default() })
    }

    /// The store's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Drops what the writer knows of the store's ids: after a transaction that did not
    /// commit, the ids it added are gone.
    pub fn forget(&mut self) {
        self.known.clear();
    }

    /// A writer of readings in the transaction `tx`.
    pub fn writer<'t>(&'t mut self, tx: &'t Transaction<'t>) -> rusqlite::Result<RowWriter<'t>> {
        let (live, drill) = match self.layout {
            Layout::TextRows => (
                "INSERT OR REPLACE INTO readings (sensor, site, kind, ts, value, value_json, unit, quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                "INSERT OR REPLACE INTO exercise_readings (sensor, site, kind, ts, value, value_json, unit, quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            ),
            Layout::Compact => (
                "INSERT OR REPLACE INTO reading_rows (ts, sid, aid, value, value_json, quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                "INSERT OR REPLACE INTO exercise_reading_rows (ts, sid, aid, value, value_json, quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            ),
        };
        Ok(RowWriter { live: tx.prepare_cached(live)?, drill: tx.prepare_cached(drill)?, tx, table: self })
    }

    /// The reading's sensor and attribute ids, added to the store the first time they are seen.
    fn ids(&mut self, tx: &Transaction<'_>, r: &Reading) -> rusqlite::Result<(i64, i64)> {
        let known = self.known.get(&r.sensor);
        if let Some(k) = known.filter(|k| k.site == r.site && k.kind == r.kind && k.unit == r.unit) {
            return Ok((k.sid, k.aid));
        }
        let sid = match known {
            Some(k) => k.sid,
            None => id_of(
                tx,
                "SELECT sid FROM sensor_names WHERE sensor = ?1",
                "INSERT INTO sensor_names (sensor) VALUES (?1)",
                &[&r.sensor.as_str()],
            )?,
        };
        let aid = id_of(
            tx,
            "SELECT aid FROM sensor_attributes WHERE site = ?1 AND kind = ?2 AND unit = ?3",
            "INSERT INTO sensor_attributes (site, kind, unit) VALUES (?1, ?2, ?3)",
            &[&r.site.as_str(), &r.kind.as_str(), &&*r.unit],
        )?;
        let known = Known { sid, aid, site: r.site.clone(), kind: r.kind.clone(), unit: Arc::clone(&r.unit) };
        self.known.insert(r.sensor.clone(), known);
        Ok((sid, aid))
    }
}

/// Writes readings in one transaction, a drill's to the drill's table (a replayed flood never
/// mixes with the station's real history).
pub struct RowWriter<'t> {
    table: &'t mut ReadingsTable,
    tx: &'t Transaction<'t>,
    live: CachedStatement<'t>,
    drill: CachedStatement<'t>,
}

impl RowWriter<'_> {
    /// Writes (or replaces) one reading.
    pub fn insert(&mut self, r: &Reading) -> rusqlite::Result<()> {
        let (value, json) = match &r.value {
            Value::Scalar(v) => (Some(*v), None),
            _ => (None, Some(value_json(&r.value))),
        };
        let st = if r.exercise { &mut self.drill } else { &mut self.live };
        match self.table.layout {
            Layout::TextRows => st.execute(params![
                r.sensor.as_str(),
                r.site.as_str(),
                r.kind.as_str(),
                r.ts.millis(),
                value,
                json,
                &*r.unit,
                r.quality.code()
            ])?,
            Layout::Compact => {
                let (sid, aid) = self.table.ids(self.tx, r)?;
                st.execute(params![r.ts.millis(), sid, aid, value, json, r.quality.code()])?
            }
        };
        Ok(())
    }
}

/// The id `find` returns for `key`, or the rowid `add` gives it.
fn id_of(tx: &Transaction<'_>, find: &str, add: &str, key: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<i64> {
    if let Some(id) = tx.prepare_cached(find)?.query_row(key, |row| row.get(0)).optional()? {
        return Ok(id);
    }
    tx.prepare_cached(add)?.execute(key)?;
    Ok(tx.last_insert_rowid())
}
