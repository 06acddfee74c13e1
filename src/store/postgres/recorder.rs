//! Group recording for the webhook inbox: the notifications waiting to be recorded at one moment go in with
//! one statement, in one transaction.
//!
//! Each delivery must be committed before it is acknowledged. One `INSERT` per delivery cost a round trip,
//! a commit and a wake-up of the webhook worker each: under a burst the recordings queued for the pool's
//! connections and every one waited for a WAL flush of its own. Here a replica's recorder inserts
//! whatever is waiting (up to [`ROUND`]) with one `INSERT … SELECT FROM UNNEST`, and answers each delivery
//! after that commit; a lone delivery is recorded at once, a burst is carried by a few rounds.
//! Acknowledged still means committed.

use std::{collections::HashSet, time::SystemTime};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::ApplicationId,
    store::{InboxEntry, StoreError, micros},
};

/// A delivery waiting to be recorded, and where its outcome goes: whether it was new.
pub(super) struct Pending {
    pub entry: InboxEntry,
    pub reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// Deliveries per statement at most.
const ROUND: usize = 256;
/// Deliveries queued beyond this wait for room (back-pressure on the webhook handlers).
const QUEUE: usize = 4096;

/// Starts the replica's recorder; it stops when the returned sender (the store) is dropped.
pub(super) fn start(pool: PgPool) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(pool, receiver));
    sender
}

async fn run(pool: PgPool, mut queue: mpsc::Receiver<Pending>) {
    let mut round = Vec::with_capacity(ROUND);
    while queue.recv_many(&mut round, ROUND).await > 0 {
        match insert(&pool, &round).await {
            Ok(new) => {
                for (pending, new) in round.drain(..).zip(new) {
                    let _ = pending.reply.send(Ok(new));
                }
            }
            // One delivery the database refuses must not cost the others theirs: each is tried alone.
            // Not after any other failure (no connection, a timeout), which each would only meet again.
            Err(sqlx::Error::Database(_)) if round.len() > 1 => {
                for pending in round.drain(..) {
                    let alone = insert(&pool, std::slice::from_ref(&pending)).await;
                    let _ = pending
                        .reply
                        .send(alone.map(|new| new[0]).map_err(StoreError::from));
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                for pending in round.drain(..) {
                    let _ = pending.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

/// Inserts `round` in one statement; for each delivery, in order, whether it was new. Deliveries already
/// recorded (by this round, an earlier one or another replica) are left as they are.
async fn insert(pool: &PgPool, round: &[Pending]) -> Result<Vec<bool>, sqlx::Error> {
    let entries = || round.iter().map(|p| &p.entry);
    let keys: Vec<&[u8]> = entries().map(|e| &e.dedupe_key[..]).collect();
    let application_ids: Vec<Option<&str>> = entries()
        .map(|e| e.application_id.as_ref().map(ApplicationId::as_str))
        .collect();
    let person_ids: Vec<Option<&str>> = entries().map(|e| e.person_id.as_deref()).collect();
    let claimed: Vec<Option<&str>> = entries().map(|e| e.claimed_status.as_deref()).collect();
    let sent_at: Vec<Option<&str>> = entries().map(|e| e.sent_at.as_deref()).collect();
    let traces: Vec<Option<&str>> = entries().map(|e| e.trace_context.as_deref()).collect();
    let via_application: Vec<bool> = entries().map(|e| e.via_application).collect();
    let inserted: Vec<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO inbox (dedupe_key, application_id, person_id, claimed_status, sent_at, \
         trace_context, via_application, received_at, not_before) \
         SELECT k, a, p, c, s, t, v, $8, $8 \
         FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::bool[]) AS n(k, a, p, c, s, t, v) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key",
    )
    .bind(keys)
    .bind(application_ids)
    .bind(person_ids)
    .bind(claimed)
    .bind(sent_at)
    .bind(traces)
    .bind(via_application)
    .bind(micros(SystemTime::now()))
    .fetch_all(pool)
    .await?;
    // A key twice in one round is inserted once: the first delivery carrying it counts as the new one.
    let mut new: HashSet<Vec<u8>> = inserted.into_iter().collect();
    Ok(entries().map(|e| new.remove(&e.dedupe_key[..])).collect())
}
