//! Applications, the event log and the poller's bookkeeping.

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection as _;

use super::{
    SqliteStore,
    columns::{APPLICATION_COLUMNS, Columns},
    group_commit,
    inline_reads::{Bind, Missed},
};
use crate::{
    domain::{Application, ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, Event, Source, StoreError, micros, rows::StoreRow, rows::event},
};

/// Applications are read with their current sequence, under the event log's column names, in the order
/// rows are decoded by (columns.rs, `APPLICATION_COLUMNS`).
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

/// The event log's columns, under the names rows.rs reads and in the order rows are decoded by (columns.rs,
/// `EVENT_COLUMNS`).
macro_rules! event_columns {
    () => {
        "application_id, owner, external_reference, person_id, status, upstream_status, \
         last_known_status, baas_client_id, version, created_at, recorded_at AS updated_at, seq"
    };
}

pub(super) const BY_ID: &str = select_applications!("WHERE id = ?");
/// The ids as a JSON array of strings.
const BY_IDS: &str = select_applications!("WHERE id IN (SELECT value FROM json_each(?))");
/// Terminal applications are never polled again, so a poll time means "not finished".
pub(super) const WAITING_LONGEST: &str =
    select_applications!("WHERE next_poll_at IS NOT NULL ORDER BY updated_at LIMIT ?");
pub(super) const LATEST_BY_REFERENCE: &str = select_applications!(
    "WHERE owner = ? AND external_reference = ? ORDER BY created_at DESC, rowid DESC LIMIT 1"
);
pub(super) const LATEST_BY_PERSON: &str =
    select_applications!("WHERE person_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1");
pub(super) const EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE application_id = ? AND seq > ? ORDER BY seq LIMIT ?"
);
const ALL_EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
);
/// The sequences as a JSON array.
const EVENTS_AT: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq"
);
const LATEST_BY_SESSION: &str =
    select_applications!("WHERE session_hash = ? ORDER BY created_at DESC, rowid DESC LIMIT 1");

fn next_poll(
    schedule: &PollSchedule,
    app: &Application,
    unchanged: u32,
    now: SystemTime,
) -> Option<i64> {
    schedule
        .next(app.status, unchanged, rand::random::<f64>())
        .map(|pause| micros(now + pause))
}

impl SqliteStore {
    pub(super) fn session_hash(&self, session: &SecretString) -> [u8; 32] {
        self.key
            .hash("idv session", &[session.expose_secret().as_bytes()])
    }

    /// Appends `app` to the event log inside `tx`; returns its sequence.
    fn append(tx: &Connection, app: &Application) -> Result<u64, StoreError> {
        let seq: i64 = tx
            .prepare_cached(
                "INSERT INTO events (application_id, version, owner, external_reference, person_id, \
                 status, upstream_status, last_known_status, baas_client_id, created_at, recorded_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            )?
            .query_row(
                params![
                    app.id.as_str(),
                    app.version as i64,
                    app.owner,
                    app.external_reference,
                    app.person_id,
                    app.status.as_str(),
                    app.upstream_status,
                    app.last_known_status.as_str(),
                    app.baas_client_id,
                    micros(app.create_time),
                    micros(app.update_time),
                ],
                |row| row.get(0),
            )?;
        Ok(seq as u64)
    }

    /// The application's current version inside `tx`, and how many polls in a row found it unchanged.
    fn current_in(tx: &Connection, id: &ApplicationId) -> Result<Option<(Event, u32)>, StoreError> {
        let mut statement = tx.prepare_cached(BY_ID)?;
        let mut rows = statement.query([id.as_str()])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let row = Columns::in_order(row, &APPLICATION_COLUMNS);
        Ok(Some((event(&row)?, row.integer("unchanged_polls")? as u32)))
    }

    /// Creates the application in the writer's next transaction (group_commit.rs).
    pub(super) async fn insert_application_impl(
        &self,
        app: Application,
        session: &SecretString,
        schedule: &PollSchedule,
    ) -> Result<Applied, StoreError> {
        self.commit(|reply| group_commit::Pending::Insert {
            application: Box::new(app),
            session_hash: self.session_hash(session),
            schedule: schedule.clone(),
            reply,
        })
        .await
    }

    /// Creates `app` inside `tx`. An application that exists already (a retried create) is not created
    /// again: what `app` says is applied to it instead.
    pub(super) fn insert_in(
        tx: &Connection,
        app: &Application,
        session_hash: &[u8; 32],
        schedule: &PollSchedule,
    ) -> Result<Applied, StoreError> {
        if Self::current_in(tx, &app.id)?.is_some() {
            let seen = Observation {
                status: app.status,
                upstream_status: app.upstream_status.clone(),
                person_id: app.person_id.clone(),
                baas_client_id: app.baas_client_id.clone(),
            };
            return Self::apply_in(tx, &app.id, &seen, Source::Other, schedule)?
                .ok_or_else(|| StoreError("application vanished".into()));
        }
        let seq = Self::append(tx, app)?;
        tx.prepare_cached(
            "INSERT INTO applications (id, owner, external_reference, person_id, status, upstream_status, \
             last_known_status, baas_client_id, version, last_seq, session_hash, created_at, updated_at, \
             next_poll_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            app.id.as_str(),
            app.owner,
            app.external_reference,
            app.person_id,
            app.status.as_str(),
            app.upstream_status,
            app.last_known_status.as_str(),
            app.baas_client_id,
            app.version as i64,
            seq as i64,
            &session_hash[..],
            micros(app.create_time),
            micros(app.update_time),
            next_poll(schedule, app, 0, app.update_time),
        ])?;
        Ok(Applied {
            event: Event {
                seq,
                application: app.clone(),
            },
            changed: true,
        })
    }

