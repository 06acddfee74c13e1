//! Stores opened directly, for tests of the `Store` trait itself: the same settings on both backends.

use std::{path::Path, time::Duration};

use onboarding_gateway::{
    domain::{Application, ApplicationId, Status, poll::PollSchedule},
    store::{
        InboxEntry, PostgresStore, SqliteStore, Store, StoreKey,
        postgres::PostgresOptions,
        sqlite::{Durability, SqliteOptions},
    },
};
use secrecy::SecretString;

use super::{STORE_KEY, postgres::TestDatabase};

fn key() -> StoreKey {
    StoreKey::from_secret(&SecretString::from(STORE_KEY)).unwrap()
}

/// A poll schedule of one minute throughout: nothing in a store test waits for a poll.
pub fn schedule() -> PollSchedule {
    PollSchedule {
        idv_interval: Duration::from_secs(60),
        review_interval: Duration::from_secs(60),
        max_interval: Duration::from_secs(60),
    }
}

/// Every status after IDV_TOKEN_GENERATED on the way to an issued account, in order.
pub const LATER_STATUSES: [Status; 4] = [
    Status::IdvApproved,
    Status::ApplicationCaptured,
    Status::ComplianceReview,
    Status::AccountIssued,
];

/// Webhook delivery `n` (its own dedupe key) about `application`.
pub fn delivery(n: usize, application: &ApplicationId) -> InboxEntry {
    let mut dedupe_key = [0xd; 32];
    dedupe_key[..8].copy_from_slice(&n.to_le_bytes());
    InboxEntry {
        dedupe_key,
        application_id: Some(application.clone()),
        person_id: None,
        claimed_status: Some("APPROVED".into()),
        sent_at: None,
        trace_context: None,
        via_application: true,
    }
}

/// Records application `id` of "caller" as a submit would, at IDV_TOKEN_GENERATED, with external reference
/// `reference` (its session id is derived from the id).
pub async fn create(store: &dyn Store, id: &ApplicationId, reference: &str) {
    let app = Application::created(
        id.clone(),
        "caller".into(),
        reference.into(),
        super::seen(Status::IdvTokenGenerated),
        onboarding_gateway::domain::now(),
    );
    let session = SecretString::from(format!("session-{id}"));
    store
        .insert_application(app, &session, &schedule())
        .await
        .unwrap();
}

/// A SQLite store in `dir` (a file, so lookups by key run inline), fully durable, two read connections.
pub async fn sqlite(dir: &Path) -> SqliteStore {
    let url = format!("sqlite://{}", dir.join("gateway.db").display());
    let options = SqliteOptions {
        busy_timeout: Duration::from_secs(5),
        durability: Durability::Full,
        read_connections: 2,
        take_over: true,
    };
    SqliteStore::open(&url, key(), &options).await.unwrap()
}

/// A PostgreSQL store on `database`, migrated.
pub async fn postgres(database: &TestDatabase) -> PostgresStore {
    let options = PostgresOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(30),
    };
    let store = PostgresStore::connect(&database.url, key(), &options)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

/// Two tests of one check (an `async fn(&dyn Store)`): `$sqlite` on a fresh SQLite file, `$postgres` on a
/// fresh PostgreSQL database.
#[macro_export]
macro_rules! on_each_backend {
    ($check:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            let store = $crate::common::stores::sqlite(dir.path()).await;
            $check(&store).await;
            store.close().await;
        }

        #[tokio::test]
        async fn $postgres() {
            let database = $crate::common::postgres::TestDatabase::create().await;
            $check(&$crate::common::stores::postgres(&database).await).await;
        }
    };
}
