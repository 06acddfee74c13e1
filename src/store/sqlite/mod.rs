//! The SQLite backend: the embedded default (`serve --sandbox`, single-replica deployments).
//!
//! The database is a file: its connections are the write pool's one, the group committer's, the read
//! pool's and the inline reads'. The gateway's writers take turns (turns.rs): the group committer and the
//! write pool's one connection each write only while holding the turn, so they queue instead of contending
//! for SQLite's lock; SQLite's single writer also makes the event log's sequence commit order. Reads run beside
//! the writer (WAL).

mod applications;
mod checkpoints;
mod columns;
mod erasure;
mod group_commit;
mod inbox;
mod inline_reads;
mod interface;
mod oauth;
mod requests;
mod turns;

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, StoreKey};

/// How durable a commit is: `Full` survives power loss, `Normal` (with WAL) survives the process being
/// killed but not the machine losing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Full,
    Normal,
}

impl Durability {
    /// `PRAGMA synchronous` for commits this durable, on the connections the store opens itself.
    fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a write waits for a lock someone else holds (another process, a backup) before failing.
    pub busy_timeout: Duration,
    pub durability: Durability,
    pub read_connections: u32,
    /// The opening process is the gateway that owns the database (not an operator command beside it):
    /// what a previous owner left leased or in progress is released.
    pub take_over: bool,
}

pub struct SqliteStore {
    /// Writes other than the committer's, taking turns with it (turns.rs).
    write: turns::Writes,
    read: SqlitePool,
    /// Lookups by key, answered on the caller's thread.
    inline: inline_reads::InlineReads,
    /// Creates applications, records notifications and applies observations, many per transaction
    /// (group_commit.rs).
    committer: tokio::sync::mpsc::Sender<group_commit::Pending>,
    key: StoreKey,
    /// Dropped with the store: the checkpoint thread stops.
    _checkpoints: std::sync::mpsc::Sender<()>,
    /// The serving gateway's exclusive lock on `<database>.lock`, held while the store is open
    /// (see [`lock_owner`]).
    _owner: Option<std::fs::File>,
}

/// One gateway serves a SQLite database: it holds an exclusive lock on a file beside it, so a second one
/// started on the same file (two pods on one volume, a forgotten process) refuses to start instead of
/// taking over the first one's work. Operator commands do not take it. The operating system releases the
/// lock when the process ends, however it ends.
fn lock_owner(database: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError(format!(
            "{} is in use by another gateway (it holds {}); one gateway serves a SQLite database",
            database.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and applies the
    /// migrations.
    pub async fn open(
        url: &str,
        key: StoreKey,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?;
        // Taken before anything is written: a second gateway must not migrate or recover either.
        let database = connect.get_filename().to_owned();
        // Acknowledged notifications must outlive the process, and several connections share the data.
        if database == std::path::Path::new(":memory:") {
            return Err(StoreError(
                "an in-memory SQLite database cannot be the store: give a file (sqlite://PATH)"
                    .into(),
            ));
        }
        let owner = if options.take_over {
            if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
            }
            Some(lock_owner(&database)?)
        } else {
            None
        };
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.busy_timeout)
            // Deleted rows are overwritten, so an erased application leaves nothing in the file.
            .pragma("secure_delete", "ON")
            // The checkpoint thread copies the log back (checkpoints.rs), never a commit.
            .pragma("wal_autocheckpoint", "0")
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // A connection to a local file does not go stale; a ping would cost a hand-over per turn.
            .test_before_acquire(false)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        super::rollback_tolerant(sqlx::migrate!("./migrations/sqlite"))
            .run(&write)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        if options.take_over {
            Self::recover(&write).await?;
        }
        let read_connections = options.read_connections.max(1);
        let read = SqlitePoolOptions::new()
            .max_connections(read_connections)
            .connect_with(connect.read_only(true))
            .await?;
        let inline = inline_reads::InlineReads::new(&database, read_connections as usize);
        let committer = group_commit::connect(&database, options)?;
        let write = turns::Writes::new(write);
        let checkpoints = checkpoints::start(&database, options)?;
        Ok(SqliteStore {
            _checkpoints: checkpoints,
            committer: group_commit::start(write.turns(), committer),
            write,
            read,
            inline,
            key,
            _owner: owner,
        })
    }

    /// One process owns a SQLite database, so whatever a previous process left leased or in progress
    /// was left by a process that is gone: its notifications are free to take at once, and its
    /// idempotent requests' outcomes are unknown (the next attempt reconciles).
    async fn recover(write: &SqlitePool) -> Result<(), StoreError> {
        let mut tx = write.begin().await?;
        // A lease keeps its row from being due until it runs out (inbox.rs): released, the row is due now.
        let released = sqlx::query(
            "UPDATE inbox SET lease_owner = NULL, lease_until = NULL, not_before = min(not_before, ?) \
             WHERE lease_owner IS NOT NULL",
        )
        .bind(super::micros(std::time::SystemTime::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let abandoned = sqlx::query(
            "UPDATE requests SET state = 'unknown', owner = NULL WHERE state = 'in_progress'",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if released + abandoned > 0 {
            tracing::info!(
                released,
                abandoned,
                "recovered what a previous process left in progress"
            );
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Sets up a connection the store opens itself (the committer's, the inline reads'): each statement keeps
/// the plan it was prepared with. Otherwise SQLite plans a `LIMIT ?` for the value bound to it, and so
/// prepares the statement again every time that parameter is bound: every inbox lease and every read of a
/// stream's next events, a tenth of the gateway's CPU under webhook load (BENCHMARKS.md §13). Each of the
/// gateway's statements has one plan whatever its limit.
fn keep_plans(connection: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(format!("sqlite: {e}"))
    }
}

/// Ids as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialise")
}

/// Makes on `connection` the schema the store's migrations make (every one, as embedded, in order): for
/// the unit tests that open a connection of their own.
#[cfg(test)]
fn migrate_for_test(connection: &rusqlite::Connection) {
    for migration in sqlx::migrate!("./migrations/sqlite").iter() {
        connection.execute_batch(migration.sql.as_str()).unwrap();
    }
}
