//! The OAuth pair, sealed, shared by the replicas; renewals are serialised across them by an advisory lock
//! held for the length of a transaction (released on commit, rollback, or a lost connection).

use std::time::SystemTime;

use async_trait::async_trait;

use super::PostgresStore;
use crate::{
    connectpay::{
        PairStore, TokenPair,
        oauth::{PairLock, PairStoreError},
    },
    store::{
        micros,
        sealed_pair::{open_pair, seal_pair},
    },
};

/// Any fixed number, the same on every replica: names the renewal lock.
const RENEWAL_LOCK: i64 = 0x6f67_775f_6f61_7574; // "ogw_oaut"

#[async_trait]
impl PairStore for PostgresStore {
    async fn load(&self) -> Result<Option<TokenPair>, PairStoreError> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed FROM oauth_pair WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        sealed.map(|s| open_pair(&self.key, &s)).transpose()
    }

    async fn save(&self, pair: &TokenPair) -> Result<(), PairStoreError> {
        sqlx::query(
            "INSERT INTO oauth_pair (id, sealed, refresh_expires_at, updated_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, \
             refresh_expires_at = excluded.refresh_expires_at, updated_at = excluded.updated_at",
        )
        .bind(seal_pair(&self.key, pair))
        .bind(pair.refresh_expires_at.map(micros))
        .bind(micros(SystemTime::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lock(&self) -> Result<PairLock, PairStoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(RENEWAL_LOCK)
            .execute(&mut *tx)
            .await?;
        // Dropping the transaction rolls it back, which releases the lock.
        Ok(Box::new(tx))
    }
}
