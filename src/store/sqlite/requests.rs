//! Idempotency records.

use std::time::{Duration, SystemTime};

use sqlx::{Connection as _, Row};

use super::SqliteStore;
use crate::store::{Begin, RequestKey, StoreError, StoredOutcome, micros};

impl SqliteStore {
    pub(super) async fn begin_request_impl(
        &self,
        key: &RequestKey,
        fingerprint: &[u8],
        owner: &str,
        stale_after: Duration,
    ) -> Result<Begin, StoreError> {
        let hashed = self.key.hash(
            "request",
            &[key.caller.as_bytes(), key.method.as_bytes(), fingerprint],
        );
        let now = SystemTime::now();
        let mut writing = self.write.writing().await?;
        let mut tx = writing.begin().await?;
        let found = sqlx::query(
            "SELECT fingerprint, state, started_at, outcome FROM requests \
             WHERE caller = ? AND method = ? AND request_id = ?",
        )
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let begin = match found {
            None => {
                sqlx::query(
                    "INSERT INTO requests (caller, method, request_id, fingerprint, state, owner, \
                     started_at, created_at) VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?)",
                )
                .bind(&key.caller)
                .bind(key.method)
                .bind(&key.request_id)
                .bind(&hashed[..])
                .bind(owner)
                .bind(micros(now))
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
                Begin::Proceed
            }
            Some(row) => {
                let stored: Vec<u8> = row.try_get("fingerprint")?;
                let state: String = row.try_get("state")?;
                let started_at: i64 = row.try_get("started_at")?;
                let outcome: Option<String> = row.try_get("outcome")?;
                let done = outcome.as_deref().and_then(StoredOutcome::from_json);
                if stored != hashed {
                    Begin::Mismatch
                } else if let (true, Some(outcome)) = (state == "done", done) {
                    Begin::Done(outcome)
                } else if state == "in_progress"
                    && started_at > micros(now) - micros_of(stale_after)
                {
                    Begin::InProgress
                } else {
                    // Unknown, or its owner vanished: this attempt takes it over and finds out.
                    sqlx::query(
                        "UPDATE requests SET state = 'in_progress', owner = ?, started_at = ? \
                         WHERE caller = ? AND method = ? AND request_id = ?",
                    )
                    .bind(owner)
                    .bind(micros(now))
                    .bind(&key.caller)
                    .bind(key.method)
                    .bind(&key.request_id)
                    .execute(&mut *tx)
                    .await?;
                    Begin::Reconcile
                }
            }
        };
        tx.commit().await?;
        Ok(begin)
    }

    pub(super) async fn finish_request_impl(
        &self,
        key: &RequestKey,
        outcome: Option<&StoredOutcome>,
    ) -> Result<(), StoreError> {
        let (state, json) = match outcome {
            Some(outcome) => ("done", Some(outcome.to_json())),
            None => ("unknown", None),
        };
        sqlx::query(
            "UPDATE requests SET state = ?, outcome = ?, owner = NULL \
             WHERE caller = ? AND method = ? AND request_id = ?",
        )
        .bind(state)
        .bind(json)
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .execute(&mut *self.write.writing().await?)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_requests_before_impl(
        &self,
        cutoff: SystemTime,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM requests WHERE created_at < ?")
            .bind(micros(cutoff))
            .execute(&mut *self.write.writing().await?)
            .await?
            .rows_affected())
    }
}

fn micros_of(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
