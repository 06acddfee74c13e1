//! What the PostgreSQL store reads to do its work, as the server counts it (`pg_stat_user_tables`,
//! `pg_stat_user_indexes`): each statement reads the rows it is about, however large the tables have grown
//! around them — plans made while they were empty, notifications postponed for later, applications still
//! in progress.

mod common;

use common::{
    postgres::TestDatabase,
    seen,
    stores::{create, delivery, schedule},
};
use std::time::Duration;

use onboarding_gateway::{
    domain::{ApplicationId, Status},
    store::{Begin, PostgresStore, RequestKey, Source, Store, StoredOutcome},
};
use sqlx::{Connection, PgConnection};

/// How much each table grows beside the store: a whole-table read at least this many rows.
const GROWN: i64 = 20_000;

fn id(n: usize) -> ApplicationId {
    ApplicationId::parse(&format!("scan-{n}")).unwrap()
}

/// `count` applications inserted beside the store (as other replicas would insert them, and without an
/// `ANALYZE`): the first `finished` without a poll time, long finished; the rest still in progress.
async fn add_applications(connection: &mut PgConnection, count: i64, finished: i64) {
    sqlx::query(
        "INSERT INTO applications (id, owner, external_reference, status, upstream_status, \
         last_known_status, version, last_seq, created_at, updated_at, next_poll_at) \
         SELECT 'added-' || g, 'caller', 'added-' || g, 'IDV_TOKEN_GENERATED', 'IDV_TOKEN_GENERATED', \
         'IDV_TOKEN_GENERATED', 1, 0, g, g, CASE WHEN g <= $2 THEN NULL ELSE g END \
         FROM generate_series(1, $1::bigint) AS g",
    )
    .bind(count)
    .bind(finished)
    .execute(connection)
    .await
    .unwrap();
}

/// `count` notifications inserted beside the store, postponed far into the future.
async fn postpone_notifications(connection: &mut PgConnection, count: i64) {
    sqlx::query(
        "INSERT INTO inbox (dedupe_key, via_application, received_at, not_before) \
         SELECT sha256(('postponed-' || g)::bytea), false, 0, 9000000000000000 \
         FROM generate_series(1, $1::bigint) AS g",
    )
    .bind(count)
    .execute(connection)
    .await
    .unwrap();
}

/// `count` finished idempotency records of other applications inserted beside the store, each holding its
/// application as the outcome, as the gateway writes them.
async fn add_requests(connection: &mut PgConnection, count: i64) {
    sqlx::query(
        "INSERT INTO requests (caller, method, request_id, fingerprint, state, started_at, outcome, \
         created_at) \
         SELECT 'caller', 'SubmitIdvSession', 'added-' || g, sha256(('added-' || g)::bytea), 'done', g, \
         json_build_object('application', json_build_object('id', 'added-' || g))::text, g \
         FROM generate_series(1, $1::bigint) AS g",
    )
    .bind(count)
    .execute(connection)
    .await
    .unwrap();
}

/// One notification recorded, leased and cleared, as the inbox workers do; the lease takes it alone.
async fn notify(store: &PostgresStore, n: usize) {
    let entry = delivery(n, &id(n));
    assert!(store.record_notification(&entry).await.unwrap());
    let taken = store
        .take_notifications("worker", std::time::Duration::from_secs(60), 32)
        .await
        .unwrap();
    assert_eq!(
        taken
            .iter()
            .map(|row| row.entry.clone())
            .collect::<Vec<_>>(),
        vec![entry],
        "the lease takes the due notification only"
    );
    store.finish_notifications(&[taken[0].id]).await.unwrap();
}

/// Closes `store` and returns what `query` counts (rows of `(table, count)`) once the server has added
/// every session's reads: it does when a session ends, so the counts are read until they stop moving.
async fn reads_once_closed(
    store: PostgresStore,
    connection: &mut PgConnection,
    query: &'static str,
) -> Vec<(String, i64)> {
    store.close().await;
    drop(store);
    let read = || sqlx::query_as::<_, (String, i64)>(query);
    let mut counted = read().fetch_all(&mut *connection).await.unwrap();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let now = read().fetch_all(&mut *connection).await.unwrap();
        if now == counted {
            return counted;
        }
        counted = now;
    }
}

/// What `counted` (from `reads_once_closed`) holds for `table`.
fn count_for(counted: &[(String, i64)], table: &str) -> i64 {
    counted
        .iter()
        .find(|(name, _)| name == table)
        .unwrap_or_else(|| panic!("no count for {table}"))
        .1
}

/// Rows read by sequential scans, and index entries read, per table.
const TABLE_AND_INDEX_READS: &str = "SELECT t.relname::text, (coalesce(t.seq_tup_read, 0) + \
     coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes AS i WHERE i.relid = t.relid), 0))::bigint \
     FROM pg_stat_user_tables AS t WHERE t.relname IN ('applications', 'inbox', 'requests') ORDER BY 1";