    /// Applies `seen` in the writer's next transaction, with whatever else is waiting (group_commit.rs).
    pub(super) async fn apply_impl(
        &self,
        id: &ApplicationId,
        seen: &Observation,
        source: Source,
        schedule: &PollSchedule,
    ) -> Result<Option<Applied>, StoreError> {
        self.commit(|reply| group_commit::Pending::Apply {
            id: id.clone(),
            seen: seen.clone(),
            source,
            schedule: schedule.clone(),
            reply,
        })
        .await
    }

    /// Runs `seen` through the application's status machine inside `tx`; a change is appended to the log.
    /// `None` when the application is unknown.
    pub(super) fn apply_in(
        tx: &Connection,
        id: &ApplicationId,
        seen: &Observation,
        source: Source,
        schedule: &PollSchedule,
    ) -> Result<Option<Applied>, StoreError> {
        let Some((current, unchanged)) = Self::current_in(tx, id)? else {
            return Ok(None);
        };
        let now = crate::domain::now();
        let Some(next) = current.application.apply(seen, now) else {
            if source == Source::Poll {
                let unchanged = unchanged.saturating_add(1);
                tx.prepare_cached(
                    "UPDATE applications SET unchanged_polls = ?, next_poll_at = ? WHERE id = ?",
                )?
                .execute(params![
                    unchanged as i64,
                    next_poll(schedule, &current.application, unchanged, now),
                    id.as_str(),
                ])?;
            }
            return Ok(Some(Applied {
                event: current,
                changed: false,
            }));
        };
        let seq = Self::append(tx, &next)?;
        tx.prepare_cached(
            "UPDATE applications SET person_id = ?, status = ?, upstream_status = ?, \
             last_known_status = ?, baas_client_id = ?, version = ?, last_seq = ?, updated_at = ?, \
             next_poll_at = ?, unchanged_polls = 0 WHERE id = ?",
        )?
        .execute(params![
            next.person_id,
            next.status.as_str(),
            next.upstream_status,
            next.last_known_status.as_str(),
            next.baas_client_id,
            next.version as i64,
            seq as i64,
            micros(next.update_time),
            next_poll(schedule, &next, 0, now),
            id.as_str(),
        ])?;
        Ok(Some(Applied {
            event: Event {
                seq,
                application: next,
            },
            changed: true,
        }))
    }

    pub(super) async fn waiting_longest_impl(
        &self,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(WAITING_LONGEST)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn current_of_impl(
        &self,
        ids: &[ApplicationId],
    ) -> Result<Vec<Event>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(ApplicationId::as_str).collect();
        let ids = serde_json::to_string(&ids).expect("strings serialise");
        self.events(BY_IDS, &[Bind::Text(&ids)]).await
    }

