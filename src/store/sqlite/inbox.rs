//! The webhook inbox: notifications recorded before they are acknowledged, leased to a worker while it
//! confirms them.

use std::time::{Duration, SystemTime};

use sqlx::Row;

use tokio::sync::oneshot;

use super::{SqliteStore, group_commit, json_ids};
use crate::store::{InboxEntry, InboxRow, StoreError, from_micros, micros, rows::inbox_row};

impl SqliteStore {
    pub(super) async fn record_notification_impl(
        &self,
        entry: &InboxEntry,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = group_commit::Pending::Record {
            entry: entry.clone(),
            received_at: micros(SystemTime::now()),
            reply,
        };
        let stopped = || StoreError("the store is closing".into());
        self.committer.send(pending).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub(super) async fn take_notifications_impl(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let now = SystemTime::now();
        let rows = sqlx::query(
            "UPDATE inbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM inbox WHERE not_before <= ? AND (lease_until IS NULL OR lease_until <= ?) \
             ORDER BY id LIMIT ?) RETURNING *",
        )
        .bind(owner)
        .bind(micros(now + lease))
        .bind(micros(now))
        .bind(micros(now))
        .bind(limit as i64)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(inbox_row).collect()
    }

    pub(super) async fn finish_notifications_impl(&self, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))")
            .bind(json_ids(ids))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn postpone_notifications_impl(
        &self,
        ids: &[i64],
        until: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbox SET lease_owner = NULL, lease_until = NULL, not_before = ? \
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(micros(until))
        .bind(json_ids(ids))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn inbox_backlog_impl(&self) -> Result<(u64, Option<SystemTime>), StoreError> {
        let row = sqlx::query("SELECT count(*) AS waiting, min(received_at) AS oldest FROM inbox")
            .fetch_one(&self.read)
            .await?;
        let waiting: i64 = row.try_get("waiting")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok((waiting as u64, oldest.map(from_micros)))
    }
}
