//! Observations that arrive together, the same on both backends: SQLite commits whatever waits for its one
//! writer in one transaction, PostgreSQL applies it in group-commit rounds. Each observation still runs
//! through its own application's status machine in turn — no version lost or repeated, never backwards,
//! every answer what the log holds — and an unknown application among them spoils nothing for the others.
//!
//! Writes of every kind at once, too: on SQLite the group committer writes through a connection of its own
//! while idempotency records, erasure and the poller's leases go through the write pool, and neither may
//! fail for the other's lock.
//!
//! And webhook deliveries that arrive together, some of them twice: each notification is new exactly once
//! and recorded once. SQLite records them in the writer's groups, PostgreSQL in the recorder's rounds of
//! one statement, where one delivery the database refuses spoils nothing for the rest of its round.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    seen,
    stores::{create, delivery, schedule},
};
use futures::future::join_all;
use onboarding_gateway::{
    domain::{Application, ApplicationId, Status},
    store::{Begin, InboxEntry, InboxRow, RequestKey, Source, Store},
};
use secrecy::SecretString;

const APPLICATIONS: usize = 20;
/// Each application hears every later status twice, in an order of no one's choosing.
const NEWS: [Status; 4] = common::stores::LATER_STATUSES;

fn id(n: usize) -> ApplicationId {
    ApplicationId::parse(&format!("write-{n}")).unwrap()
}

async fn observations_arriving_together(store: &dyn Store) {
    let schedule = schedule();
    for n in 0..APPLICATIONS {
        create(store, &id(n), &format!("ref-{n}")).await;
    }

    // Every (application, status) twice, and ten applications nobody created, in a fixed scrambled
    // order, so that each application's news arrives out of order and interleaved with the others'.
    let mut news: Vec<(usize, ApplicationId, Status)> = (0..APPLICATIONS)
        .flat_map(|n| NEWS.iter().chain(NEWS.iter()).map(move |s| (id(n), *s)))
        .chain((0..10).map(|n| {
            let nobody = ApplicationId::parse(&format!("nobody-{n}")).unwrap();
            (nobody, Status::IdvApproved)
        }))
        .enumerate()
        .map(|(i, (id, status))| (i, id, status))
        .collect();
    news.sort_by_key(|(i, _, _)| (*i as u64).wrapping_mul(2_654_435_761) % (1 << 32));

    let answers = join_all(news.iter().map(|(_, id, status)| {
        let schedule = &schedule;
        async move {
            let answer = store
                .apply(id, &seen(*status), Source::Other, schedule)
                .await;
            (id.clone(), answer.unwrap())
        }
    }))
    .await;

    let mut changes: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for (id, answer) in answers {
        if id.as_str().starts_with("nobody-") {
            assert!(answer.is_none(), "{id} was never created");
            continue;
        }
        let applied = answer.unwrap_or_else(|| panic!("{id} exists"));
        assert_eq!(applied.event.application.id, id);
        if applied.changed {
            let fresh = changes
                .entry(id.to_string())
                .or_default()
                .insert((applied.event.seq, applied.event.application.version));
            assert!(fresh, "{id}: two answers reported the same new version");
        }
    }

    let mut every_seq = BTreeSet::new();
    for n in 0..APPLICATIONS {
        let log = store.events_after(&id(n), 0, 100).await.unwrap();
        let versions: Vec<u64> = log.iter().map(|e| e.application.version).collect();
        assert_eq!(
            versions,
            (1..=log.len() as u64).collect::<Vec<_>>(),
            "write-{n}: versions"
        );
        assert!(
            log.windows(2).all(|w| w[0].seq < w[1].seq),
            "write-{n}: log order"
        );
        let ranks: Vec<u8> = log.iter().map(|e| rank(e.application.status)).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] < w[1]),
            "write-{n} went backwards: {ranks:?}"
        );
        assert_eq!(
            log.last().unwrap().application.status,
            Status::AccountIssued,
            "write-{n}"
        );
        // The answers that reported a change are exactly the log's entries after the first.
        let logged: BTreeSet<(u64, u64)> = log[1..]
            .iter()
            .map(|e| (e.seq, e.application.version))
            .collect();
        assert_eq!(
            changes.remove(&id(n).to_string()).unwrap_or_default(),
            logged,
            "write-{n}"
        );
        for e in &log {
            assert!(every_seq.insert(e.seq), "sequence {} used twice", e.seq);
        }
    }
}

