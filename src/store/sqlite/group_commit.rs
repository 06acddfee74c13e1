//! Group commit: the writes that arrive while the writer is busy go into its next transaction together —
//! applications created, notifications recorded, observations applied, inbox rows taken, cleared and
//! postponed — and the whole transaction runs on one thread in one hand-over.
//!
//! A notification must be committed before its sender gets `OK`, and an applied change before anyone hears
//! of it; with `durability = "full"` every SQLite commit waits for a WAL sync. One transaction per write
//! made the writer spend a burst of webhooks, and then the inbox's confirmations of them, on syncs one
//! after another. Here a burst costs one sync: the committer takes everything waiting (up to `BATCH`), runs
//! it in order in one transaction and answers each sender after the commit; a lone write is committed at
//! once. A write that fails fails its whole transaction, and every sender of it hears of the failure (none
//! of it was committed; notifications are redelivered, observations confirmed again, inbox rows taken
//! again).
//!
//! The transaction runs through a `rusqlite` connection of the committer's own, on a blocking thread. sqlx
//! hands every statement to its connection's thread and back; a notification's four or five statements cost
//! some thirty thread switches that way, most of the gateway's CPU under webhook load (BENCHMARKS.md).
//! SQLite still has one writer: the committer writes only while it holds the write turn (turns.rs), so
//! the store's other writes (idempotency records, erasure, the poller's leases) and the committer's
//! transactions take turns instead of contending for SQLite's lock.
//!
//! The SQL of each write lives with its table (`inbox.rs`, `applications.rs`); this is only the mechanism.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{Durability, SqliteOptions, SqliteStore};
use crate::{
    domain::{Application, ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, InboxEntry, InboxRow, Source, StoreError},
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write waiting for the next transaction, and where its outcome goes.
pub(super) enum Pending {
    /// A new application; if it exists already, what it says is applied to it instead.
    Insert {
        application: Box<Application>,
        session_hash: [u8; 32],
        schedule: PollSchedule,
        reply: Reply<Applied>,
    },
    /// A notification to record, when it was received; the outcome says whether it was new.
    Record {
        entry: InboxEntry,
        received_at: i64,
        reply: Reply<bool>,
    },
    /// What ConnectPay said about an application, to run through its status machine.
    Apply {
        id: ApplicationId,
        seen: Observation,
        source: Source,
        schedule: PollSchedule,
        reply: Reply<Option<Applied>>,
    },
    /// Inbox rows due and not leased, leased to `owner` for `lease`.
    Take {
        owner: String,
        lease: Duration,
        limit: usize,
        reply: Reply<Vec<InboxRow>>,
    },
    /// Inbox rows whose notifications are done with.
    Finish { ids: Vec<i64>, reply: Reply<()> },
    /// Inbox rows released, to be taken again from `until` (micros).
    Postpone {
        ids: Vec<i64>,
        until: i64,
        reply: Reply<()>,
    },
}

/// What one write did, once its transaction has committed.
enum Outcome {
    Inserted(Box<Applied>),
    Recorded(bool),
    Applied(Option<Box<Applied>>),
    Taken(Vec<InboxRow>),
    Done,
}

impl Pending {
    /// Whether the write must be on disk before its sender hears of it: a recorded notification is
    /// acknowledged, a created or changed application is announced. Leases, clearings and postponements
    /// are not: losing one with the machine's power costs at most a notification confirmed again (leases
    /// are released at start anyway), and a later synced commit carries them to disk with it, as the log
    /// is written in order.
    fn must_be_synced(&self) -> bool {
        matches!(
            self,
            Pending::Insert { .. } | Pending::Record { .. } | Pending::Apply { .. }
        )
    }

    /// Runs the write inside the group's transaction.
    fn run(&self, tx: &Connection) -> Result<Outcome, StoreError> {
        Ok(match self {
            Pending::Insert {
                application,
                session_hash,
                schedule,
                ..
            } => Outcome::Inserted(Box::new(SqliteStore::insert_in(
                tx,
                application,
                session_hash,
                schedule,
            )?)),
            Pending::Record {
                entry, received_at, ..
            } => Outcome::Recorded(SqliteStore::record_in(tx, entry, *received_at)?),
            Pending::Apply {
                id,
                seen,
                source,
                schedule,
                ..
            } => Outcome::Applied(
                SqliteStore::apply_in(tx, id, seen, *source, schedule)?.map(Box::new),
            ),
            Pending::Take {
                owner,
                lease,
                limit,
                ..
            } => Outcome::Taken(SqliteStore::take_in(tx, owner, *lease, *limit)?),
            Pending::Finish { ids, .. } => {
                SqliteStore::finish_in(tx, ids)?;
                Outcome::Done
            }
            Pending::Postpone { ids, until, .. } => {
                SqliteStore::postpone_in(tx, ids, *until)?;
                Outcome::Done
            }
        })
    }

    /// Tells the sender what its write did; called only after the commit.
    fn answer(self, outcome: Outcome) {
        // A sender that went away (its caller gave up) needs no answer.
        match (self, outcome) {
            (Pending::Insert { reply, .. }, Outcome::Inserted(applied)) => {
                drop(reply.send(Ok(*applied)))
            }
            (Pending::Record { reply, .. }, Outcome::Recorded(new)) => drop(reply.send(Ok(new))),
            (Pending::Apply { reply, .. }, Outcome::Applied(applied)) => {
                drop(reply.send(Ok(applied.map(|a| *a))))
            }
            (Pending::Take { reply, .. }, Outcome::Taken(rows)) => drop(reply.send(Ok(rows))),
            (Pending::Finish { reply, .. } | Pending::Postpone { reply, .. }, Outcome::Done) => {
                drop(reply.send(Ok(())))
            }
            _ => unreachable!("each write's outcome is of its own kind"),
        }
    }

    /// Tells the sender that nothing of its group was committed.
    fn fail(self, e: &StoreError) {
        let failed = || StoreError(e.0.clone());
        match self {
            Pending::Insert { reply, .. } => drop(reply.send(Err(failed()))),
            Pending::Record { reply, .. } => drop(reply.send(Err(failed()))),
            Pending::Apply { reply, .. } => drop(reply.send(Err(failed()))),
            Pending::Take { reply, .. } => drop(reply.send(Err(failed()))),
            Pending::Finish { reply, .. } | Pending::Postpone { reply, .. } => {
                drop(reply.send(Err(failed())))
            }
        }
    }
}

/// Writes per transaction at most.
const BATCH: usize = 256;
/// Writes queued beyond this wait for room (back-pressure on webhook handlers and inbox workers).
const QUEUE: usize = 4096;

impl SqliteStore {
    /// Hands a write to the committer and waits for its outcome, which comes after the commit that holds it.
    pub(super) async fn commit<T>(
        &self,
        write: impl FnOnce(Reply<T>) -> Pending,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError("the store is closing".into());
        self.committer
            .send(write(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The committer's own connection to the database file.
pub(super) struct Writer {
    connection: Connection,
    durability: Durability,
    /// What `PRAGMA synchronous` is now.
    syncing: bool,
}

/// The committer's connection, set up as sqlx sets up the store's connections (checkpoints are left to
/// checkpoints.rs).
pub(super) fn connect(database: &Path, options: &SqliteOptions) -> Result<Writer, StoreError> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Waits, on the blocking thread, only for a lock held outside this gateway (an operator command, a
    // backup); the gateway's own writers take turns (above).
    connection.busy_timeout(options.busy_timeout)?;
    super::keep_plans(&connection)?;
    connection.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0;",
        options.durability.synchronous()
    ))?;
    Ok(Writer {
        connection,
        durability: options.durability,
        syncing: options.durability == Durability::Full,
    })
}

/// Starts the committer on `writer`, taking `turns` with the store's other writers; it stops when the
/// returned sender (the store) is dropped.
pub(super) fn start(turns: Arc<tokio::sync::Mutex<()>>, writer: Writer) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(turns, Arc::new(Mutex::new(writer)), receiver));
    sender
}

async fn run(
    turns: Arc<tokio::sync::Mutex<()>>,
    writer: Arc<Mutex<Writer>>,
    mut queue: mpsc::Receiver<Pending>,
) {
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        if queue.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // Held until the transaction has ended: no other writer of this gateway holds SQLite's lock.
        let turn = turns.lock().await;
        let writer = Arc::clone(&writer);
        // A panic drops the batch unanswered: its senders hear that nothing was committed.
        let _ = tokio::task::spawn_blocking(move || {
            // A panic inside a transaction rolled it back as it unwound; the connection is sound.
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            match writer.commit_all(&batch) {
                Ok(outcomes) => {
                    for (pending, outcome) in batch.into_iter().zip(outcomes) {
                        pending.answer(outcome);
                    }
                }
                Err(e) => batch.into_iter().for_each(|pending| pending.fail(&e)),
            }
        })
        .await;
        drop(turn);
    }
}

