//! The OAuth pair, sealed with the store's key: it must survive restarts and be shared, but a copy of the
//! database must not hand out ConnectPay access.

use std::time::SystemTime;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::SqliteStore;
use crate::{
    connectpay::{PairStore, TokenPair, oauth::PairStoreError},
    store::{from_micros, micros},
};

const LABEL: &str = "oauth pair v1";

pub(crate) fn seal_pair(store_key: &crate::store::StoreKey, pair: &TokenPair) -> Vec<u8> {
    let plain = json!({
        "access": pair.access_token.expose_secret(),
        "refresh": pair.refresh_token.expose_secret(),
        "accessExpiresAt": micros(pair.access_expires_at),
        "refreshExpiresAt": pair.refresh_expires_at.map(micros),
        "obtainedAt": micros(pair.obtained_at),
    })
    .to_string();
    store_key.seal(LABEL, plain.as_bytes())
}

pub(crate) fn open_pair(
    store_key: &crate::store::StoreKey,
    sealed: &[u8],
) -> Result<TokenPair, PairStoreError> {
    let plain = store_key
        .open(LABEL, sealed)
        .ok_or("the stored OAuth pair cannot be opened with this store key")?;
    let value: serde_json::Value = serde_json::from_slice(&plain)?;
    let text = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .map(|s| SecretString::from(s.to_owned()))
    };
    let time = |k: &str| value.get(k).and_then(|v| v.as_i64()).map(from_micros);
    Ok(TokenPair {
        access_token: text("access").ok_or("malformed OAuth pair")?,
        refresh_token: text("refresh").ok_or("malformed OAuth pair")?,
        access_expires_at: time("accessExpiresAt").ok_or("malformed OAuth pair")?,
        refresh_expires_at: time("refreshExpiresAt"),
        obtained_at: time("obtainedAt").unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

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
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