/// Creations, observations, notifications and inbox leases (the group committer's writes on SQLite) run at
/// the same time as idempotency records, poll leases and erasures (the write pool's): every one succeeds and
/// does what it says.
async fn writes_of_every_kind_at_once(store: &dyn Store) {
    const EACH: usize = 40;
    let schedule = schedule();
    let app = |n: usize| {
        Application::created(
            ApplicationId::parse(&format!("every-{n}")).unwrap(),
            "caller".into(),
            format!("every-ref-{n}"),
            seen(Status::IdvTokenGenerated),
            onboarding_gateway::domain::now(),
        )
    };
    let session = |n: usize| SecretString::from(format!("every-session-{n}"));
    // Half exist before the burst, to be observed and erased during it.
    for n in 0..EACH / 2 {
        store
            .insert_application(app(n), &session(n), &schedule)
            .await
            .unwrap();
    }

    let creations = join_all((EACH / 2..EACH).map(|n| {
        let schedule = &schedule;
        async move {
            store
                .insert_application(app(n), &session(n), schedule)
                .await
        }
    }));
    let observations = join_all((0..EACH / 4).map(|n| {
        let schedule = &schedule;
        async move {
            store
                .apply(
                    &app(n).id,
                    &seen(Status::IdvApproved),
                    Source::Other,
                    schedule,
                )
                .await
        }
    }));
    let erasures = join_all(
        (EACH / 4..EACH / 2).map(|n| async move { store.erase_application(&app(n).id).await }),
    );
    // About applications that are not erased (erasure takes an application's waiting notifications).
    let notifications = join_all((0..EACH).map(|n| async move {
        let entry = InboxEntry {
            dedupe_key: [n as u8; 32],
            application_id: Some(app(n % (EACH / 4)).id),
            person_id: None,
            claimed_status: Some("APPROVED".into()),
            sent_at: None,
            trace_context: None,
            via_application: true,
        };
        store.record_notification(&entry).await
    }));
    let requests = join_all((0..EACH).map(|n| async move {
        let key = RequestKey {
            caller: "caller".into(),
            method: "SubmitKyc",
            request_id: format!("request-{n}"),
        };
        store
            .begin_request(
                &key,
                b"fingerprint",
                "owner",
                std::time::Duration::from_secs(60),
            )
            .await
    }));
    let leases = join_all((0..EACH / 4).map(|_| async {
        let far_ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        store
            .take_due_polls(far_ahead, std::time::Duration::from_secs(1), 4)
            .await
    }));
    let (creations, observations, erasures, notifications, requests, leases) = futures::join!(
        creations,
        observations,
        erasures,
        notifications,
        requests,
        leases
    );

    for created in creations {
        assert!(created.unwrap().changed, "a new application is a change");
    }
    for observed in observations {
        let applied = observed.unwrap().expect("the application exists");
        assert_eq!(applied.event.application.status, Status::IdvApproved);
    }
    for erased in erasures {
        assert!(erased.unwrap(), "the application existed");
    }
    for recorded in notifications {
        assert!(recorded.unwrap(), "each notification is new");
    }
    for begun in requests {
        assert!(
            matches!(begun.unwrap(), Begin::Proceed),
            "each request is new"
        );
    }
    let leased: usize = leases.into_iter().map(|taken| taken.unwrap().len()).sum();
    assert!(leased <= EACH, "an application leased twice");

    for n in 0..EACH {
        let current = store.current(&app(n).id).await.unwrap();
        let erased = (EACH / 4..EACH / 2).contains(&n);
        assert_eq!(current.is_none(), erased, "every-{n}");
    }
    let taken = store
        .take_notifications("worker", std::time::Duration::from_secs(60), 2 * EACH)
        .await
        .unwrap();
    assert_eq!(taken.len(), EACH, "every notification was recorded once");
}

fn rank(status: Status) -> u8 {
    NEWS.iter()
        .position(|s| *s == status)
        .map_or(0, |p| p as u8 + 1)
}

