//! One write system call per commit for the store's write-ahead log.
//!
//! SQLite writes each frame of a commit into the WAL with two `pwrite` calls (the 24-byte frame
//! header, then the page): a commit of ~270 single-reading messages touches ~8 pages, so 16
//! calls, ~0.06 per reading (docs/benchmarks.md, ninth and tenth rounds). This module registers
//! a SQLite VFS, [`VFS_NAME`], that is the platform's default VFS except for WAL files: their
//! consecutive writes are gathered in memory and reach the file in one `pwrite` per 128 KiB
//! ([`WRITE_MAX`]; two for a commit of 8 frames) once the commit frame has been written. The
//! bytes, their order and their offsets are exactly what SQLite wrote, so the files are the
//! same and any SQLite (the console, `replay`, the `sqlite3` shell) reads them as before.
//!
//! Nothing is held back past the point where SQLite relies on it:
//! - the gathered bytes are written as soon as the frame that ends a transaction (a frame header
//!   with a non-zero "database size after commit") has its page: SQLite publishes a commit to
//!   other connections (the WAL index in shared memory) only after its frame writes return, and
//!   syncs (`synchronous = FULL`) only after that — so readers and the sync see every byte;
//! - any other call on the WAL file (read, sync, truncate, size, file control, close) and any
//!   write that does not continue the gathered bytes first writes them out;
//! - at most [`GATHER_LIMIT`] bytes are held (a transaction larger than that is written in
//!   several calls, as SQLite would spill it anyway).
//!
//! If writing the gathered bytes fails (disk full), the call that triggered it returns SQLite's
//! error and the bytes are dropped: the commit fails as it would have with direct writes, and
//! frames after the last good commit are ignored by SQLite's recovery.

use rusqlite::{ffi, Connection, OpenFlags};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::sync::OnceLock;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const VFS_NAME: &str = "riskwatch-wal-gather";
const VFS_NAME_C: &CStr = c"riskwatch-wal-gather";

/// Most bytes gathered before they are written anyway.
const GATHER_LIMIT: usize = 4 << 20;

/// Most bytes per write call: SQLite's unix VFS writes at most 128 KiB − 1 per call (it masks
/// the length with `0x1ffff`), so gathered bytes are passed on in pieces of this size — two
/// calls for a commit of 8 to 15 frames of 16 KiB.
const WRITE_MAX: usize = 0x1ffff;

/// Size of a WAL frame header: SQLite writes it as one piece, and nothing else in a WAL is
/// written in 24 bytes (the WAL header is 32, pages are at least 512).
const FRAME_HEADER: usize = 24;

/// Opens a connection on this VFS (on the default one, with a warning, if it could not be
/// registered).
pub(crate) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    match register() {
        Ok(()) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME),
        Err(rc) => {
            tracing::warn!(code = rc, "SQLite VFS for gathered WAL writes not available; writing frames one by one");
            Connection::open(path)
        }
    }
}

/// Registers the VFS (once per process). Returns SQLite's error code if it could not be.
pub fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives as long as the
        // process; the VFS built here is leaked (registered VFSes must outlive every
        // connection) and only forwards to it.
        unsafe {
            let rc = ffi::sqlite3_initialize();
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs: ffi::sqlite3_vfs = *base;
            vfs.iVersion = (*base).iVersion.min(3);
            vfs.szOsFile = (std::mem::size_of::<WalFile>() + (*base).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = VFS_NAME_C.as_ptr();
            vfs.pAppData = base.cast();
            vfs.xOpen = Some(open);
            vfs.xDelete = Some(delete);
            vfs.xAccess = Some(access);
            vfs.xFullPathname = Some(full_pathname);
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    })
}

/// A WAL file: SQLite's handle (`base`, whose methods are [`WAL_METHODS`]), then the default
/// VFS's own handle in the memory right after this struct.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Bytes written by SQLite and not yet passed on.
#[derive(Default)]
struct Gathered {
    /// File offset of `bytes[0]`.
    at: i64,
    bytes: Vec<u8>,
    /// The last frame header written ends a transaction: pass on once its page follows.
    commit: bool,
}

#[cfg(test)]
thread_local! {
    /// How many times gathered bytes were passed on as one write, on this thread (for tests).
    static PASSED_ON: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base_vfs(vfs);
    let Some(base_open) = (*base).xOpen else { return ffi::SQLITE_ERROR };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Every other file is the default VFS's own handle, in place (this VFS's handles are
        // larger than the default's).
        return base_open(base, name, file, flags, out_flags);
    }
    let wal = file.cast::<WalFile>();
    let real = file.cast::<u8>().add(std::mem::size_of::<WalFile>()).cast::<ffi::sqlite3_file>();
    (*wal).base.pMethods = std::ptr::null();
    let rc = base_open(base, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (*wal).real = real;
    (*wal).gathered = Box::into_raw(Box::default());
    (*wal).base.pMethods = &WAL_METHODS;
    ffi::SQLITE_OK
}

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    let base = base_vfs(vfs);
    match (*base).xDelete {
        Some(f) => f(base, name, sync_dir),
        None => ffi::SQLITE_ERROR,
    }
}

unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    let base = base_vfs(vfs);
    match (*base).xAccess {
        Some(f) => f(base, name, flags, out),
        None => ffi::SQLITE_ERROR,
    }
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let base = base_vfs(vfs);
    match (*base).xFullPathname {
        Some(f) => f(base, name, n, out),
        None => ffi::SQLITE_ERROR,
    }
}

/// Methods of WAL files. Version 1: SQLite calls no shared-memory or memory-map method on a
/// WAL file (those go to the database file).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe fn parts(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods, &'static mut Gathered) {
    let wal = file.cast::<WalFile>();
    let real = (*wal).real;
    (real, &*(*real).pMethods, &mut *(*wal).gathered)
}

