//! Rolling back: a store that a later version of the gateway has migrated holds a migration this version
//! does not know. This version applies the migrations it knows, opens the store and works on it, on both
//! backends (docs/kubernetes.md, Upgrading). Real PostgreSQL; each test makes its own database.

mod common;

use common::{postgres::TestDatabase, stores::create};
use onboarding_gateway::{domain::ApplicationId, store::Store};
use sqlx::Connection;

/// What sqlx records of a migration a later version applied, as it records its own; `checksum` is a
/// byte string in the backend's SQL.
fn later_migration(checksum: &str) -> String {
    format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'a later version''s migration', TRUE, {checksum}, 0)"
    )
}

/// The store still works after opening: an application recorded and read back.
async fn works(store: &dyn Store) {
    let id = ApplicationId::parse("after-rollback").unwrap();
    create(store, &id, "rollback-reference").await;
    let current = store.current(&id).await.unwrap().expect("recorded");
    assert_eq!(current.application.external_reference, "rollback-reference");
}

#[tokio::test]
async fn a_sqlite_store_migrated_by_a_later_version_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::stores::sqlite(dir.path()).await;
    store.close().await;
    drop(store);
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(later_migration("x'00'")))
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();

    let store = common::stores::sqlite(dir.path()).await;
    works(&store).await;
    store.close().await;
}

#[tokio::test]
async fn a_postgresql_store_migrated_by_a_later_version_opens() {
    let database = TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    store.close().await;
    drop(store);
    let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(later_migration("'\\x00'::bytea")))
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();

    let store = common::stores::postgres(&database).await;
    works(&store).await;
    store.close().await;
}
