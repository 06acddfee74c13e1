//! The webhook inbox: notifications recorded before they are acknowledged, leased to a worker while it
//! confirms them.

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};
use sqlx::Row;

use super::{SqliteStore, columns::Columns, group_commit, json_ids};
use crate::{
    domain::ApplicationId,
    store::{InboxEntry, InboxRow, StoreError, from_micros, micros, rows::inbox_row},
};

/// Leases due rows: owner, lease end, now, limit.
pub(super) const TAKE: &str = "UPDATE inbox SET lease_owner = ?1, lease_until = ?2, not_before = ?2, \
     attempts = attempts + 1 WHERE id IN \
     (SELECT id FROM inbox WHERE not_before <= ?3 ORDER BY not_before, id LIMIT ?4) RETURNING *";

impl SqliteStore {
    pub(super) async fn record_notification_impl(
        &self,
        entry: &InboxEntry,
    ) -> Result<bool, StoreError> {
        self.commit(|reply| group_commit::Pending::Record {
            entry: entry.clone(),
            received_at: micros(SystemTime::now()),
            reply,
        })
        .await
    }

    pub(super) async fn take_notifications_impl(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.commit(|reply| group_commit::Pending::Take {
            owner: owner.to_owned(),
            lease,
            limit,
            reply,
        })
        .await
    }

    pub(super) async fn finish_notifications_impl(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.commit(|reply| group_commit::Pending::Finish {
            ids: ids.to_vec(),
            reply,
        })
        .await
    }

    pub(super) async fn postpone_notifications_impl(
        &self,
        ids: &[i64],
        until: SystemTime,
    ) -> Result<(), StoreError> {
        self.commit(|reply| group_commit::Pending::Postpone {
            ids: ids.to_vec(),
            until: micros(until),
            reply,
        })
        .await
    }

    /// Records a notification inside `tx`: whether it was new (not a delivery of one recorded before,
    /// nor earlier in the same transaction).
    pub(super) fn record_in(
        tx: &Connection,
        entry: &InboxEntry,
        received_at: i64,
    ) -> Result<bool, StoreError> {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO inbox (dedupe_key, application_id, person_id, claimed_status, sent_at, \
                 trace_context, via_application, received_at, not_before) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
            )?
            .execute(params![
                &entry.dedupe_key[..],
                entry.application_id.as_ref().map(ApplicationId::as_str),
                entry.person_id,
                entry.claimed_status,
                entry.sent_at,
                entry.trace_context,
                entry.via_application,
                received_at,
                received_at,
            ])?;
        Ok(inserted == 1)
    }

    /// Leases to `owner` up to `limit` rows that are due, the longest due first, inside `tx`. A leased row
    /// is due again when its lease runs out (`not_before` moves to the lease's end), so "due" alone says
    /// what is free to take, and the index on `not_before` finds it without stepping over the rows being
    /// confirmed (that scan was a tenth of the gateway's CPU under webhook load).
    pub(super) fn take_in(
        tx: &Connection,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let now = SystemTime::now();
        let mut statement = tx.prepare_cached(TAKE)?;
        let mut rows = statement.query(params![
            owner,
            micros(now + lease),
            micros(now),
            limit as i64,
        ])?;
        let mut taken = Vec::new();
        while let Some(row) = rows.next()? {
            taken.push(inbox_row(&Columns::new(row))?);
        }
        Ok(taken)
    }

    pub(super) fn finish_in(tx: &Connection, ids: &[i64]) -> Result<(), StoreError> {
        tx.prepare_cached("DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))")?
            .execute([json_ids(ids)])?;
        Ok(())
    }

    pub(super) fn postpone_in(tx: &Connection, ids: &[i64], until: i64) -> Result<(), StoreError> {
        tx.prepare_cached(
            "UPDATE inbox SET lease_owner = NULL, lease_until = NULL, not_before = ? \
             WHERE id IN (SELECT value FROM json_each(?))",
        )?
        .execute(params![until, json_ids(ids)])?;
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
