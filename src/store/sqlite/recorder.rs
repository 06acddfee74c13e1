//! Notifications recorded in batches: whatever arrives while the single writer is busy goes into its next
//! transaction together.
//!
//! A notification must be committed before its sender gets `OK`, and with `durability = "full"` every
//! SQLite commit waits for a WAL sync. One transaction per notification made the writer spend a burst of
//! webhooks on syncs, one after another, while inbox workers and watchers' news queued behind them for the
//! one write connection. Here a burst costs one sync: the recorder takes everything waiting (up to
//! `BATCH`), inserts it in one transaction and answers each sender after the commit; a lone notification
//! is recorded at once.

use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::ApplicationId,
    store::{InboxEntry, StoreError},
};

/// A notification to record, when it was received, and where to say whether it was new.
pub(super) struct Pending {
    pub entry: InboxEntry,
    pub received_at: i64,
    pub reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// Notifications per transaction at most.
const BATCH: usize = 256;
/// Notifications queued beyond this wait for room (back-pressure on the webhook handlers).
const QUEUE: usize = 4096;

/// Starts the recorder; it stops when the returned sender (the store) is dropped.
pub(super) fn start(write: SqlitePool) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(write, receiver));
    sender
}

async fn run(write: SqlitePool, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        match record_all(&write, &batch).await {
            Ok(new) => {
                for (pending, new) in batch.drain(..).zip(new) {
                    let _ = pending.reply.send(Ok(new));
                }
            }
            // Nothing of the batch was committed: each sender hears of the failure.
            Err(e) => {
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

/// Whether each notification was new (not a delivery of one recorded before, nor earlier in the batch).
async fn record_all(write: &SqlitePool, batch: &[Pending]) -> Result<Vec<bool>, StoreError> {
    let mut tx = write.begin().await?;
    let mut new = Vec::with_capacity(batch.len());
    for pending in batch {
        new.push(insert(&mut tx, &pending.entry, pending.received_at).await?);
    }
    tx.commit().await?;
    Ok(new)
}

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
