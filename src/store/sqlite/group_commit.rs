//! Group commit: the writes that arrive while the single writer is busy go into its next transaction
//! together — recorded notifications and applied observations alike.
//!
//! A notification must be committed before its sender gets `OK`, and an applied change before anyone hears
//! of it; with `durability = "full"` every SQLite commit waits for a WAL sync. One transaction per write
//! made the writer spend a burst of webhooks, and then the inbox's confirmations of them, on syncs one
//! after another, while everything else queued behind them for the one write connection. Here a burst
//! costs one sync: the committer takes everything waiting (up to `BATCH`), runs it in order in one
//! transaction and answers each sender after the commit; a lone write is committed at once. A write that
//! fails fails its whole transaction, and every sender of it hears of the failure (none of it was
//! committed; notifications are redelivered, observations confirmed again).

use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::{
    domain::{ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, InboxEntry, Source, StoreError},
};

/// One write waiting for the next transaction, and where its outcome goes.
pub(super) enum Pending {
    /// A notification to record, when it was received; the outcome says whether it was new.
    Record {
        entry: InboxEntry,
        received_at: i64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// What ConnectPay said about an application, to run through its status machine.
    Apply {
        id: ApplicationId,
        seen: Observation,
        source: Source,
        schedule: PollSchedule,
        reply: oneshot::Sender<Result<Option<Applied>, StoreError>>,
    },
}

/// What one write did, once its transaction has committed.
enum Outcome {
    Recorded(bool),
    Applied(Option<Box<Applied>>),
}

/// Writes per transaction at most.
const BATCH: usize = 256;
/// Writes queued beyond this wait for room (back-pressure on webhook handlers and inbox workers).
const QUEUE: usize = 4096;

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
                    match (pending, outcome) {
                        (Pending::Record { reply, .. }, Outcome::Recorded(new)) => {
                            let _ = reply.send(Ok(new));
                        }
                        (Pending::Apply { reply, .. }, Outcome::Applied(applied)) => {
                            let _ = reply.send(Ok(applied.map(|a| *a)));
                        }
                        _ => unreachable!(
                            "outcomes are produced in the order of the batch, one per write"
                        ),
                    }
                }
            }
            Err(e) => {
                for pending in batch.drain(..) {
                    let failed = || StoreError(e.0.clone());
                    match pending {
                        Pending::Record { reply, .. } => drop(reply.send(Err(failed()))),
                        Pending::Apply { reply, .. } => drop(reply.send(Err(failed()))),
                    }
                }
            }
        }
    }
}

/// Runs every write of the batch, in order, in one transaction; each sees the ones before it.
async fn commit_all(write: &SqlitePool, batch: &[Pending]) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = write.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for pending in batch {
        outcomes.push(match pending {
            Pending::Record {
                entry, received_at, ..
            } => Outcome::Recorded(insert(&mut tx, entry, *received_at).await?),
            Pending::Apply {
                id,
                seen,
                source,
                schedule,
                ..
            } => Outcome::Applied(
                SqliteStore::apply_in(&mut tx, id, seen, *source, schedule)
                    .await?
                    .map(Box::new),
            ),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Whether the notification was new (not a delivery of one recorded before, nor earlier in the batch).
async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    entry: &InboxEntry,
    received_at: i64,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (dedupe_key, application_id, person_id, claimed_status, sent_at, \
         trace_context, via_application, received_at, not_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&entry.dedupe_key[..])
    .bind(entry.application_id.as_ref().map(ApplicationId::as_str))
    .bind(&entry.person_id)
    .bind(&entry.claimed_status)
    .bind(&entry.sent_at)
    .bind(&entry.trace_context)
    .bind(entry.via_application)
    .bind(received_at)
    .bind(received_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
