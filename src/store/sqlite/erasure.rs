//! Erasing applications: on an operator's request, and by retention once they have long been finished.

use std::time::SystemTime;

use sqlx::{Connection as _, Sqlite, Transaction};

use super::SqliteStore;
use crate::{
    domain::ApplicationId,
    store::{StoreError, micros},
};

/// Deletes the idempotency records whose stored outcome is one application, found by
/// `requests_by_application` (migration 0002): the expression must stay the index's.
const ERASE_REQUESTS: &str =
    "DELETE FROM requests WHERE json_extract(outcome, '$.application.id') = ?";

impl SqliteStore {
    /// Deletes everything the store holds about one application, inside `tx`.
    async fn erase_in(tx: &mut Transaction<'_, Sqlite>, id: &str) -> Result<bool, StoreError> {
        let person: Option<Option<String>> =
            sqlx::query_scalar("SELECT person_id FROM applications WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
        let Some(person) = person else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM events WHERE application_id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM inbox WHERE application_id = ? OR (person_id IS NOT NULL AND person_id = ?)")
            .bind(id)
            .bind(person)
            .execute(&mut **tx)
            .await?;
        sqlx::query(ERASE_REQUESTS)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM applications WHERE id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }

    pub(super) async fn erase_application_impl(
        &self,
        id: &ApplicationId,
    ) -> Result<bool, StoreError> {
        // IMMEDIATE: the erase command writes beside a running gateway, and a deferred transaction
        // that reads first could not take the write lock after the gateway's next write.
        let mut writing = self.write.writing().await?;
        let mut tx = writing.begin_with("BEGIN IMMEDIATE").await?;
        let erased = Self::erase_in(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        // The write-ahead log still holds the pages as they were before; fold it into the (securely
        // deleted) file and empty it. Best effort: a long reader elsewhere can hold it back.
        if erased
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *writing)
                .await
        {
            tracing::warn!(error = %e, "could not checkpoint the write-ahead log after an erasure");
        }
        Ok(erased)
    }

    pub(super) async fn erase_finished_before_impl(
        &self,
        cutoff: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut writing = self.write.writing().await?;
        let mut tx = writing.begin_with("BEGIN IMMEDIATE").await?;
        // Finished applications are never polled again: no poll time.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM applications WHERE next_poll_at IS NULL AND updated_at < ? LIMIT ?",
        )
        .bind(micros(cutoff))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            Self::erase_in(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::ERASE_REQUESTS;

    /// The records' table holds every request of the idempotency window: erasing one application must find
    /// its records through `requests_by_application`, not read them all while it holds the write lock.
    #[test]
    fn erasing_finds_the_applications_idempotency_records_by_index() {
        let connection = Connection::open_in_memory().unwrap();
        super::super::migrate_for_test(&connection);
        let mut plan = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {ERASE_REQUESTS}"))
            .unwrap();
        let steps: Vec<String> = plan
            .query_map(["app-1"], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            steps,
            ["SEARCH requests USING INDEX requests_by_application (<expr>=?)"]
        );
    }
}
