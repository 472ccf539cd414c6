//! The embedded store: SQLite with WAL, written in batched transactions from one thread.
//!
//! Tables: `readings` (primary key event time + sensor, so a re-delivered reading replaces
//! itself; integer rows behind a view in stores made by this version, see `readings_table`),
//! `alert_events` (primary key event id), `dead_letters` (reason + raw bytes), `commands` (the
//! audit trail), and `input_journal`: every input of the rules host since its last saved state
//! (`rule_state`), written in the same transactions as the readings, so what was acknowledged
//! to a gateway is always in the journal. (`engine_state` holds the engine state of stores
//! written before the host kept its state apart; it is read once, to migrate.)

pub use crate::readings_table::Layout;
use crate::readings_table::ReadingsTable;
use riskwatch_core::{AlertEvent, DeadLetter, Reading};
use rusqlite::{params, Connection};
use std::path::Path;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, watch};
use tracing::error;

/// Something to store.
#[derive(Debug)]
pub enum StoreItem {
    /// Validated readings.
    Readings(Vec<Reading>),
    /// Alert events.
    Events(Vec<AlertEvent>),
    /// A rejected message or item.
    DeadLetter(DeadLetter),
    /// An officer's command and what became of it (the audit trail).
    Command(CommandRecord),
    /// One input of the rules host (an entry of the input journal), recorded before the events
    /// it caused are published.
    Input {
        /// Its position in the host's log (1 for the first input ever).
        position: u64,
        /// The input as the host encodes it.
        body: Vec<u8>,
    },
    /// The rules host's state up to this journal position is saved (in its state file):
    /// the journal entries it covers are dropped.
    Prune(u64),
    /// Called once everything sent before it is committed (never, if the commit fails): how
    /// the embedded pipeline acknowledges an MQTT message only when its readings are on disk.
    Committed(OnCommit),
}

/// A callback run after a successful commit (see [`StoreItem::Committed`]).
pub struct OnCommit(Box<dyn FnOnce() + Send>);

impl OnCommit {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        OnCommit(Box::new(f))
    }
}

impl std::fmt::Debug for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnCommit")
    }
}

impl StoreItem {
    /// Readings it holds.
    fn readings(&self) -> usize {
        match self {
            StoreItem::Readings(r) => r.len(),
            _ => 0,
        }
    }
}

/// One received lifecycle command, for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    /// Arrival time (wall clock).
    pub received_at: riskwatch_core::Timestamp,
    /// The command as received.
    pub payload: Vec<u8>,
    /// `ok`, or the error code.
    pub outcome: String,
    /// Error text, when refused.
    pub error: Option<String>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (disk full, locked, corrupt…).
    #[error("SQLite store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread ended unexpectedly.
    #[error("SQLite writer thread panicked")]
    WriterGone,
    /// Something to be written could not be serialised (the rule state).
    #[error("serialising for the store: {0}")]
    Serialise(String),
}

/// Row counts written by a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Reading rows written (including replacements of duplicates).
    pub readings: u64,
    /// Alert event rows newly inserted.
    pub events: u64,
    /// Dead-letter rows inserted.
    pub dead_letters: u64,
    /// Commands logged.
    pub commands: u64,
}