    /// The first application `query` (one of the constants above) finds for `binds`.
    pub(super) async fn one(
        &self,
        query: &'static str,
        binds: &[Bind<'_>],
    ) -> Result<Option<Event>, StoreError> {
        Ok(self.events(query, binds).await?.into_iter().next())
    }

    /// What `query` (one of the constants above) finds for `binds`: on the caller's thread where it can
    /// be (inline_reads.rs), otherwise from the read pool.
    async fn events(
        &self,
        query: &'static str,
        binds: &[Bind<'_>],
    ) -> Result<Vec<Event>, StoreError> {
        match self.inline.events(query, binds) {
            Ok(found) => return Ok(found),
            Err(Missed::Failed(e)) => return Err(e),
            Err(Missed::Busy) => {}
        }
        let rows = binds
            .iter()
            .fold(sqlx::query(query), |query, bind| match *bind {
                Bind::Text(text) => query.bind(text),
                Bind::Integer(integer) => query.bind(integer),
            })
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn application_for_session_impl(
        &self,
        session: &SecretString,
    ) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query(LATEST_BY_SESSION)
            .bind(&self.session_hash(session)[..])
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(event).transpose()
    }

    pub(super) async fn events_after_impl(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let binds = [
            Bind::Text(id.as_str()),
            Bind::Integer(after as i64),
            Bind::Integer(limit as i64),
        ];
        self.events(EVENTS_AFTER, &binds).await
    }

    pub(super) async fn all_events_after_impl(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let binds = [Bind::Integer(after as i64), Bind::Integer(limit as i64)];
        self.events(ALL_EVENTS_AFTER, &binds).await
    }

    pub(super) async fn events_at_impl(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().map(|&seq| seq as i64).collect();
        self.events(EVENTS_AT, &[Bind::Text(&super::json_ids(&seqs))])
            .await
    }

    pub(super) async fn last_seq_impl(&self) -> Result<u64, StoreError> {
        // sqlite_sequence keeps the highest AUTOINCREMENT value even after the rows are deleted.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                .fetch_optional(&self.read)
                .await?;
        Ok(last.unwrap_or(0) as u64)
    }

    pub(super) async fn log_horizon_impl(&self) -> Result<u64, StoreError> {
        let horizon: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'log_horizon'")
            .fetch_one(&self.read)
            .await?;
        Ok(horizon as u64)
    }

    pub(super) async fn take_due_polls_impl(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "UPDATE applications SET next_poll_at = ? WHERE id IN (SELECT id FROM applications \
             WHERE next_poll_at <= ? ORDER BY next_poll_at LIMIT ?) RETURNING id AS application_id, \
             owner, external_reference, person_id, status, upstream_status, last_known_status, baas_client_id, \
             version, created_at, updated_at, last_seq AS seq",
        )
            .bind(micros(now + lease))
            .bind(micros(now))
            .bind(limit as i64)
            .fetch_all(&mut *self.write.writing().await?)
            .await?;
        rows.iter().map(event).collect()
    }

    pub(super) async fn postpone_poll_impl(
        &self,
        id: &ApplicationId,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE applications SET next_poll_at = ? WHERE id = ? AND next_poll_at IS NOT NULL",
        )
        .bind(micros(at))
        .bind(id.as_str())
        .execute(&mut *self.write.writing().await?)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_events_before_impl(
        &self,
        cutoff: SystemTime,
    ) -> Result<u64, StoreError> {
        let mut writing = self.write.writing().await?;
        let mut tx = writing.begin().await?;
        let newest_gone: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) FROM events WHERE recorded_at < ?")
                .bind(micros(cutoff))
                .fetch_one(&mut *tx)
                .await?;
        let Some(newest_gone) = newest_gone else {
            return Ok(0);
        };
        // Everything up to that sequence goes, so the horizon says exactly what is gone.
        let deleted = sqlx::query("DELETE FROM events WHERE seq <= ?")
            .bind(newest_gone)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE meta SET value = max(value, ?) WHERE name = 'log_horizon'")
            .bind(newest_gone)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::columns::EVENT_COLUMNS;

    /// Applications and events are decoded by position (columns.rs): every read of them must select the
    /// columns in the order decoded, against the schema the migrations make.
    #[test]
    fn reads_select_the_columns_they_are_decoded_by() {
        let connection = Connection::open_in_memory().unwrap();
        super::super::migrate_for_test(&connection);
        let selected = |query: &str| -> Vec<String> {
            let statement = connection.prepare(query).unwrap();
            statement
                .column_names()
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert_eq!(selected(BY_ID), APPLICATION_COLUMNS);
        for query in [
            BY_IDS,
            WAITING_LONGEST,
            LATEST_BY_REFERENCE,
            LATEST_BY_PERSON,
            LATEST_BY_SESSION,
            EVENTS_AFTER,
            ALL_EVENTS_AFTER,
            EVENTS_AT,
        ] {
            assert_eq!(
                selected(query)[..EVENT_COLUMNS.len()],
                *EVENT_COLUMNS,
                "{query}"
            );
        }
    }
}
