//! The SQLite backend: the embedded default (`serve --sandbox`, single-replica deployments).
//!
//! Writes go through a pool of one connection, so the gateway's own writers queue in the pool instead of
//! contending for SQLite's lock; SQLite's single writer also makes the event log's sequence commit order.
//! Reads use a pool of their own (WAL lets them run beside the writer).

mod applications;
mod inbox;
mod oauth;
mod requests;

use std::{str::FromStr, time::Duration};

use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use super::{Event, StoreError, StoreKey, from_micros};
use crate::domain::{Application, ApplicationId, Status};

/// How durable a commit is: `Full` survives power loss, `Normal` (with WAL) survives the process being
/// killed but not the machine losing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a write waits for a lock someone else holds (another process, a backup) before failing.
    pub busy_timeout: Duration,
    pub durability: Durability,
    pub read_connections: u32,
}

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    key: StoreKey,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and applies the
    /// migrations.
    pub async fn open(
        url: &str,
        key: StoreKey,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        Self::recover(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        Ok(SqliteStore { write, read, key })
    }

    /// One process owns a SQLite database, so whatever a previous process left leased or in progress
    /// was left by a process that is gone: its notifications are free to take at once, and its
    /// idempotent requests' outcomes are unknown (the next attempt reconciles).
    async fn recover(write: &SqlitePool) -> Result<(), StoreError> {
        let mut tx = write.begin().await?;
        let released = sqlx::query(
            "UPDATE inbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let abandoned = sqlx::query(
            "UPDATE requests SET state = 'unknown', owner = NULL WHERE state = 'in_progress'",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if released + abandoned > 0 {
            tracing::info!(
                released,
                abandoned,
                "recovered what a previous process left in progress"
            );
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn status(row: &SqliteRow, column: &str) -> Result<Status, StoreError> {
    let name: String = row.try_get(column)?;
    Status::from_name(&name)
        .ok_or_else(|| StoreError(format!("unknown status {name:?} in {column}")))
}

/// A row with the event log's columns (`application_id` … `updated_at`, `seq`) as an event.
fn event(row: &SqliteRow) -> Result<Event, StoreError> {
    let id: String = row.try_get("application_id")?;
    Ok(Event {
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        application: Application {
            id: ApplicationId::parse(&id)
                .ok_or_else(|| StoreError("malformed application id".into()))?,
            external_reference: row.try_get("external_reference")?,
            person_id: row.try_get("person_id")?,
            status: status(row, "status")?,
            upstream_status: row.try_get("upstream_status")?,
            last_known_status: status(row, "last_known_status")?,
            baas_client_id: row.try_get("baas_client_id")?,
            version: u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or(0),
            create_time: from_micros(row.try_get("created_at")?),
            update_time: from_micros(row.try_get("updated_at")?),
        },
    })
}

/// Ids as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialise")
}

#[async_trait::async_trait]
impl super::Store for SqliteStore {
    async fn insert_application(
        &self,
        application: Application,
        session: &secrecy::SecretString,
        schedule: &crate::domain::poll::PollSchedule,
    ) -> Result<super::Applied, StoreError> {
        self.insert_application_impl(application, session, schedule)
            .await
    }

    async fn current(&self, id: &ApplicationId) -> Result<Option<Event>, StoreError> {
        self.one(applications::BY_ID, id.as_str()).await
    }

    async fn latest_for_reference(
        &self,
        external_reference: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.one(applications::LATEST_BY_REFERENCE, external_reference)
            .await
    }

    async fn latest_for_person(&self, person_id: &str) -> Result<Option<Event>, StoreError> {
        self.one(applications::LATEST_BY_PERSON, person_id).await
    }

    async fn application_for_session(
        &self,
        session: &secrecy::SecretString,
    ) -> Result<Option<Event>, StoreError> {
        self.application_for_session_impl(session).await
    }

    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &crate::domain::Observation,
        source: super::Source,
        schedule: &crate::domain::poll::PollSchedule,
    ) -> Result<Option<super::Applied>, StoreError> {
        self.apply_impl(id, seen, source, schedule).await
    }

    async fn events_after(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_after_impl(id, after, limit).await
    }

    async fn log_horizon(&self) -> Result<u64, StoreError> {
        self.log_horizon_impl().await
    }

    async fn take_due_polls(
        &self,
        now: std::time::SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.take_due_polls_impl(now, lease, limit).await
    }

    async fn postpone_poll(
        &self,
        id: &ApplicationId,
        at: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        self.postpone_poll_impl(id, at).await
    }

    async fn record_notification(&self, entry: &super::InboxEntry) -> Result<bool, StoreError> {
        self.record_notification_impl(entry).await
    }

    async fn take_notifications(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<super::InboxRow>, StoreError> {
        self.take_notifications_impl(owner, lease, limit).await
    }

    async fn finish_notifications(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.finish_notifications_impl(ids).await
    }

    async fn postpone_notifications(
        &self,
        ids: &[i64],
        until: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        self.postpone_notifications_impl(ids, until).await
    }

    async fn inbox_backlog(&self) -> Result<(u64, Option<std::time::SystemTime>), StoreError> {
        self.inbox_backlog_impl().await
    }

    async fn begin_request(
        &self,
        key: &super::RequestKey,
        fingerprint: &[u8],
        owner: &str,
        stale_after: Duration,
    ) -> Result<super::Begin, StoreError> {
        self.begin_request_impl(key, fingerprint, owner, stale_after)
            .await
    }

    async fn finish_request(
        &self,
        key: &super::RequestKey,
        outcome: Option<&super::StoredOutcome>,
    ) -> Result<(), StoreError> {
        self.finish_request_impl(key, outcome).await
    }

    async fn delete_events_before(&self, cutoff: std::time::SystemTime) -> Result<u64, StoreError> {
        self.delete_events_before_impl(cutoff).await
    }

    async fn delete_requests_before(
        &self,
        cutoff: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        self.delete_requests_before_impl(cutoff).await
    }
}
