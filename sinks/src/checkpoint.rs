//! Checkpoints of the store's write-ahead log, mostly off the writer thread.
//!
//! SQLite copies the WAL back into the database file (a "checkpoint") once it has grown past
//! `wal_autocheckpoint` pages, on the connection whose commit crossed that size: the store's
//! writer thread, which meanwhile holds every alert waiting for a commit. This thread runs
//! PASSIVE checkpoints — which neither wait for nor block the writer — every [`EVERY`], so by
//! the time the writer's own automatic checkpoint comes due, nearly every frame has been copied
//! already and it only finishes the tail (SQLite can start the WAL over only after a checkpoint
//! that covers every frame, which under a steady stream of commits only the writer's own
//! reliably does).

use crate::sqlite::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the background checkpoint runs.
const EVERY: Duration = Duration::from_millis(100);

/// The background checkpointer of one store; stops when dropped.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    pub fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                crate::background_priority();
                let mut failing = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => failing = false,
                        // The writer's own checkpoints still run; say it once, not every 100 ms.
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "background WAL checkpoint failed; the writer checkpoints on its own");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(Checkpointer { stop: Some(stop), handle: Some(handle) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
