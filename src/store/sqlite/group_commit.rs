//! Group commit: the writes that arrive while the single writer is busy go into its next transaction
//! together — notifications recorded, observations applied, inbox rows taken, cleared and postponed.
//!
//! A notification must be committed before its sender gets `OK`, and an applied change before anyone hears
//! of it; with `durability = "full"` every SQLite commit waits for a WAL sync. One transaction per write
//! made the writer spend a burst of webhooks, and then the inbox's confirmations of them, on syncs one
//! after another, while everything else queued behind them for the one write connection. Here a burst
//! costs one sync: the committer takes everything waiting (up to `BATCH`), runs it in order in one
//! transaction and answers each sender after the commit; a lone write is committed at once. A write that
//! fails fails its whole transaction, and every sender of it hears of the failure (none of it was
//! committed; notifications are redelivered, observations confirmed again, inbox rows taken again).
//! The SQL of each write lives with its table (`inbox.rs`, `applications.rs`); this is only the mechanism.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::{
    domain::{ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, InboxEntry, InboxRow, Source, StoreError},
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write waiting for the next transaction, and where its outcome goes.
pub(super) enum Pending {
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
    Recorded(bool),
    Applied(Option<Box<Applied>>),
    Taken(Vec<InboxRow>),
    Done,
}

impl Pending {
    /// Runs the write inside the group's transaction.
    async fn run(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ) -> Result<Outcome, StoreError> {
        Ok(match self {
            Pending::Record {
                entry, received_at, ..
            } => Outcome::Recorded(SqliteStore::record_in(tx, entry, *received_at).await?),
            Pending::Apply {
                id,
                seen,
                source,
                schedule,
                ..
            } => Outcome::Applied(
                SqliteStore::apply_in(tx, id, seen, *source, schedule)
                    .await?
                    .map(Box::new),
            ),
            Pending::Take {
                owner,
                lease,
                limit,
                ..
            } => Outcome::Taken(SqliteStore::take_in(tx, owner, *lease, *limit).await?),
            Pending::Finish { ids, .. } => {
                SqliteStore::finish_in(tx, ids).await?;
                Outcome::Done
            }
            Pending::Postpone { ids, until, .. } => {
                SqliteStore::postpone_in(tx, ids, *until).await?;
                Outcome::Done
            }
        })
    }

    /// Tells the sender what its write did; called only after the commit.
    fn answer(self, outcome: Outcome) {
        // A sender that went away (its caller gave up) needs no answer.
        match (self, outcome) {
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

/// Starts the committer; it stops when the returned sender (the store) is dropped.
pub(super) fn start(write: SqlitePool) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(write, receiver));
    sender
}

async fn run(write: SqlitePool, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        match commit_all(&write, &batch).await {
            Ok(outcomes) => {
                for (pending, outcome) in batch.drain(..).zip(outcomes) {
                    pending.answer(outcome);
                }
            }
            Err(e) => batch.drain(..).for_each(|pending| pending.fail(&e)),
        }
    }
}

/// Runs every write of the batch, in order, in one transaction; each sees the ones before it.
async fn commit_all(write: &SqlitePool, batch: &[Pending]) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = write.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for pending in batch {
        outcomes.push(pending.run(&mut tx).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}
