//! The gateway's SQLite writers take turns: the group committer (through its own connection) and the
//! store's other writes (idempotency records, polls, erasure, the OAuth pair, through sqlx's write pool of
//! one connection). Each holds the turn for its whole transaction, so none of them meets SQLite's lock
//! held by another (a deferred transaction that read first would fail with "database is locked" instead
//! of waiting).
//!
//! The turn is a fair lock of its own rather than the pool's one connection: sqlx tests a connection
//! every time it comes back to the pool, a round trip to the connection's thread, and the committer
//! takes a turn for every group it commits (BENCHMARKS.md §13).

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use sqlx::{SqliteConnection, SqlitePool, pool::PoolConnection};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::store::StoreError;

/// The write pool, reachable only with the turn.
pub(super) struct Writes {
    pool: SqlitePool,
    turn: Arc<Mutex<()>>,
}

/// The write pool's connection, held with the turn.
pub(super) struct Writing {
    // Declared first, so dropped first: its return to the pool (sqlx finishes it on a task of its own,
    // rolling back a transaction left open) has started when the turn is given up. A writer that takes
    // the turn before that return has ended meets, at worst, SQLite's lock for that moment, and waits
    // for it (busy timeout) rather than failing.
    connection: PoolConnection<sqlx::Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl Writes {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Writes {
            pool,
            turn: Arc::new(Mutex::new(())),
        }
    }

    /// Waits for the turn, then for the pool's connection.
    pub(super) async fn writing(&self) -> Result<Writing, StoreError> {
        let turn = Arc::clone(&self.turn).lock_owned().await;
        let connection = self.pool.acquire().await?;
        Ok(Writing {
            connection,
            _turn: turn,
        })
    }

    /// The turn alone, for a writer with a connection of its own (the group committer).
    pub(super) fn turns(&self) -> Arc<Mutex<()>> {
        Arc::clone(&self.turn)
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

impl Deref for Writing {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}