on_each_backend!(
    observations_arriving_together:
    sqlite_applies_observations_arriving_together_in_turn,
    postgres_applies_observations_arriving_together_in_turn
);

on_each_backend!(
    writes_of_every_kind_at_once:
    sqlite_runs_writes_of_every_kind_at_once,
    postgres_runs_writes_of_every_kind_at_once
);

/// An inbox row is taken by one worker at a time: leased, it is not taken again until the lease runs out
/// (a worker that vanished), postponed, not before its time, and cleared, never.
async fn inbox_leases(store: &dyn Store) {
    use std::time::{Duration, SystemTime};
    let note = |n: u8| InboxEntry {
        dedupe_key: [n; 32],
        application_id: None,
        person_id: Some(format!("person-{n}")),
        claimed_status: None,
        sent_at: None,
        trace_context: None,
        via_application: false,
    };
    for n in 1..=3 {
        assert!(store.record_notification(&note(n)).await.unwrap());
    }
    let lease = Duration::from_millis(400);

    let taken = store.take_notifications("first", lease, 10).await.unwrap();
    assert_eq!(taken.len(), 3);
    assert!(taken.iter().all(|row| row.attempts == 1));
    assert!(
        store
            .take_notifications("second", lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased rows were taken again"
    );

    let ids: Vec<i64> = taken.iter().map(|row| row.id).collect();
    store.finish_notifications(&ids[..1]).await.unwrap();
    store
        .postpone_notifications(&ids[1..2], SystemTime::now() + Duration::from_secs(3600))
        .await
        .unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;

    let again = store.take_notifications("second", lease, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|row| row.id).collect::<Vec<_>>(),
        ids[2..].to_vec(),
        "only the row whose lease ran out comes back"
    );
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].entry, note(3));
}

on_each_backend!(
    inbox_leases:
    sqlite_leases_inbox_rows_to_one_worker_at_a_time,
    postgres_leases_inbox_rows_to_one_worker_at_a_time
);

const DISTINCT_DELIVERIES: usize = 150;

/// A burst of webhook deliveries arriving together, each answered on its own: a notification delivered
/// twice in the burst is new exactly once, and every new one is in the inbox as delivered. The rows taken.
async fn record_burst(store: &dyn Store) -> Vec<InboxRow> {
    // Every third notification is delivered twice, in the same burst.
    let deliveries: Vec<InboxEntry> = (0..DISTINCT_DELIVERIES)
        .chain((0..DISTINCT_DELIVERIES).step_by(3))
        .map(|n| delivery(n, &id(n)))
        .collect();
    let answers = join_all(deliveries.iter().map(|d| store.record_notification(d))).await;
    let mut new_per_key: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (d, answer) in deliveries.iter().zip(answers) {
        *new_per_key.entry(d.dedupe_key).or_default() += usize::from(answer.unwrap());
    }
    assert_eq!(new_per_key.len(), DISTINCT_DELIVERIES);
    assert!(
        new_per_key.values().all(|new| *new == 1),
        "a notification was new other than exactly once: {new_per_key:?}"
    );

    let rows = store
        .take_notifications("worker", std::time::Duration::from_secs(60), 1000)
        .await
        .unwrap();
    let recorded: BTreeSet<[u8; 32]> = rows.iter().map(|row| row.entry.dedupe_key).collect();
    assert_eq!(
        rows.len(),
        DISTINCT_DELIVERIES,
        "each notification is recorded once"
    );
    assert_eq!(recorded, new_per_key.keys().copied().collect());
    for row in &rows {
        let n: usize = row.entry.application_id.as_ref().unwrap().as_str()["write-".len()..]
            .parse()
            .unwrap();
        assert_eq!(row.entry, delivery(n, &id(n)), "recorded as delivered");
    }
    rows
}

async fn deliveries_arriving_together(store: &dyn Store) {
    record_burst(store).await;
}

on_each_backend!(
    deliveries_arriving_together:
    sqlite_records_deliveries_arriving_together,
    postgres_records_deliveries_arriving_together
);

