//! The PostgreSQL backend: several replicas sharing one database.
//!
//! What makes a cluster behave as one gateway lives here: the event log's sequence is commit order (a
//! counter row locked by each appending transaction; news is applied in group-commit rounds, so that one
//! lock hold and one WAL flush carry many changes, and webhook deliveries are recorded in rounds too);
//! inbox rows and due polls are taken with `FOR UPDATE SKIP LOCKED` and leases, so replicas share the work
//! and a dead replica's share is taken over when its leases run out; idempotency records are created
//! atomically; one replica at a time renews the OAuth pair (a transaction-scoped advisory lock); and every
//! append notifies the other replicas (`LISTEN`/`NOTIFY`). `LISTEN` and the advisory lock need a
//! session-mode connection: put no transaction-mode pooler (PgBouncer `pool_mode = transaction`) in
//! between.

mod applications;
mod erasure;
mod group_commit;
mod inbox;
mod interface;
mod oauth;
mod recorder;
mod requests;

use std::{str::FromStr, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Change, StoreError, StoreKey};
use crate::domain::ApplicationId;

/// The channel every append notifies, with `<seq>:<application id>` as payload.
const CHANNEL: &str = "onboarding_gateway_events";

/// Every session the store opens, before its first statement: no sequential scans. Each statement has an
/// index made for it, and a session keeps a statement's plan once made — perhaps made on a new
/// deployment's nearly empty tables, or on an inbox just vacuumed, where reading the whole table was the
/// cheaper plan. Kept, that plan reads every row of the applications table at each creation and change
/// once it holds millions, and every page of the inbox (a queue that leaves dead rows behind it until the
/// next vacuum) at each lease and clearing (BENCHMARKS.md §18). A statement no index can serve still
/// scans. Set with `SET` rather than as a startup parameter, which a session-mode pooler may refuse.
const SESSION: &str = "SET enable_seqscan = off";

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

pub struct PostgresStore {
    pool: PgPool,
    key: StoreKey,
    /// The replica's group-commit applier (`apply` goes through it).
    applier: mpsc::Sender<group_commit::Pending>,
    /// The replica's group recorder of webhook deliveries (`record_notification` goes through it).
    recorder: mpsc::Sender<recorder::Pending>,
}

impl PostgresStore {
    /// Connects; migrations are applied separately ([`PostgresStore::migrate`]), at start or by the
    /// `migrate` command.
    pub async fn connect(
        url: &str,
        key: StoreKey,
        options: &PostgresOptions,
    ) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("onboarding-gateway");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|connection, _| {
                Box::pin(async move { sqlx::raw_sql(SESSION).execute(connection).await.map(drop) })
            })
            .connect_with(connect.clone())
            .await?;
        // Named apart, so that an operator (and a test) can tell the applier's session in
        // `pg_stat_activity`.
        let applier = group_commit::start(
            connect.application_name("onboarding-gateway applier"),
            options.acquire_timeout,
        );
        let recorder = recorder::start(pool.clone());
        Ok(PostgresStore {
            pool,
            key,
            applier,
            recorder,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        super::rollback_tolerant(sqlx::migrate!("./migrations/postgres"))
            .run(&self.pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) async fn listen_impl(
        &self,
        stop: CancellationToken,
    ) -> Result<Option<mpsc::Receiver<Change>>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let notification = tokio::select! {
                    () = stop.cancelled() => return,
                    () = sender.closed() => return,
                    n = listener.recv() => n,
                };
                match notification {
                    Ok(n) => {
                        if let Some(change) = parse_payload(n.payload()) {
                            // A full channel only delays wake-ups; the periodic read catches up.
                            let _ = sender.try_send(change);
                        }
                    }
                    Err(e) => {
                        // The listener reconnects on the next receive; what was sent meanwhile is read
                        // from the log by the periodic tail.
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(receiver))
    }
}

fn parse_payload(payload: &str) -> Option<Change> {
    let (seq, id) = payload.split_once(':')?;
    Some(Change {
        seq: seq.parse().ok()?,
        application_id: ApplicationId::parse(id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            parse_payload("42:app-1"),
            Some(Change {
                seq: 42,
                application_id: ApplicationId::parse("app-1").unwrap()
            })
        );
        assert_eq!(parse_payload("x:app"), None);
        assert_eq!(parse_payload("42"), None);
    }
}
