//! Erasing applications: on an operator's request, and by retention once they have long been finished.

use std::time::SystemTime;

use sqlx::{Postgres, Transaction};

use super::PostgresStore;
use crate::{
    domain::ApplicationId,
    store::{StoreError, micros},
};

impl PostgresStore {
    /// Deletes everything the store holds about one application, inside `tx`.
    async fn erase_in(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<bool, StoreError> {
        let person: Option<Option<String>> =
            sqlx::query_scalar("SELECT person_id FROM applications WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
        let Some(person) = person else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM events WHERE application_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM inbox WHERE application_id = $1 OR (person_id IS NOT NULL AND person_id = $2)")
            .bind(id)
            .bind(person)
            .execute(&mut **tx)
            .await?;
        // Idempotency records whose stored outcome is this application, found by `requests_by_application`
        // (migration 0003): the expression must stay the index's.
        sqlx::query("DELETE FROM requests WHERE ((outcome::jsonb) -> 'application' ->> 'id') = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }

    pub(super) async fn erase_application_impl(
        &self,
        id: &ApplicationId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let erased = Self::erase_in(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(erased)
    }

    pub(super) async fn erase_finished_before_impl(
        &self,
        cutoff: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Finished applications are never polled again: no poll time. SKIP LOCKED: replicas cleaning
        // up at once take different ones.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM applications WHERE next_poll_at IS NULL AND updated_at < $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED",
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
