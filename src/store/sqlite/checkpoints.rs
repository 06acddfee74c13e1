//! WAL checkpoints, on a thread of their own instead of inside a commit.
//!
//! SQLite copies the write-ahead log back into the database file (a checkpoint) from whichever connection
//! commits once the log passes 1,000 pages, inside that commit: the copy and its syncs held up the group
//! committer, and every write queued behind it, for tens of milliseconds a few times a second under
//! webhook load (BENCHMARKS.md). So the store's connections never checkpoint on commit
//! (`wal_autocheckpoint = 0`), and this thread checkpoints every `INTERVAL` instead, in `PASSIVE` mode:
//! it copies what no reader still needs, beside the writer and the readers, and waits for no one. The
//! writer starts the log over once a checkpoint has copied all of it.

use std::{path::Path, sync::mpsc, time::Duration};

use rusqlite::{Connection, OpenFlags};

use super::SqliteOptions;
use crate::store::StoreError;

/// How often the log is copied back: it grows by about a second of writes at most.
const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints until the returned sender (held by the store) is dropped.
pub(super) fn start(
    database: &Path,
    options: &SqliteOptions,
) -> Result<mpsc::Sender<()>, StoreError> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A checkpoint syncs the log before copying it and the database after, as durable as the commits.
    connection.pragma_update(None, "synchronous", options.durability.synchronous())?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoints".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                if let Err(e) = checkpoint(&connection) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; the log grows until the next one");
                }
            }
        })
        .map_err(|e| StoreError(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

/// Copies back what it can of the log; the number of pages left in it for later.
fn checkpoint(connection: &Connection) -> Result<i64, rusqlite::Error> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let (log, copied): (i64, i64) = (row.get(1)?, row.get(2)?);
        Ok(log - copied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Durability;

    fn log_pages(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0) / 4096
    }

    /// A writer that never checkpoints keeps writing at the start of the log once the thread has
    /// copied it back: the log stops growing.
    #[test]
    fn the_log_is_copied_back_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (v BLOB);",
            )
            .unwrap();
        let options = SqliteOptions {
            busy_timeout: Duration::from_secs(1),
            durability: Durability::Normal,
            read_connections: 1,
            take_over: false,
        };
        let write_pages = |n: usize| {
            for _ in 0..n {
                writer
                    .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
        };

        write_pages(1500);
        let grown = log_pages(&path);
        assert!(grown >= 1500, "the log holds every write: {grown} pages");

        let _checkpoints = start(&path, &options).unwrap();
        std::thread::sleep(INTERVAL * 3);
        write_pages(1500);
        let after = log_pages(&path);
        assert!(
            after < grown + 1000,
            "the log went on growing ({grown} → {after} pages): it was never copied back"
        );
    }
}