const SCHEMA: &str = "
-- New stores use 16 KiB pages: a commit writes every page it touched into the WAL, so larger
-- pages mean fewer frames per reading (4 KiB pages: ~24 frames for a commit of ~260
-- single-reading messages). The frames of a commit reach the file in one write call per
-- 128 KiB (`wal_writes`; SQLite itself makes two per frame). Existing stores keep their page
-- size.
PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;
-- Readings (`readings_table`) are clustered by time, (ts, sensor): live data arrives in time
-- order, so a batch lands on the last few pages of the table instead of one page per sensor
-- (keyed (sensor, ts), every commit rewrote ~one 4 KiB page per reading into the WAL). Replay reads by time range.
-- Stores created before keep their (sensor, ts) key and work unchanged. The page cache keeps
-- what backfilled (out-of-order) readings touch in memory. No memory map: with the time-ordered
-- key it saved no measurable CPU (scripts/bench.sh parts 2a/2b, 2026-12-07), and its pages
-- counted in riskwatch's RSS as the store grew (+57 MiB over a 310 000-message burst).
PRAGMA cache_size = -8192;
PRAGMA mmap_size = 0;
PRAGMA temp_store = MEMORY;
CREATE TABLE IF NOT EXISTS alert_events (
    event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, seq INTEGER NOT NULL, rule_id TEXT NOT NULL,
    subject TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, change TEXT NOT NULL,
    level TEXT NOT NULL, previous_level TEXT, highest_level TEXT NOT NULL,
    first_ts INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,
    unit TEXT NOT NULL, message_zh TEXT NOT NULL, message_en TEXT NOT NULL, exercise INTEGER NOT NULL,
    category TEXT NOT NULL, actor TEXT, note TEXT, assignee TEXT);
CREATE INDEX IF NOT EXISTS alert_events_by_alert ON alert_events (alert_id, seq);
CREATE INDEX IF NOT EXISTS alert_events_by_time ON alert_events (ts);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    error TEXT NOT NULL, item_index INTEGER, sensor TEXT, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, payload BLOB NOT NULL,
    outcome TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS engine_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), saved_at INTEGER NOT NULL, snapshot TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS input_journal (pos INTEGER PRIMARY KEY, body BLOB NOT NULL);
";

/// Added after the first release: each event as JSON, so the retained state of open alerts can
/// be rebuilt after a restart. Rows written before have none.
const EVENT_JSON_COLUMN: &str = "ALTER TABLE alert_events ADD COLUMN event_json TEXT";

/// When a commit reaches the disk: SQLite's `synchronous` setting for the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit is synced (fsync) before it counts as done, so a reading acknowledged to a
    /// gateway survives a power failure. The default: with commits grouped (hundreds of readings
    /// per commit under load) the extra sync costs little.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: a commit survives a crash of riskwatch, but the
    /// last commits before a power failure or kernel crash can be lost, although their
    /// readings were acknowledged.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            other => Err(format!("{other:?} is not \"full\" or \"normal\"")),
        }
    }
}

impl Synchronous {
    /// What SQLite reports for `conn`.
    pub(crate) fn of(conn: &Connection) -> Result<Synchronous, StoreError> {
        let level: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA: anything below FULL is at best NORMAL.
        Ok(if level >= 2 { Synchronous::Full } else { Synchronous::Normal })
    }

    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous = FULL;",
            Synchronous::Normal => "PRAGMA synchronous = NORMAL;",
        }
    }
}

/// A SQLite store on one connection.
pub struct SqliteStore {
    conn: Connection,
    readings: ReadingsTable,
    stats: StoreStats,
    /// Journal entries up to this position are covered by a saved state and may go
    /// ([`StoreItem::Prune`]); they are deleted [`PRUNE_SLICE`] at a time, one slice per commit.
    prune_to: i64,
    /// Entries up to `prune_to` may remain.
    prune_pending: bool,
}

/// Journal entries deleted per commit at most. A save covers seconds of inputs — thousands of
/// entries under load — and deleting them all in the commit after the save held the alerts of
/// that commit for 20–50 ms (docs/benchmarks.md, eleventh round); a slice per commit costs each
/// commit well under a millisecond and keeps up with any input rate the store can take.
const PRUNE_SLICE: i64 = 256;