/// PostgreSQL keeps a statement's plan once made. The gateway's sessions live long, and its statements
/// look rows up by id: a plan made while the applications table and the inbox were nearly empty (a new
/// deployment) must not read the whole table at every creation, change, lease and clearing once it has
/// grown, whether or not an `ANALYZE` has run since.
#[tokio::test]
async fn plans_made_on_small_tables_still_look_rows_up_by_id_once_they_have_grown() {
    const EARLY: usize = 40;
    const LATE: usize = 10;
    let database = TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let schedule = schedule();
    let change = |n: usize| {
        let (store, schedule) = (&store, &schedule);
        async move {
            store
                .apply(&id(n), &seen(Status::IdvApproved), Source::Other, schedule)
                .await
                .unwrap()
                .unwrap()
        }
    };
    // Enough of each on the nearly empty tables for each statement to keep a plan on every pooled session.
    for n in 0..EARLY {
        create(&store, &id(n), &format!("ref-{n}")).await;
    }
    for n in 0..EARLY {
        change(n).await;
        notify(&store, n).await;
    }
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    add_applications(&mut connection, GROWN, 0).await;
    postpone_notifications(&mut connection, GROWN).await;
    for n in EARLY..EARLY + LATE {
        create(&store, &id(n), &format!("ref-{n}")).await;
        assert!(change(n).await.changed);
        notify(&store, n).await;
    }

    let counted = reads_once_closed(
        store,
        &mut connection,
        "SELECT relname::text, coalesce(seq_tup_read, 0) FROM pg_stat_user_tables \
         WHERE relname IN ('applications', 'inbox') ORDER BY relname",
    )
    .await;
    let scanned: Vec<(String, i64)> = counted
        .into_iter()
        .filter(|(_, rows)| *rows >= GROWN)
        .collect();
    assert!(
        scanned.is_empty(),
        "rows read by scanning whole tables, for {LATE} creations, changes and notifications once each \
         table held {GROWN} rows more: {scanned:?}"
    );
}

/// An inbox lease reads the notifications that are due, not those postponed for later: behind a backlog
/// of retries (ConnectPay down for an hour), each lease must not walk past every one of them.
#[tokio::test]
async fn leases_read_due_notifications_not_the_postponed_ones() {
    const LEASES: usize = 10;
    let database = TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    postpone_notifications(&mut connection, GROWN).await;
    for n in 0..LEASES {
        notify(&store, n).await;
    }

    let counted = reads_once_closed(store, &mut connection, TABLE_AND_INDEX_READS).await;
    let inbox = count_for(&counted, "inbox");
    assert!(
        inbox < GROWN,
        "{inbox} inbox rows and index entries read for {LEASES} leases behind {GROWN} postponed \
         notifications"
    );
}

/// Retention's search for finished applications past their time reads those, not every application the
/// gateway holds: it runs every `retention.cleanup_interval` on every replica.
#[tokio::test]
async fn retention_reads_the_finished_applications_not_the_others() {
    const FINISHED: i64 = 5;
    let database = TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    add_applications(&mut connection, GROWN + FINISHED, FINISHED).await;
    let erased = store
        .erase_finished_before(std::time::SystemTime::now(), 200)
        .await
        .unwrap();
    assert_eq!(erased, FINISHED as u64);

    let counted = reads_once_closed(store, &mut connection, TABLE_AND_INDEX_READS).await;
    let applications = count_for(&counted, "applications");
    assert!(
        applications < GROWN,
        "{applications} application rows and index entries read to find {FINISHED} finished among \
         {GROWN} in progress"
    );
}

/// Erasing an application deletes the idempotency records holding it as their outcome. The records'
/// table holds every request of the idempotency window: erasure (retention's, up to a batch of
/// applications at a time, or an operator's) reads the erased application's records, not every one.
#[tokio::test]
async fn erasure_reads_the_applications_idempotency_records_not_every_one() {
    let database = TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    add_requests(&mut connection, GROWN).await;
    let erased = id(1);
    create(&store, &erased, "erased-reference").await;
    let application = store.current(&erased).await.unwrap().unwrap().application;
    let key = RequestKey {
        caller: "caller".into(),
        method: "SubmitIdvSession",
        request_id: "erased-request".into(),
    };
    let begun = store
        .begin_request(&key, b"fingerprint", "owner", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(begun, Begin::Proceed));
    store
        .finish_request(&key, Some(&StoredOutcome::Application(application)))
        .await
        .unwrap();
    assert!(store.erase_application(&erased).await.unwrap());

    let counted = reads_once_closed(store, &mut connection, TABLE_AND_INDEX_READS).await;
    let requests = count_for(&counted, "requests");
    assert!(
        requests < GROWN,
        "{requests} idempotency records and index entries read to erase one application's among \
         {GROWN} others"
    );
    // What erasure left: every other application's record, none of the erased one's.
    let left: Vec<String> =
        sqlx::query_scalar("SELECT request_id FROM requests WHERE request_id NOT LIKE 'added-%'")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM requests")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(others, GROWN);
}
