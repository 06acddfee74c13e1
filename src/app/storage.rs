//! The store the configuration names: SQLite for one replica, PostgreSQL for several.

use std::sync::Arc;

use secrecy::ExposeSecret;

use super::StartError;
use crate::{
    config::{Config, ConfigError},
    connectpay::PairStore,
    store::{
        Backend, PostgresStore, SqliteStore, Store, StoreKey, postgres::PostgresOptions,
        sqlite::SqliteOptions,
    },
};

/// The store, under both of the interfaces the gateway uses.
pub(super) struct Opened {
    pub(super) store: Arc<dyn Store>,
    pub(super) pairs: Arc<dyn PairStore>,
}

fn store_key(config: &Config) -> Result<StoreKey, StartError> {
    Ok(match &config.store.key {
        Some(secret) => StoreKey::from_secret(secret)
            .map_err(|e| ConfigError(vec![format!("store.key: {e}")]))?,
        None => StoreKey::ephemeral(),
    })
}

/// Opens the store; `serving` when this process is the gateway itself rather than an operator command.
pub(super) async fn open_store(
    config: &Config,
    migrate: bool,
    serving: bool,
) -> Result<Opened, StartError> {
    let url = config
        .store
        .url
        .as_ref()
        .ok_or_else(|| ConfigError(vec!["store.url: required".into()]))?
        .expose_secret();
    let key = store_key(config)?;
    match Backend::of(url) {
        // SQLite is embedded: its migrations always run at open.
        Some(Backend::Sqlite) => {
            let options = SqliteOptions {
                busy_timeout: config.store.busy_timeout,
                durability: config.store.durability,
                read_connections: config.store.read_connections,
                take_over: serving,
            };
            let store = Arc::new(
                SqliteStore::open(url, key, &options)
                    .await
                    .map_err(StartError::Store)?,
            );
            Ok(Opened {
                store: store.clone(),
                pairs: store,
            })
        }
        Some(Backend::Postgres) => {
            let options = PostgresOptions {
                max_connections: config.store.max_connections,
                acquire_timeout: config.store.acquire_timeout,
            };
            let store = Arc::new(
                PostgresStore::connect(url, key, &options)
                    .await
                    .map_err(StartError::Store)?,
            );
            if migrate {
                store.migrate().await.map_err(StartError::Store)?;
            }
            Ok(Opened {
                store: store.clone(),
                pairs: store,
            })
        }
        None => Err(ConfigError(vec!["store.url: unknown backend".into()]).into()),
    }
}