impl SqliteStore {
    /// Opens (creating if needed) the database file and its tables, every commit synced
    /// ([`Synchronous::Full`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Synchronous::Full)
    }

    /// Opens the store with the given durability of commits.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        // The same files, each commit's WAL frames gathered into few write calls (`wal_writes`).
        let conn = crate::wal_writes::open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(synchronous.pragma())?;
        let has_json: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('alert_events') WHERE name = 'event_json'")?.exists([])?;
        if !has_json {
            conn.execute_batch(EVENT_JSON_COLUMN)?;
        }
        let readings = ReadingsTable::open(&conn)?;
        Ok(SqliteStore { conn, readings, stats: StoreStats::default(), prune_to: 0, prune_pending: false })
    }

    /// When this store's commits reach the disk, as SQLite reports it for the connection.
    pub fn synchronous(&self) -> Result<Synchronous, StoreError> {
        Synchronous::of(&self.conn)
    }

    /// Calls `f` with each journal entry after `position`, in order, one at a time (a long tail
    /// is never held in memory whole). Returns how many there were.
    pub fn each_journal_entry(&self, after: u64, mut f: impl FnMut(u64, &[u8])) -> Result<usize, StoreError> {
        let mut st = self.conn.prepare("SELECT pos, body FROM input_journal WHERE pos > ?1 ORDER BY pos")?;
        let mut rows = st.query(params![after as i64])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let pos = row.get::<_, i64>(0)? as u64;
            let body = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            f(pos, body);
            n += 1;
        }
        Ok(n)
    }

    /// Every stored event of the given alerts, each alert's oldest first (events stored before
    /// the store kept their JSON are left out).
    pub fn events_of_alerts(&self, alert_ids: &[String]) -> Result<Vec<AlertEvent>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT event_json FROM alert_events WHERE alert_id = ?1 AND event_json IS NOT NULL ORDER BY seq",
        )?;
        let mut out = Vec::new();
        for id in alert_ids {
            let rows = st.query_map(params![id], |r| r.get::<_, String>(0))?;
            for json in rows {
                match serde_json::from_str::<AlertEvent>(&json?) {
                    Ok(e) => out.push(e),
                    Err(e) => error!(alert = %id, error = %e, "stored alert event not readable"),
                }
            }
        }
        Ok(out)
    }

    /// The engine state saved in this file by riskwatch before the rules host kept its state
    /// in a file of its own (`rule_state`), if any.
    pub fn load_snapshot(&self) -> Result<Option<String>, StoreError> {
        let mut st = self.conn.prepare("SELECT snapshot FROM engine_state WHERE id = 1")?;
        let mut rows = st.query([])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Rows written so far.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// How this store keeps readings.
    pub fn readings_layout(&self) -> Layout {
        self.readings.layout()
    }

    /// Writes a group of items in one transaction.
    pub fn write(&mut self, items: &[StoreItem]) -> Result<(), StoreError> {
        let written = self.write_transaction(items);
        if written.is_err() {
            // Ids the failed transaction added to the store are not there.
            self.readings.forget();
        }
        written
    }

    fn write_transaction(&mut self, items: &[StoreItem]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut rows = self.readings.writer(&tx)?;
            let mut ev = tx.prepare_cached(
                "INSERT OR IGNORE INTO alert_events (event_id, alert_id, seq, rule_id, subject, site, kind, change, level, previous_level, highest_level, first_ts, ts, value, threshold, unit, message_zh, message_en, exercise, category, actor, note, assignee, event_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?;
            let mut dl = tx.prepare_cached(
                "INSERT INTO dead_letters (received_at, topic, reason, error, item_index, sensor, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for item in items {
                match item {
                    StoreItem::Readings(rs) => {
                        for r in rs {
                            rows.insert(r)?;
                            self.stats.readings += 1;
                        }
                    }
                    StoreItem::Events(es) => {
                        for e in es {
                            self.stats.events += ev.execute(params![
                                e.event_id,
                                e.alert_id,
                                e.seq,
                                &*e.rule_id,
                                e.subject.as_str(),
                                e.site.as_str(),
                                e.kind.as_str(),
                                e.change.as_str(),
                                e.level.as_str(),
                                e.previous_level.map(|l| l.as_str()),
                                e.highest_level.as_str(),
                                e.first_ts.millis(),
                                e.ts.millis(),
                                e.value,
                                e.threshold,
                                &*e.unit,
                                e.message_zh,
                                e.message_en,
                                e.exercise,
                                e.category.as_str(),
                                e.by,
                                e.note,
                                e.assignee,
                                serde_json::to_string(e).ok()
                            ])? as u64;
                        }
                    }
                    StoreItem::DeadLetter(d) => {
                        dl.execute(params![
                            d.received_at.millis(),
                            d.topic,
                            d.reason,
                            d.error,
                            d.index.map(|i| i as i64),
                            d.sensor,
                            d.raw
                        ])?;
                        self.stats.dead_letters += 1;
                    }
                    StoreItem::Command(c) => {
                        tx.execute(
                            "INSERT INTO commands (received_at, payload, outcome, error) VALUES (?1, ?2, ?3, ?4)",
                            params![c.received_at.millis(), c.payload, c.outcome, c.error],
                        )?;
                        self.stats.commands += 1;
                    }
                    StoreItem::Input { position, body } => {
                        tx.prepare_cached("INSERT OR REPLACE INTO input_journal (pos, body) VALUES (?1, ?2)")?
                            .execute(params![*position as i64, body])?;
                    }
                    StoreItem::Prune(position) => {
                        self.prune_to = self.prune_to.max(*position as i64);
                        self.prune_pending = true;
                    }
                    StoreItem::Committed(_) => {}
                }
            }
        }
        let mut caught_up = !self.prune_pending;
        if self.prune_pending {
            // The oldest PRUNE_SLICE entries, none past the saved position.
            tx.prepare_cached(
                "DELETE FROM input_journal WHERE pos <= min(?1, (SELECT min(pos) FROM input_journal) + ?2 - 1)",
            )?
            .execute(params![self.prune_to, PRUNE_SLICE])?;
            caught_up = !tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM input_journal WHERE pos <= ?1)")?
                .query_row(params![self.prune_to], |r| r.get::<_, bool>(0))?;
        }
        tx.commit()?;
        if caught_up {
            self.prune_pending = false;
        }
        Ok(())
    }
}

