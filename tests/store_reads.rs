//! Reads of applications as they are now, the same on both backends: many at once (`current_of`, how the
//! inbox reads a batch of notifications' applications), one by key (on SQLite answered on the caller's
//! thread, beside sqlx's pool), and versions by their place in the log (`events_at`, how a replica reads
//! the changes it heard of); each sees what was just committed. Reads by id arriving together each get
//! their own answer, and on PostgreSQL survive the server closing the store's connections.

mod common;

use std::collections::BTreeMap;

use common::{
    seen,
    stores::{create, schedule},
};
use futures::future::join_all;
use onboarding_gateway::{
    domain::{ApplicationId, Status},
    store::{InboxEntry, Source, Store},
};
use sqlx::{Connection, PgConnection};

fn id(n: usize) -> ApplicationId {
    ApplicationId::parse(&format!("read-{n}")).unwrap()
}

/// Approves the applications numbered `ns`.
async fn approve(store: &dyn Store, ns: impl Iterator<Item = usize>) {
    for n in ns {
        store
            .apply(
                &id(n),
                &seen(Status::IdvApproved),
                Source::Other,
                &schedule(),
            )
            .await
            .unwrap();
    }
}

/// Five applications, the even ones approved since; then what each read finds.
async fn reads_see_what_was_committed(store: &dyn Store) {
    for n in 0..5 {
        create(store, &id(n), &format!("ref-{n}")).await;
    }
    approve(store, (0..5).step_by(2)).await;

    // Known and unknown ids, one of them twice: each known application once, as it is now.
    let asked = [
        id(4),
        id(1),
        ApplicationId::parse("nobody").unwrap(),
        id(4),
        id(2),
    ];
    let found: BTreeMap<String, (Status, u64)> = store
        .current_of(&asked)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.application.id.to_string(),
                (e.application.status, e.application.version),
            )
        })
        .collect();
    let expected = BTreeMap::from([
        ("read-1".to_string(), (Status::IdvTokenGenerated, 1)),
        ("read-2".to_string(), (Status::IdvApproved, 2)),
        ("read-4".to_string(), (Status::IdvApproved, 2)),
    ]);
    assert_eq!(found, expected);
    assert!(store.current_of(&[]).await.unwrap().is_empty());

    // One by key, by id and by reference, right after the write.
    let current = store.current(&id(0)).await.unwrap().expect("read-0");
    assert_eq!(current.application.status, Status::IdvApproved);
    assert_eq!(current.application.external_reference, "ref-0");
    let latest = store
        .latest_for_reference("caller", "ref-3")
        .await
        .unwrap()
        .expect("ref-3");
    assert_eq!(latest.application.id, id(3));
    assert!(
        store
            .latest_for_reference("someone else", "ref-3")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .current(&ApplicationId::parse("nobody").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // Versions by their place in the log (how a replica reads what it heard others record), in log
    // order, the first versions too; a place the log does not hold is no error.
    let first_of_1 = store.events_after(&id(1), 0, 10).await.unwrap()[0].seq;
    let (approved_0, approved_4) = (current.seq, found_seq(store, 4).await);
    let at = store
        .events_at(&[approved_4, 1_000_000, first_of_1, approved_0])
        .await
        .unwrap();
    let at: Vec<(String, Status, u64)> = at
        .into_iter()
        .map(|e| (e.application.id.to_string(), e.application.status, e.seq))
        .collect();
    let mut expected = vec![
        ("read-0".to_string(), Status::IdvApproved, approved_0),
        ("read-1".to_string(), Status::IdvTokenGenerated, first_of_1),
        ("read-4".to_string(), Status::IdvApproved, approved_4),
    ];
    expected.sort_by_key(|(_, _, seq)| *seq);
    assert_eq!(at, expected);
}

async fn found_seq(store: &dyn Store, n: usize) -> u64 {
    store.current(&id(n)).await.unwrap().expect("known").seq
}

on_each_backend!(
    reads_see_what_was_committed:
    sqlite_reads_see_what_was_committed,
    postgres_reads_see_what_was_committed
);

/// Many reads by id at once, as a burst of webhooks and callers' reads make them: each gets its own
/// application as it is (the same id asked several times, unknown ids among them).
async fn reads_by_id_arriving_together(store: &dyn Store) {
    for n in 0..20 {
        create(store, &id(n), &format!("ref-{n}")).await;
    }
    approve(store, (0..20).step_by(3)).await;
    // 300 reads of 25 ids, 20 known: each id asked twelve times, all at once.
    let asked: Vec<usize> = (0..300).map(|i| i % 25).collect();
    let ids: Vec<ApplicationId> = asked.iter().map(|n| id(*n)).collect();
    let answers = join_all(ids.iter().map(|id| store.current(id))).await;
    for (n, answer) in asked.iter().zip(answers) {
        let found = answer.unwrap().map(|e| {
            (
                e.application.id.to_string(),
                e.application.status,
                e.application.version,
            )
        });
        let expected = (*n < 20).then(|| {
            let approved = n % 3 == 0;
            (
                format!("read-{n}"),
                if approved {
                    Status::IdvApproved
                } else {
                    Status::IdvTokenGenerated
                },
                if approved { 2 } else { 1 },
            )
        });
        assert_eq!(found, expected, "read-{n}");
    }
}

on_each_backend!(
    reads_by_id_arriving_together:
    sqlite_answers_reads_by_id_arriving_together,
    postgres_answers_reads_by_id_arriving_together
);

/// The server closes every connection the store holds (a restart, a failover, an idle timeout on the way):
/// the next read by id and the next recorded delivery are answered on new connections rather than
/// failing (a failed recording would cost the delivery its place in the inbox).
#[tokio::test]
async fn postgres_reads_and_records_after_the_server_closed_the_store_connections() {
    let database = common::postgres::TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let delivery = |n: u8| InboxEntry {
        dedupe_key: [n; 32],
        application_id: Some(id(0)),
        person_id: None,
        claimed_status: Some("APPROVED".into()),
        sent_at: None,
        trace_context: None,
        via_application: true,
    };
    create(&store, &id(0), "ref-0").await;
    // Connections are open now, the recorder's among them.
    assert!(store.current(&id(0)).await.unwrap().is_some());
    assert!(store.record_notification(&delivery(1)).await.unwrap());

    let mut admin = PgConnection::connect(&database.url).await.unwrap();
    let closed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(closed >= 2, "the store's connections were closed: {closed}");

    let read = store.current(&id(0)).await;
    assert_eq!(
        read.unwrap().map(|e| e.application.status),
        Some(Status::IdvTokenGenerated)
    );
    assert!(store.record_notification(&delivery(2)).await.unwrap());
    let rows = store
        .take_notifications("worker", std::time::Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "both deliveries are recorded");
}
