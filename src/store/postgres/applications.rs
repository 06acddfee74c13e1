//! Applications, the event log (in commit order) and the poller's bookkeeping.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::{PostgresStore, group_commit};
use crate::{
    domain::{Application, ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, Event, Source, StoreError, micros, rows::event},
};

/// Applications are read with their current sequence, under the event log's column names.
macro_rules! select_applications {
    ($tail:literal) => {
        concat!(
            "SELECT id AS application_id, owner, external_reference, person_id, status, upstream_status, ",
            "last_known_status, baas_client_id, version, created_at, updated_at, last_seq AS seq, ",
            "unchanged_polls FROM applications ",
            $tail
        )
    };
}

pub(super) const BY_ID: &str = select_applications!("WHERE id = $1");
pub(super) const BY_IDS: &str = select_applications!("WHERE id = ANY($1)");
/// Sorted before they are locked, so that concurrent rounds take shared rows in the same order.
pub(super) const BY_IDS_FOR_UPDATE: &str =
    select_applications!("WHERE id = ANY($1) ORDER BY id FOR UPDATE");
/// Terminal applications are never polled again, so a poll time means "not finished".
pub(super) const WAITING_LONGEST: &str =
    select_applications!("WHERE next_poll_at IS NOT NULL ORDER BY updated_at LIMIT $1");
pub(super) const LATEST_BY_REFERENCE: &str = select_applications!(
    "WHERE owner = $1 AND external_reference = $2 ORDER BY created_at DESC, created_order DESC LIMIT 1"
);
pub(super) const LATEST_BY_PERSON: &str = select_applications!(
    "WHERE person_id = $1 ORDER BY created_at DESC, created_order DESC LIMIT 1"
);
const LATEST_BY_SESSION: &str = select_applications!(
    "WHERE session_hash = $1 ORDER BY created_at DESC, created_order DESC LIMIT 1"
);

const EVENT_COLUMNS: &str = "application_id, owner, external_reference, person_id, status, upstream_status, \
    last_known_status, baas_client_id, version, created_at, recorded_at AS updated_at, seq";

pub(super) fn next_poll(
    schedule: &PollSchedule,
    app: &Application,
    unchanged: u32,
    now: SystemTime,
) -> Option<i64> {
    schedule
        .next(app.status, unchanged, rand::random::<f64>())
        .map(|pause| micros(now + pause))
}

impl PostgresStore {
    pub(super) fn session_hash(&self, session: &SecretString) -> [u8; 32] {
        self.key
            .hash("idv session", &[session.expose_secret().as_bytes()])
    }

    pub(super) async fn insert_application_impl(
        &self,
        app: Application,
        session: &SecretString,
        schedule: &PollSchedule,
    ) -> Result<Applied, StoreError> {
        let next_poll_at = next_poll(schedule, &app, 0, app.update_time);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO applications (id, owner, external_reference, person_id, status, upstream_status, \
             last_known_status, baas_client_id, version, last_seq, session_hash, created_at, updated_at, \
             next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(app.id.as_str())
        .bind(&app.owner)
        .bind(&app.external_reference)
        .bind(&app.person_id)
        .bind(app.status.as_str())
        .bind(&app.upstream_status)
        .bind(app.last_known_status.as_str())
        .bind(&app.baas_client_id)
        .bind(app.version as i64)
        .bind(&self.session_hash(session)[..])
        .bind(micros(app.create_time))
        .bind(micros(app.update_time))
        .bind(next_poll_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            drop(tx);
            let seen = Observation {
                status: app.status,
                upstream_status: app.upstream_status.clone(),
                person_id: app.person_id.clone(),
                baas_client_id: app.baas_client_id.clone(),
            };
            return self
                .apply_impl(&app.id, &seen, Source::Other, schedule)
                .await?
                .ok_or_else(|| StoreError("application vanished".into()));
        }
        // The row as inserted, now pointing at its first version.
        let written = group_commit::Written {
            application: &app,
            unchanged_polls: 0,
            next_poll_at,
        };
        let seq =
            group_commit::write_and_append(&mut tx, &[written], std::slice::from_ref(&app), None)
                .await?
                .unwrap_or_default();
        tx.commit().await?;
        Ok(Applied {
            event: Event {
                seq,
                application: app,
            },
            changed: true,
        })
    }

    /// Runs the status machine on `seen` in the replica's next group-commit round (`group_commit.rs`).
    pub(super) async fn apply_impl(
        &self,
        id: &ApplicationId,
        seen: &Observation,
        source: Source,
        schedule: &PollSchedule,
    ) -> Result<Option<Applied>, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let pending = group_commit::Pending {
            id: id.clone(),
            seen: seen.clone(),
            source,
            schedule: schedule.clone(),
            reply,
        };
        let closed = || StoreError("the store is closing".into());
        self.applier.send(pending).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    pub(super) async fn waiting_longest_impl(
        &self,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(WAITING_LONGEST)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event).collect()
    }

