//! Idempotency records, shared by the replicas: the same key sent to two replicas at the same instant
//! creates one record, so exactly one of them proceeds.

use std::time::{Duration, SystemTime};

use sqlx::Row;

use super::PostgresStore;
use crate::store::{Begin, RequestKey, StoreError, StoredOutcome, micros};

impl PostgresStore {
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
        let now = micros(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO requests (caller, method, request_id, fingerprint, state, owner, started_at, \
             created_at) VALUES ($1, $2, $3, $4, 'in_progress', $5, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .bind(&hashed[..])
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 1 {
            tx.commit().await?;
            return Ok(Begin::Proceed);
        }
        let row = sqlx::query(
            "SELECT fingerprint, state, started_at, outcome FROM requests \
             WHERE caller = $1 AND method = $2 AND request_id = $3 FOR UPDATE",
        )
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .fetch_one(&mut *tx)
        .await?;
        let stored: Vec<u8> = row.try_get("fingerprint")?;
        let state: String = row.try_get("state")?;
        let started_at: i64 = row.try_get("started_at")?;
        let outcome: Option<String> = row.try_get("outcome")?;
        let done = outcome.as_deref().and_then(StoredOutcome::from_json);
        let stale_before = now - i64::try_from(stale_after.as_micros()).unwrap_or(i64::MAX);
        let begin = if stored != hashed {
            Begin::Mismatch
        } else if let (true, Some(outcome)) = (state == "done", done) {
            Begin::Done(outcome)
        } else if state == "in_progress" && started_at > stale_before {
            Begin::InProgress
        } else {
            // Unknown, or its owner vanished: this attempt takes it over and finds out.
            sqlx::query(
                "UPDATE requests SET state = 'in_progress', owner = $1, started_at = $2 \
                 WHERE caller = $3 AND method = $4 AND request_id = $5",
            )
            .bind(owner)
            .bind(now)
            .bind(&key.caller)
            .bind(key.method)
            .bind(&key.request_id)
            .execute(&mut *tx)
            .await?;
            Begin::Reconcile
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
            "UPDATE requests SET state = $1, outcome = $2, owner = NULL \
             WHERE caller = $3 AND method = $4 AND request_id = $5",
        )
        .bind(state)
        .bind(json)
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_requests_before_impl(
        &self,
        cutoff: SystemTime,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM requests WHERE created_at < $1")
            .bind(micros(cutoff))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