/// Writes what is gathered, in one call. On failure the bytes are dropped (see the module).
unsafe fn pass_on(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m, g) = parts(file);
    g.commit = false;
    if g.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(w) = m.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut rc = ffi::SQLITE_OK;
    let mut at = g.at;
    for piece in g.bytes.chunks(WRITE_MAX) {
        #[cfg(test)]
        PASSED_ON.with(|c| c.set(c.get() + 1));
        rc = w(real, piece.as_ptr().cast(), piece.len() as c_int, at);
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += piece.len() as i64;
    }
    g.bytes.clear();
    rc
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, n: c_int, at: i64) -> c_int {
    let (_, _, g) = parts(file);
    if !g.bytes.is_empty() && at != g.at + g.bytes.len() as i64 {
        let rc = pass_on(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let (_, _, g) = parts(file);
    if g.bytes.is_empty() {
        g.at = at;
    }
    let data = std::slice::from_raw_parts(data.cast::<u8>(), n.max(0) as usize);
    g.bytes.extend_from_slice(data);
    if data.len() == FRAME_HEADER {
        // Bytes 4..8 of a frame header: the database size after the commit, 0 if it is not
        // the transaction's last frame.
        g.commit = data[4..8] != [0, 0, 0, 0];
        return ffi::SQLITE_OK;
    }
    if g.commit || g.bytes.len() >= GATHER_LIMIT {
        return pass_on(file);
    }
    ffi::SQLITE_OK
}

/// Passes gathered bytes on, then runs `f` on the default VFS's handle.
unsafe fn then(
    file: *mut ffi::sqlite3_file,
    f: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> Option<c_int>,
) -> c_int {
    let rc = pass_on(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let (real, m, _) = parts(file);
    f(real, m).unwrap_or(ffi::SQLITE_IOERR)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let passed = pass_on(file);
    let (real, m, _) = parts(file);
    let closed = m.xClose.map_or(ffi::SQLITE_OK, |f| f(real));
    let wal = file.cast::<WalFile>();
    drop(Box::from_raw((*wal).gathered));
    (*wal).gathered = std::ptr::null_mut();
    (*wal).base.pMethods = std::ptr::null();
    if passed != ffi::SQLITE_OK {
        passed
    } else {
        closed
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, n: c_int, at: i64) -> c_int {
    then(file, |r, m| m.xRead.map(|f| f(r, buf, n, at)))
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    then(file, |r, m| m.xTruncate.map(|f| f(r, size)))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    then(file, |r, m| m.xSync.map(|f| f(r, flags)))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    then(file, |r, m| m.xFileSize.map(|f| f(r, size)))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (r, m, _) = parts(file);
    m.xLock.map_or(ffi::SQLITE_OK, |f| f(r, level))
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (r, m, _) = parts(file);
    m.xUnlock.map_or(ffi::SQLITE_OK, |f| f(r, level))
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (r, m, _) = parts(file);
    m.xCheckReservedLock.map_or(ffi::SQLITE_OK, |f| f(r, out))
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    then(file, |r, m| m.xFileControl.map(|f| f(r, op, arg)))
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (r, m, _) = parts(file);
    m.xSectorSize.map_or(4096, |f| f(r))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (r, m, _) = parts(file);
    m.xDeviceCharacteristics.map_or(0, |f| f(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        register().unwrap();
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME).unwrap()
    }

    /// A commit is passed on whole before SQLite publishes it: another connection, on the
    /// default VFS, sees every committed row at once — with `synchronous = NORMAL`, where no
    /// sync follows the commit to pass the bytes on otherwise.
    #[test]
    fn other_connections_see_each_commit_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let w = open(&path);
        w.execute_batch(
            "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        let r = Connection::open(&path).unwrap();
        for i in 0..200i64 {
            w.execute("INSERT INTO t VALUES (?1, zeroblob(5000))", [i]).unwrap();
            let (n, sum): (i64, i64) =
                r.query_row("SELECT count(*), sum(length(v)) FROM t", [], |x| Ok((x.get(0)?, x.get(1)?))).unwrap();
            assert_eq!((n, sum), (i + 1, (i + 1) * 5000), "after commit {i}");
        }
        let ok: String = r.query_row("PRAGMA integrity_check", [], |x| x.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }

    /// A transaction of many pages reaches the WAL in as few write calls as its size allows (one
    /// per 128 KiB), and the file is what SQLite wrote: the same rows read back after the writer closed, without this VFS.
    #[test]
    fn a_transaction_of_many_pages_takes_one_write_per_128_kib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut w = open(&path);
        w.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        let wal = || std::fs::metadata(dir.path().join("s.db-wal")).unwrap().len() as usize;
        let (before, wal_before) = (PASSED_ON.with(|c| c.get()), wal());
        let tx = w.transaction().unwrap();
        for i in 0..100i64 {
            tx.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [i]).unwrap();
        }
        tx.commit().unwrap();
        let calls = PASSED_ON.with(|c| c.get()) - before;
        let written = wal() - wal_before;
        let frames = written / (4096 + 24);
        assert!(frames >= 75, "{frames} frames");
        // SQLite alone: two calls per frame.
        assert_eq!(calls, written.div_ceil(WRITE_MAX) as u64, "write calls for {frames} frames ({written} bytes)");
        drop(w);
        let r = Connection::open(&path).unwrap();
        let n: i64 = r.query_row("SELECT count(*) FROM t WHERE length(v) = 3000", [], |x| x.get(0)).unwrap();
        assert_eq!(n, 100);
        let ok: String = r.query_row("PRAGMA integrity_check", [], |x| x.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }
}