    /// The first application `query` (one of the constants above) finds for `binds`.
    pub(super) async fn current_of_impl(
        &self,
        ids: &[ApplicationId],
    ) -> Result<Vec<Event>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(ApplicationId::as_str).collect();
        let rows = sqlx::query(BY_IDS).bind(ids).fetch_all(&self.pool).await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn one(
        &self,
        query: &'static str,
        binds: &[&str],
    ) -> Result<Option<Event>, StoreError> {
        let row = binds
            .iter()
            .fold(sqlx::query(query), |query, bind| query.bind(*bind))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event).transpose()
    }

    pub(super) async fn application_for_session_impl(
        &self,
        session: &SecretString,
    ) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query(LATEST_BY_SESSION)
            .bind(&self.session_hash(session)[..])
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event).transpose()
    }

    pub(super) async fn events_after_impl(
        &self,
        id: Option<&ApplicationId>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = match id {
            Some(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE application_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                )))
                .bind(id.as_str())
                .bind(after as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
                )))
                .bind(after as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(event).collect()
    }

    pub(super) async fn events_at_impl(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().map(|&seq| seq as i64).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq = ANY($1) ORDER BY seq"
        )))
        .bind(seqs)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn last_seq_impl(&self) -> Result<u64, StoreError> {
        let last: i64 = sqlx::query_scalar("SELECT value FROM log_sequence WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(last as u64)
    }

    pub(super) async fn log_horizon_impl(&self) -> Result<u64, StoreError> {
        let horizon: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'log_horizon'")
            .fetch_one(&self.pool)
            .await?;
        Ok(horizon as u64)
    }

    pub(super) async fn take_due_polls_impl(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // SKIP LOCKED: replicas polling at once take different applications.
        let rows = sqlx::query(
            "UPDATE applications SET next_poll_at = $1 WHERE id IN (SELECT id FROM applications \
             WHERE next_poll_at <= $2 ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id AS application_id, owner, external_reference, person_id, status, upstream_status, \
             last_known_status, baas_client_id, version, created_at, updated_at, last_seq AS seq",
        )
        .bind(micros(now + lease))
        .bind(micros(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn postpone_poll_impl(
        &self,
        id: &ApplicationId,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE applications SET next_poll_at = $1 WHERE id = $2 AND next_poll_at IS NOT NULL",
        )
        .bind(micros(at))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_events_before_impl(
        &self,
        cutoff: SystemTime,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let newest_gone: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) FROM events WHERE recorded_at < $1")
                .bind(micros(cutoff))
                .fetch_one(&mut *tx)
                .await?;
        let Some(newest_gone) = newest_gone else {
            return Ok(0);
        };
        // Everything up to that sequence goes, so the horizon says exactly what is gone.
        let deleted = sqlx::query("DELETE FROM events WHERE seq <= $1")
            .bind(newest_gone)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE meta SET value = greatest(value, $1) WHERE name = 'log_horizon'")
            .bind(newest_gone)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
