//! The OAuth pair as the store keeps it: a JSON document sealed with the store key.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{StoreKey, from_micros, micros};
use crate::connectpay::{TokenPair, oauth::PairStoreError};

const LABEL: &str = "oauth pair v1";

pub(super) fn seal_pair(store_key: &StoreKey, pair: &TokenPair) -> Vec<u8> {
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

pub(super) fn open_pair(store_key: &StoreKey, sealed: &[u8]) -> Result<TokenPair, PairStoreError> {
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