/// PostgreSQL records a burst in the recorder's rounds, one statement and one commit each (a round's rows
/// share their time of receipt), not one transaction per delivery.
#[tokio::test]
async fn postgres_records_a_burst_of_deliveries_in_rounds() {
    let database = common::postgres::TestDatabase::create().await;
    let rows = record_burst(&common::stores::postgres(&database).await).await;
    let rounds: BTreeSet<std::time::SystemTime> = rows.iter().map(|row| row.received_at).collect();
    assert!(
        rounds.len() <= DISTINCT_DELIVERIES / 10,
        "{DISTINCT_DELIVERIES} deliveries were recorded in {} commits",
        rounds.len()
    );
}

/// A delivery PostgreSQL refuses (text with a NUL byte) fails alone: the deliveries recorded in the same
/// round are recorded all the same.
#[tokio::test]
async fn postgres_records_the_rest_of_a_round_one_delivery_spoils() {
    let database = common::postgres::TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let spoiled = InboxEntry {
        person_id: Some("person\0".into()),
        ..delivery(0, &id(0))
    };
    let deliveries: Vec<InboxEntry> = std::iter::once(spoiled)
        .chain((1..40).map(|n| delivery(n, &id(n))))
        .collect();
    let answers = join_all(deliveries.iter().map(|d| store.record_notification(d))).await;
    assert!(answers[0].is_err(), "PostgreSQL stores no NUL in text");
    assert!(
        answers[1..].iter().all(|a| matches!(a, Ok(true))),
        "the rest of the round was lost: {answers:?}"
    );
    let rows = store
        .take_notifications("worker", std::time::Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 39);
}

/// PostgreSQL updates an application's row once per change: its new columns and its pointer to the new
/// version in one statement. Two updates of a row per change are two row versions and, since the poll
/// time moves with every change, two sets of index entries: database work on every notification.
#[tokio::test]
async fn postgres_updates_an_application_row_once_per_change() {
    const CREATED: usize = 10;
    let database = common::postgres::TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let schedule = schedule();
    for n in 0..CREATED {
        create(&store, &id(n), &format!("ref-{n}")).await;
    }
    // A change to each alone (rounds of one), then a change to each at once (rounds of several).
    for n in 0..CREATED {
        let applied = store
            .apply(&id(n), &seen(Status::IdvApproved), Source::Other, &schedule)
            .await
            .unwrap()
            .unwrap();
        assert!(applied.changed);
    }
    let together = join_all((0..CREATED).map(|n| {
        let schedule = &schedule;
        let store = &store;
        async move {
            store
                .apply(
                    &id(n),
                    &seen(Status::ApplicationCaptured),
                    Source::Other,
                    schedule,
                )
                .await
        }
    }))
    .await;
    assert!(
        together
            .iter()
            .all(|a| a.as_ref().unwrap().as_ref().unwrap().changed)
    );
    // Each creation points its row at its first version: one update; each change: one more.
    let expected = 3 * CREATED as i64;
    store.close().await;
    drop(store);

    // The server counts a session's row updates when the session ends or idles (each query here is a
    // transaction of its own, so each reads the counts afresh); wait for every count.
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let updates = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'applications'",
        )
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counted = updates().fetch_one(&mut connection).await.unwrap();
        assert!(
            counted <= expected,
            "{counted} updates of application rows for {CREATED} creations and {} changes",
            2 * CREATED
        );
        if counted == expected {
            // Nothing more arrives late.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            assert_eq!(
                updates().fetch_one(&mut connection).await.unwrap(),
                expected
            );
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "only {counted} updates counted after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A PostgreSQL store's applier has its session before the first news arrives (setting one up, a server
/// process and TLS, takes longer than a round, and the first notifications after a start would otherwise
/// queue behind it), and has set it to plan each statement once.
#[tokio::test]
async fn postgres_applier_is_connected_before_the_first_news() {
    use sqlx::Connection;
    let database = common::postgres::TestDatabase::create().await;
    let store = common::stores::postgres(&database).await;
    let mut watcher = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'onboarding-gateway applier' \
         AND query = 'SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off'",
    )
    .fetch_one(&mut watcher)
    .await
    .unwrap()
        != 1
    {
        assert!(
            std::time::Instant::now() < until,
            "no applier session set to plan each statement once before any news"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.close().await;
}