/// Most items in one transaction. Each commit rewrites every B-tree page it touched into the
/// WAL; with readings of thousands of sensors per second nearly every leaf of the readings
/// index is touched, so fewer, larger transactions cost far less per reading.
const MAX_BATCH: usize = 8192;

/// Most readings in one transaction: alert events are published once the transaction holding
/// their input commits, so a commit must stay short (a few milliseconds) even when the writer
/// has fallen behind and finds a long queue.
const MAX_BATCH_READINGS: usize = 4096;

/// Group commit: when items arrive within this long of the previous commit (a steady stream),
/// the writer waits up to [`LINGER`] for [`LINGER_UNTIL_READINGS`] readings before committing,
/// as long as each poll interval brings more.
/// Each commit writes every page it touched into the WAL and checksums it;
/// single-reading MQTT messages at 100 000/s otherwise made ~80-reading commits, and those
/// per-commit costs were half of riskwatch's CPU. The wait delays alerts under load by at most
/// `LINGER`; after a quiet spell nothing waits.
const LINGER_AFTER: std::time::Duration = std::time::Duration::from_millis(5);
/// Longest wait for a fuller transaction.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Readings that end the wait.
const LINGER_UNTIL_READINGS: usize = 1024;
/// Poll interval while waiting.
const LINGER_POLL: std::time::Duration = std::time::Duration::from_micros(250);

/// What one commit of the writer thread did.
#[derive(Debug, Clone, Copy)]
pub struct CommitReport {
    /// Readings in the batch.
    pub readings: usize,
    /// Alert events in the batch.
    pub events: usize,
    /// How long the transaction took.
    pub took: std::time::Duration,
    /// Whether it committed.
    pub ok: bool,
}

/// A store running on its own thread, fed through a bounded channel (back-pressure reaches
/// the rules stage when the disk is slow).
pub struct SqliteSink {
    tx: mpsc::Sender<StoreItem>,
    handle: JoinHandle<Result<StoreStats, StoreError>>,
    fault: watch::Receiver<Option<String>>,
}

