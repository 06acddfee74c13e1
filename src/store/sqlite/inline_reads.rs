//! Short reads answered on the calling thread: lookups by key, and the bounded reads of the notification
//! path (a batch's applications, a stream's next events).
//!
//! sqlx runs every SQLite connection on a thread of its own: a query is handed to that thread and its
//! answer handed back, two thread wake-ups per read. For a `GetApplication`, whose one store read is a
//! lookup by key, profiling put those hand-offs at about 40 % of the gateway's CPU (BENCHMARKS.md). A
//! lookup by key in a WAL database takes microseconds and never waits for the writer, so these reads run
//! where they are asked, on read-only connections of their own.
//!
//! They never wait for a lock: the connections have no busy timeout, and a read that finds the database
//! busy (a checkpoint that must restart the log, an operator's exclusive lock) is answered by sqlx's read
//! pool instead, which waits for it without holding the caller's thread.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};

use super::columns::{Columns, EVENT_COLUMNS};
use crate::store::{Event, StoreError, rows::event};

/// Why an inline read gave no answer.
pub(super) enum Missed {
    /// The database was busy: ask the pool, which may wait.
    Busy,
    Failed(StoreError),
}

pub(super) struct InlineReads {
    path: PathBuf,
    /// Connections not in use. A read takes one (or opens one) and puts it back, so there are never more
    /// than there are threads reading at once.
    idle: Mutex<Vec<Connection>>,
    /// How many idle connections are kept.
    keep: usize,
}

impl InlineReads {
    /// Inline reads of the database file at `path`, keeping up to `keep` connections open.
    pub(super) fn new(path: &Path, keep: usize) -> Self {
        InlineReads {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
        }
    }

    fn open(&self) -> Result<Connection, rusqlite::Error> {
        // Opened for reading only: whatever happens here cannot change the database.
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never wait on the caller's thread (rusqlite's default is five seconds).
        connection.busy_timeout(Duration::ZERO)?;
        super::keep_plans(&connection)?;
        Ok(connection)
    }

    /// The rows `query` finds for `binds`, as events: `query` selects the event's columns first, in the
    /// order of `EVENT_COLUMNS` (the reads of applications.rs do).
    pub(super) fn events(&self, query: &str, binds: &[Bind<'_>]) -> Result<Vec<Event>, Missed> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match taken {
            Some(connection) => connection,
            None => self.open().map_err(missed)?,
        };
        let found = Self::read(&connection, query, binds);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.keep {
            idle.push(connection);
        }
        found
    }

    fn read(
        connection: &Connection,
        query: &str,
        binds: &[Bind<'_>],
    ) -> Result<Vec<Event>, Missed> {
        let mut statement = connection.prepare_cached(query).map_err(missed)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(binds))
            .map_err(missed)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(missed)? {
            found.push(event(&Columns::in_order(row, EVENT_COLUMNS)).map_err(Missed::Failed)?);
        }
        Ok(found)
    }
}

/// A value bound to a read's query, the same on the caller's thread and in the pool.
#[derive(Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    Integer(i64),
}

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Bind::Text(text) => text.to_sql(),
            Bind::Integer(integer) => integer.to_sql(),
        }
    }
}

fn missed(e: rusqlite::Error) -> Missed {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Missed::Busy,
        _ => Missed::Failed(StoreError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A database whose file another connection holds exclusively (as SQLite does while it recovers a
    /// crashed writer's log): an inline read must give up at once, not wait on the caller's thread.
    #[test]
    fn a_busy_database_is_left_to_the_pool_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE applications (id TEXT);
                 PRAGMA locking_mode = EXCLUSIVE; BEGIN IMMEDIATE; COMMIT;",
            )
            .unwrap();
        let reads = InlineReads::new(&path, 2);

        let started = Instant::now();
        let answer = reads.events(
            "SELECT id FROM applications WHERE id = ?",
            &[Bind::Text("a")],
        );
        let waited = started.elapsed();

        assert!(matches!(answer, Err(Missed::Busy)), "not reported as busy");
        assert!(
            waited < Duration::from_millis(500),
            "the read waited {waited:?} for the lock on the caller's thread"
        );
    }

    /// A stream reads its next events on every change: the read's statement, kept in the connection's
    /// cache, is not prepared again on each run (a bound `LIMIT` would make SQLite re-plan it every time).
    #[test]
    fn a_stream_read_is_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let setup = Connection::open(&path).unwrap();
        setup.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        super::super::migrate_for_test(&setup);
        drop(setup);
        let reads = InlineReads::new(&path, 1);
        for (after, limit) in [(0, 64), (5, 64), (9, 16)] {
            let binds = [Bind::Text("a"), Bind::Integer(after), Bind::Integer(limit)];
            assert!(matches!(
                reads.events(super::super::applications::EVENTS_AFTER, &binds),
                Ok(found) if found.is_empty()
            ));
        }
        let connection = reads.idle.lock().unwrap().pop().expect("kept");
        let statement = connection
            .prepare_cached(super::super::applications::EVENTS_AFTER)
            .unwrap();
        assert_eq!(
            statement.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "prepared again"
        );
    }

    /// Rows decode like the pool's: every column of an application, absent ones as `None`.
    #[test]
    fn an_application_row_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE applications (application_id TEXT, owner TEXT, external_reference TEXT,
                   person_id TEXT, status TEXT, upstream_status TEXT, last_known_status TEXT,
                   baas_client_id TEXT, version INTEGER, created_at INTEGER, updated_at INTEGER,
                   seq INTEGER);
                 INSERT INTO applications VALUES ('8c4f1f9e-31a5-4f0e-9d3c-0e6b1a2b3c4d', 'caller',
                   'ref-1', NULL, 'IDV_APPROVED', 'APPROVED', 'IDV_APPROVED', NULL, 3, 1000000,
                   2000000, 41);",
            )
            .unwrap();
        let reads = InlineReads::new(&path, 2);
        let query = "SELECT * FROM applications WHERE external_reference = ?";

        let found = match reads.events(query, &[Bind::Text("ref-1")]) {
            Ok(found) => found.into_iter().next().expect("the application"),
            Err(_) => panic!("the read failed"),
        };
        let app = &found.application;
        assert_eq!(found.seq, 41);
        assert_eq!(app.id.as_str(), "8c4f1f9e-31a5-4f0e-9d3c-0e6b1a2b3c4d");
        assert_eq!(app.owner, "caller");
        assert_eq!(app.person_id, None);
        assert_eq!(app.status.as_str(), "IDV_APPROVED");
        assert_eq!(app.upstream_status, "APPROVED");
        assert_eq!(app.version, 3);
        assert_eq!(app.update_time, crate::store::from_micros(2_000_000));
        assert!(
            matches!(reads.events(query, &[Bind::Text("ref-2")]), Ok(found) if found.is_empty())
        );
    }
}