impl Writer {
    /// Runs every write of the batch, in order, in one transaction; each sees the ones before it.
    fn commit_all(&mut self, batch: &[Pending]) -> Result<Vec<Outcome>, StoreError> {
        // With `durability = "full"`, a group that only leases, clears or postpones is committed without
        // waiting for the disk: the inbox worker's lease is then not one more sync on a notification's way.
        let syncing =
            self.durability == Durability::Full && batch.iter().any(Pending::must_be_synced);
        if syncing != self.syncing {
            let level = if syncing {
                Durability::Full
            } else {
                Durability::Normal
            };
            self.connection
                .pragma_update(None, "synchronous", level.synchronous())?;
            self.syncing = syncing;
        }
        // Immediate: the lock is taken (or waited for) before anything is read, so nothing read can be
        // stale.
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcomes = batch
            .iter()
            .map(|pending| pending.run(&tx))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, durability: Durability) -> Writer {
        let path = dir.join("store.db");
        let setup = Connection::open(&path).unwrap();
        super::super::migrate_for_test(&setup);
        let options = SqliteOptions {
            busy_timeout: Duration::from_secs(1),
            durability,
            read_connections: 1,
            take_over: false,
        };
        connect(&path, &options).unwrap()
    }

    fn synchronous(writer: &Writer) -> i64 {
        writer
            .connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    fn lease() -> Pending {
        Pending::Take {
            owner: "worker".into(),
            lease: Duration::from_secs(30),
            limit: 8,
            reply: oneshot::channel().0,
        }
    }

    fn recording() -> Pending {
        Pending::Record {
            entry: InboxEntry {
                dedupe_key: [7; 32],
                application_id: None,
                person_id: Some("person".into()),
                claimed_status: None,
                sent_at: None,
                trace_context: None,
                via_application: false,
            },
            received_at: 0,
            reply: oneshot::channel().0,
        }
    }

    const FULL: i64 = 2;
    const NORMAL: i64 = 1;

    /// With full durability, a group holding a recording waits for the disk; one that only leases, clears
    /// or postpones does not (it reaches the disk with the next synced commit).
    #[test]
    fn only_groups_that_must_be_on_disk_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path(), Durability::Full);

