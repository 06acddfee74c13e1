//! The OAuth pair, sealed with the store's key: it must survive restarts and be shared, but a copy of the
//! database must not hand out ConnectPay access.

use std::time::SystemTime;

use async_trait::async_trait;

use super::SqliteStore;
use crate::{
    connectpay::{PairStore, TokenPair, oauth::PairStoreError},
    store::{
        micros,
        sealed_pair::{open_pair, seal_pair},
    },
};

#[async_trait]
impl PairStore for SqliteStore {
    async fn load(&self) -> Result<Option<TokenPair>, PairStoreError> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed FROM oauth_pair WHERE id = 1")
                .fetch_optional(&self.read)
                .await?;
        sealed.map(|s| open_pair(&self.key, &s)).transpose()
    }

    async fn save(&self, pair: &TokenPair) -> Result<(), PairStoreError> {
        sqlx::query(
            "INSERT INTO oauth_pair (id, sealed, refresh_expires_at, updated_at) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, \
             refresh_expires_at = excluded.refresh_expires_at, updated_at = excluded.updated_at",
        )
        .bind(seal_pair(&self.key, pair))
        .bind(pair.refresh_expires_at.map(micros))
        .bind(micros(SystemTime::now()))
        .execute(&mut *self.write.writing().await?)
        .await?;
        Ok(())
    }
}
