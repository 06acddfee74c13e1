//! The webhook inbox, shared by the replicas: rows are taken with `SKIP LOCKED` under a lease, so each
//! is worked on by one replica at a time, and a dead replica's rows are taken over when their lease ends.

use std::time::{Duration, SystemTime};

use sqlx::Row;
use tokio::sync::oneshot;

use super::{PostgresStore, recorder};
use crate::store::{InboxEntry, InboxRow, StoreError, from_micros, micros, rows::inbox_row};

impl PostgresStore {
    /// Recorded by the replica's recorder (`recorder.rs`), in a round with whatever else is waiting;
    /// answers after the commit.
    pub(super) async fn record_notification_impl(
        &self,
        entry: &InboxEntry,
    ) -> Result<bool, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let pending = recorder::Pending {
            entry: entry.clone(),
            reply,
        };
        let closed = || StoreError("the store is closing".into());
        self.recorder.send(pending).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    pub(super) async fn take_notifications_impl(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let now = SystemTime::now();
        // A leased row is not due until its lease ends (as on SQLite), so the due rows are one range of
        // `inbox_due`, taken in the order they came due: a lease reads them, not the rows leased or
        // postponed for later, however many those are. The test of `lease_until` stays for rows leased by a
        // replica of an earlier version, which left `not_before` as it was.
        let rows = sqlx::query(
            "UPDATE inbox SET lease_owner = $1, lease_until = $2, not_before = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM inbox WHERE not_before <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3) \
             ORDER BY not_before, id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *",
        )
        .bind(owner)
        .bind(micros(now + lease))
        .bind(micros(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(inbox_row).collect()
    }

    pub(super) async fn finish_notifications_impl(&self, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM inbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn postpone_notifications_impl(
        &self,
        ids: &[i64],
        until: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbox SET lease_owner = NULL, lease_until = NULL, not_before = $1 WHERE id = ANY($2)",
        )
        .bind(micros(until))
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn inbox_backlog_impl(&self) -> Result<(u64, Option<SystemTime>), StoreError> {
        let row = sqlx::query("SELECT count(*) AS waiting, min(received_at) AS oldest FROM inbox")
            .fetch_one(&self.pool)
            .await?;
        let waiting: i64 = row.try_get("waiting")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok((waiting as u64, oldest.map(from_micros)))
    }
}