        writer.commit_all(&[lease()]).unwrap();
        assert_eq!(synchronous(&writer), NORMAL, "a lease alone");

        writer.commit_all(&[lease(), recording()]).unwrap();
        assert_eq!(synchronous(&writer), FULL, "a lease with a recording");

        let finish = Pending::Finish {
            ids: vec![1],
            reply: oneshot::channel().0,
        };
        writer.commit_all(&[finish]).unwrap();
        assert_eq!(synchronous(&writer), NORMAL, "a clearing alone");
        let left: i64 = writer
            .connection
            .query_row("SELECT count(*) FROM inbox", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0, "the clearing was committed");
    }

    /// The lease runs on every notification's way: its statement, kept in the connection's cache, is not
    /// prepared again on each run (a bound `LIMIT` would make SQLite re-plan it every time).
    #[test]
    fn the_lease_is_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path(), Durability::Full);
        for _ in 0..3 {
            writer.commit_all(&[recording(), lease()]).unwrap();
        }
        let statement = writer
            .connection
            .prepare_cached(super::super::inbox::TAKE)
            .unwrap();
        assert_eq!(
            statement.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "prepared again"
        );
    }

    /// With normal durability nothing waits for the disk.
    #[test]
    fn normal_durability_never_syncs_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path(), Durability::Normal);
        writer.commit_all(&[recording()]).unwrap();
        assert_eq!(synchronous(&writer), NORMAL);
    }
}
