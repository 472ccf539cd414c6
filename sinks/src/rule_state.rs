//! The rules host's saved state on the embedded wiring: a SQLite file of its own next to the
//! store (`store.db.state`), written by its own thread.
//!
//! Each sensor's state is a row, so a save writes only the sensors that changed since the last
//! one (`riskwatch_rules::RulesHost::snapshot_changes`), plus one row for the rest (open alerts,
//! composites, the drill, the position in the input journal the state covers). A file of its
//! own, because saving tens of thousands of rows must not hold up the store's commits, which
//! alerts wait for. Once a save is committed the writer reports its journal position, and the
//! store drops the journal entries it covers; until then they stay, so a crash at any moment
//! leaves a saved state and every input after it. "Committed" means on disk as surely as the
//! store's commits are: with the store's default (`synchronous = FULL`) each save is synced
//! before the store is told to drop the entries, so a power failure cannot keep the entries'
//! deletion (the store syncs every commit) and lose the save.

use crate::sqlite::{StoreError, Synchronous};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tracing::error;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS host_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), saved_at INTEGER NOT NULL, position INTEGER NOT NULL,
    snapshot TEXT NOT NULL);
-- A rowid table: a sensor's state is ~1-2 KB, too large for a WITHOUT ROWID table's pages
-- (every row spilled into an overflow page: 4x the file size and the write time).
CREATE TABLE IF NOT EXISTS sensor_state (sensor TEXT PRIMARY KEY, state TEXT NOT NULL);
";

/// The state file of the store at `db`.
pub fn state_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".state");
    PathBuf::from(p)
}

/// Each saved sensor's (id, state JSON), serialised one at a time as the save writes them: a
/// save of every sensor holds one sensor's JSON at a time, not all of them (a burst that
/// touched every sensor of a large registry otherwise held every sensor's JSON at once).
pub type SensorRows = Box<dyn Iterator<Item = Result<(String, String), String>> + Send>;

/// One save: the snapshot without its sensors (serialised), and the sensors' states.
pub struct StateRows {
    /// Whether the sensors are all of them (any other saved sensor is forgotten).
    pub full: bool,
    /// The rest of the snapshot (JSON).
    pub meta: String,
    /// The sensors saved.
    pub sensors: SensorRows,
}

/// What the saved state was when loaded.
#[derive(Debug)]
pub struct LoadedState {
    /// The rest of the snapshot (JSON).
    pub meta: String,
    /// Each sensor's state (JSON).
    pub sensors: Vec<String>,
}

/// The state file.
pub struct StateFile {
    conn: Connection,
}

impl StateFile {
    /// Opens (creating) the file, each save synced ([`Synchronous::Full`]).
    pub fn open(path: &Path) -> Result<StateFile, StoreError> {
        Self::open_with(path, Synchronous::Full)
    }

    /// Opens (creating) the file with the store's durability of commits: a save must reach the
    /// disk at least as surely as the store's deletion of the journal entries it covers, or a
    /// power failure could leave neither the save nor those inputs. `Full`: one sync per save
    /// (every few seconds). `Normal`: saves are synced at checkpoints, as the store's commits.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<StateFile, StoreError> {
        // A save of thousands of sensors is hundreds of WAL frames: gathered into few write
        // calls, as the store's (`wal_writes`).
        let conn = crate::wal_writes::open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(synchronous.pragma())?;
        Ok(StateFile { conn })
    }

    /// When saves reach the disk, as SQLite reports it for the connection.
    pub fn synchronous(&self) -> Result<Synchronous, StoreError> {
        Synchronous::of(&self.conn)
    }

    /// The state saved last, if any.
    pub fn load(&self) -> Result<Option<LoadedState>, StoreError> {
        let meta: Option<String> = {
            let mut st = self.conn.prepare("SELECT snapshot FROM host_state WHERE id = 1")?;
            let mut rows = st.query([])?;
            match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            }
        };
        let Some(meta) = meta else { return Ok(None) };
        let mut st = self.conn.prepare("SELECT state FROM sensor_state")?;
        let sensors = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(Some(LoadedState { meta, sensors }))
    }

    /// Writes one save in one transaction (none of it if a sensor's state cannot be
    /// serialised).
    pub fn save(&mut self, position: u64, rows: StateRows) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if rows.full {
            tx.execute("DELETE FROM sensor_state", [])?;
        }
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO sensor_state (sensor, state) VALUES (?1, ?2)")?;
            for row in rows.sensors {
                let (sensor, state) = row.map_err(StoreError::Serialise)?;
                st.execute(params![sensor, state])?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO host_state (id, saved_at, position, snapshot) VALUES (1, ?1, ?2, ?3)",
            params![riskwatch_core::Timestamp::now().millis(), position as i64, rows.meta],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// A save handed to the writer: a copy of the state taken on the rules stage, serialised on
/// the writer's thread.
pub struct StateSave {
    position: u64,
    serialise: Box<dyn FnOnce() -> Result<StateRows, String> + Send>,
}

impl StateSave {
    /// The state covering the journal up to `position`, serialised by `f`.
    pub fn new(position: u64, f: impl FnOnce() -> Result<StateRows, String> + Send + 'static) -> Self {
        StateSave { position, serialise: Box::new(f) }
    }
}

/// The state file's writer thread: one save at a time.
pub struct StateWriter {
    tx: std::sync::mpsc::Sender<StateSave>,
    handle: JoinHandle<()>,
    in_flight: Arc<AtomicUsize>,
    lost: Arc<AtomicBool>,
}

impl StateWriter {
    /// Starts the writer; `saved(position)` is called after each committed save, `took` with
    /// how long writing it took.
    pub fn start(
        mut file: StateFile,
        saved: Box<dyn Fn(u64) + Send>,
        took: Box<dyn Fn(std::time::Duration) + Send>,
    ) -> Result<StateWriter, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<StateSave>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicBool::new(false));
        let (n, l) = (Arc::clone(&in_flight), Arc::clone(&lost));
        let handle = std::thread::Builder::new()
            .name("rule-state-writer".into())
            .spawn(move || {
                crate::background_priority();
                for save in rx {
                    let began = std::time::Instant::now();
                    let written = (save.serialise)()
                        .map_err(|e| e.to_string())
                        .and_then(|rows| file.save(save.position, rows).map_err(|e| e.to_string()));
                    match written {
                        Ok(()) => {
                            took(began.elapsed());
                            saved(save.position);
                        }
                        // The next save must be a whole one: this one's changes are not on disk.
                        Err(e) => {
                            error!(error = %e, "could not save the rule state; the next save writes it whole");
                            l.store(true, Ordering::Release);
                        }
                    }
                    n.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(StateWriter { tx, handle, in_flight, lost })
    }

    /// Whether a save is still being written (the next one waits: a save holds only what
    /// changed since the one before, so none may be skipped).
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether a save failed since the last call (the next save must then be a whole one).
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }

    /// Hands a save over.
    pub fn save(&self, save: StateSave) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(save).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Waits for every save handed over to be written, and stops.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}