impl SqliteSink {
    /// Opens the store and starts its writer thread.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        Self::start_store(SqliteStore::open(path)?)
    }

    /// Starts the writer thread on an already opened store.
    pub fn start_store(store: SqliteStore) -> Result<Self, StoreError> {
        Self::start_observed(store, Box::new(|_| {}))
    }

    /// Like [`SqliteSink::start_store`], telling `observer` about every commit (for metrics).
    pub fn start_observed(
        mut store: SqliteStore,
        observer: Box<dyn Fn(&CommitReport) + Send>,
    ) -> Result<Self, StoreError> {
        let (tx, mut rx) = mpsc::channel::<StoreItem>(1024);
        let (fault_tx, fault) = watch::channel(None);
        // A file store (not an in-memory one) gets its WAL checkpointed in the background.
        let checkpointer = match store.conn.path().filter(|p| !p.is_empty()) {
            Some(p) => Some(crate::checkpoint::Checkpointer::start(Path::new(p))?),
            None => None,
        };
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _checkpointer = checkpointer;
                let mut batch = Vec::with_capacity(256);
                let mut last_commit = std::time::Instant::now() - LINGER_AFTER;
                while let Some(first) = rx.blocking_recv() {
                    let arrived = std::time::Instant::now();
                    // Under a steady stream (the last commit ended moments ago), wait a little
                    // for more: the cost of a commit is mostly per transaction, not per row.
                    // After a quiet spell, commit at once (a lone alert is not held back).
                    let linger = arrived.duration_since(last_commit) < LINGER_AFTER;
                    let mut readings_in_batch = first.readings();
                    batch.push(first);
                    let mut grew = true;
                    while batch.len() < MAX_BATCH && readings_in_batch < MAX_BATCH_READINGS {
                        match rx.try_recv() {
                            Ok(item) => {
                                readings_in_batch += item.readings();
                                batch.push(item);
                                grew = true;
                            }
                            // Wait while items keep coming: once a poll interval passes with
                            // nothing new, the sender is waiting for this commit (a broker that
                            // sends the next messages only once these are acknowledged).
                            Err(mpsc::error::TryRecvError::Empty)
                                if linger
                                    && grew
                                    && readings_in_batch < LINGER_UNTIL_READINGS
                                    && arrived.elapsed() < LINGER =>
                            {
                                grew = false;
                                std::thread::sleep(LINGER_POLL)
                            }
                            Err(_) => break,
                        }
                    }
                    let began = std::time::Instant::now();
                    let written = store.write(&batch);
                    let readings = batch.iter().map(|i| if let StoreItem::Readings(r) = i { r.len() } else { 0 }).sum();
                    let events = batch.iter().map(|i| if let StoreItem::Events(e) = i { e.len() } else { 0 }).sum();
                    observer(&CommitReport { readings, events, took: began.elapsed(), ok: written.is_ok() });
                    if let Err(e) = written {
                        // The batch's OnCommit callbacks are dropped uncalled: nothing in it is
                        // acknowledged upstream, so the source re-delivers it after a restart.
                        error!(error = %e, "SQLite write failed; the store stops");
                        let _ = fault_tx.send(Some(e.to_string()));
                        return Err(e);
                    }
                    for item in batch.drain(..) {
                        if let StoreItem::Committed(OnCommit(f)) = item {
                            f();
                        }
                    }
                    last_commit = std::time::Instant::now();
                }
                Ok(store.stats())
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(SqliteSink { tx, handle, fault })
    }

    /// Resolves with the reason once a write has failed (disk full, I/O error…); pending forever
    /// while the store is healthy.
    pub fn failed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut fault = self.fault.clone();
        async move {
            let reason = fault.wait_for(Option::is_some).await.map(|r| r.clone().unwrap_or_default());
            match reason {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// A handle for sending items.
    pub fn sender(&self) -> mpsc::Sender<StoreItem> {
        self.tx.clone()
    }

    /// Closes the channel, waits for every queued item to be committed, and returns the counts.
    /// Other senders obtained from [`SqliteSink::sender`] must be dropped first.
    pub fn finish(self) -> Result<StoreStats, StoreError> {
        drop(self.tx);
        self.handle.join().map_err(|_| StoreError::WriterGone)?
    }
}
