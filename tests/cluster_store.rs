//! The shared PostgreSQL store under concurrent writers, used directly (no gateway process): the event
//! log's sequence is commit order, news waiting for the log counter commits together, a round never
//! overwrites a row moved under it, and two replicas' rounds racing for the same rows lose no version.
//! Real PostgreSQL; each test makes its own database and drops it. Replicas as processes: `cluster.rs`.

mod common;

use std::{sync::Arc, time::Duration};

use common::{STORE_KEY, postgres::TestDatabase, seen};
use onboarding_gateway::{
    domain::{Application, ApplicationId, Status, poll::PollSchedule},
    store::{PostgresStore, Source, Store, StoreKey, postgres::PostgresOptions},
};
use secrecy::SecretString;
use sqlx::Connection;

/// A store of the test's own (its own database), used directly, with the poll schedule its writes take.
async fn store_of_its_own() -> (TestDatabase, Arc<PostgresStore>, PollSchedule) {
    let database = TestDatabase::create().await;
    let key = StoreKey::from_secret(&SecretString::from(STORE_KEY)).unwrap();
    let options = PostgresOptions {
        max_connections: 16,
        acquire_timeout: Duration::from_secs(30),
    };
    let store = Arc::new(
        PostgresStore::connect(&database.url, key, &options)
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let schedule = PollSchedule {
        idv_interval: Duration::from_secs(60),
        review_interval: Duration::from_secs(60),
        max_interval: Duration::from_secs(60),
    };
    (database, store, schedule)
}

/// Records application `id` as a submit would (its session id is derived from the id).
async fn create(
    store: &PostgresStore,
    schedule: &PollSchedule,
    id: &ApplicationId,
    reference: &str,
) {
    let app = Application::created(
        id.clone(),
        "anonymous".into(),
        reference.into(),
        seen(Status::IdvTokenGenerated),
        onboarding_gateway::domain::now(),
    );
    store
        .insert_application(app, &SecretString::from(format!("s-{id}")), schedule)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_sequence_is_commit_order_so_a_tailing_reader_never_skips_one() {
    let (_database, store, schedule) = store_of_its_own().await;

    const WRITERS: usize = 12;
    const APPLICATIONS_EACH: usize = 10;
    // Many connections append at once: each inserts applications and moves them through three statuses.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, schedule) = (store.clone(), schedule.clone());
            tokio::spawn(async move {
                for a in 0..APPLICATIONS_EACH {
                    let id = ApplicationId::parse(&format!("app-{w}-{a}")).unwrap();
                    create(&store, &schedule, &id, &format!("ref-{w}")).await;
                    for status in [
                        Status::IdvApproved,
                        Status::ComplianceReview,
                        Status::AccountIssued,
                    ] {
                        store
                            .apply(&id, &seen(status), Source::Other, &schedule)
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }
            })
        })
        .collect();

    // A reader tails the log the whole time: every batch must continue exactly where the last one ended.
    let total = (WRITERS * APPLICATIONS_EACH * 4) as u64;
    let mut cursor = 0;
    let mut reads = 0;
    while cursor < total {
        let events = store.all_events_after(cursor, 50).await.unwrap();
        for event in &events {
            assert_eq!(
                event.seq,
                cursor + 1,
                "the reader skipped a sequence that had not committed yet"
            );
            cursor = event.seq;
        }
        reads += 1;
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(store.last_seq().await.unwrap(), total);
    assert!(
        reads > 10,
        "the reader tailed while writers wrote ({reads} reads)"
    );
    store.close().await;
}

/// News waiting at one moment is applied by a replica in one transaction (group commit): while another
/// session holds the log's counter, a hundred pending changes keep one session waiting for it, not one
/// each; once it is released they all commit, in a few transactions, with the status machine applied in
/// the order they came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_news_waits_for_the_log_counter_in_one_transaction_and_then_commits_together() {
    let (database, store, schedule) = store_of_its_own().await;
    const APPLICATIONS: usize = 100;
    let id = |n: usize| ApplicationId::parse(&format!("app-{n}")).unwrap();
    for n in 0..APPLICATIONS {
        create(&store, &schedule, &id(n), &format!("ref-{n}")).await;
    }

    // Another session (another replica, say) holds the counter.
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT value FROM log_sequence WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    // Every application approved; the first ten also moved on to review and told of their approval
    // twice; and news about an application the store does not hold.
    let mut news: Vec<(ApplicationId, Status)> = (0..APPLICATIONS)
        .map(|n| (id(n), Status::IdvApproved))
        .collect();
    news.extend((0..10).map(|n| (id(n), Status::ComplianceReview)));
    news.extend((0..10).map(|n| (id(n), Status::IdvApproved)));
    news.push((
        ApplicationId::parse("app-unknown").unwrap(),
        Status::IdvApproved,
    ));
    let applying: Vec<_> = news
        .iter()
        .cloned()
        .map(|(id, status)| {
            let (store, schedule) = (store.clone(), schedule.clone());
            tokio::spawn(async move {
                store
                    .apply(&id, &seen(status), Source::Other, &schedule)
                    .await
                    .unwrap()
            })
        })
        .collect();

    let waiting_for_locks = || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'onboarding-gateway applier' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut sqlx::PgConnection::connect(&database.url).await.unwrap())
        .await
        .unwrap();
        waiting
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while waiting_for_locks().await == 0 {
        assert!(
            std::time::Instant::now() < until,
            "nothing waits for the counter"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything has had time to queue (or, applied one transaction each, to pile up on the lock).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        waiting_for_locks().await,
        1,
        "one transaction of this replica waits for the counter, however much news is pending"
    );
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let mut outcomes = Vec::new();
    for task in applying {
        outcomes.push(task.await.unwrap());
    }
    assert!(
        outcomes.last().unwrap().is_none(),
        "news about an unknown application finds none"
    );
    let changed = outcomes.iter().flatten().filter(|a| a.changed).count();
    let events = store
        .all_events_after(APPLICATIONS as u64, 10_000)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        changed,
        "every change, and nothing else, was appended"
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(
            event.seq,
            (APPLICATIONS + 1 + n) as u64,
            "sequences follow on"
        );
    }
    for n in 0..APPLICATIONS {
        let current = store.current(&id(n)).await.unwrap().unwrap();
        let expected = if n < 10 {
            Status::ComplianceReview
        } else {
            Status::IdvApproved
        };
        assert_eq!(current.application.status, expected, "app-{n}");
        let versions = store.events_after(&id(n), 0, 100).await.unwrap();
        assert_eq!(
            versions.last().unwrap(),
            &current,
            "app-{n} points at its newest version"
        );
        for (v, version) in versions.iter().enumerate() {
            assert_eq!(version.application.version, v as u64 + 1, "app-{n}");
        }
    }
    store.close().await;
}

/// Two replicas apply news about the same applications at once, each through its own applier. A round
/// reads its rows without locks and writes only rows still as it read them; a round that lost the race to
/// the other replica runs again under locks. Whoever wins, each application ends where its news leads,
/// its versions one apart with none lost or repeated, each once in the log, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_applying_news_about_the_same_applications_lose_no_version() {
    let (database, first, schedule) = store_of_its_own().await;
    let second = Arc::new(common::stores::postgres(&database).await);
    const APPLICATIONS: usize = 20;
    const NEWS: [Status; 4] = common::stores::LATER_STATUSES;
    let id = |n: usize| ApplicationId::parse(&format!("race-{n}")).unwrap();
    for n in 0..APPLICATIONS {
        create(&first, &schedule, &id(n), &format!("ref-{n}")).await;
    }

    // Every status of every application told to both replicas, all at once.
    let applying: Vec<_> = (0..APPLICATIONS)
        .flat_map(|n| NEWS.iter().map(move |status| (n, *status)))
        .flat_map(|news| [(news, first.clone()), (news, second.clone())])
        .map(|((n, status), store)| {
            let (id, schedule) = (id(n), schedule.clone());
            tokio::spawn(async move {
                store
                    .apply(&id, &seen(status), Source::Other, &schedule)
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut changes = 0;
    for task in applying {
        changes += usize::from(task.await.unwrap().changed);
    }

    let events = first.all_events_after(0, 10_000).await.unwrap();
    assert_eq!(
        events.len(),
        APPLICATIONS + changes,
        "each creation and each change, once"
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.seq, n as u64 + 1, "sequences follow on");
    }
    for n in 0..APPLICATIONS {
        let current = second.current(&id(n)).await.unwrap().unwrap();
        assert_eq!(
            current.application.status,
            Status::AccountIssued,
            "race-{n} ends where its news leads"
        );
        let versions = first.events_after(&id(n), 0, 100).await.unwrap();
        for (v, version) in versions.iter().enumerate() {
            assert_eq!(version.application.version, v as u64 + 1, "race-{n}");
        }
        assert_eq!(
            versions.last().unwrap(),
            &current,
            "race-{n} points at its newest version"
        );
    }
    first.close().await;
    second.close().await;
}

/// A round reads its rows without locks and writes only those still as it read them. A row moved by
/// another writer between the read and the write (here a transaction that holds the row while the round
/// runs, as another replica's round would) is not overwritten: the round runs again under locks and
/// builds on what it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_builds_on_a_change_made_while_its_round_ran() {
    let (database, store, schedule) = store_of_its_own().await;
    let id = |n: usize| ApplicationId::parse(&format!("held-{n}")).unwrap();
    create(&store, &schedule, &id(0), "ref-0").await;

    let mut other = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut held = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM applications WHERE id = $1 FOR UPDATE")
        .bind(id(0).as_str())
        .execute(&mut *held)
        .await
        .unwrap();
    let (app, news) = (id(0), seen(Status::IdvApproved));
    let applying = store.apply(&app, &news, Source::Other, &schedule);
    let moving_on = async {
        // Once the round waits for the row, it has read it: move the row on to a version the news
        // knows nothing of.
        let mut watcher = sqlx::PgConnection::connect(&database.url).await.unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'onboarding-gateway applier' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap()
            == 0
        {
            assert!(
                std::time::Instant::now() < until,
                "the round never waited for the row"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        sqlx::query(
            "UPDATE applications SET version = version + 1, upstream_status = 'MOVED_ON' WHERE id = $1",
        )
        .bind(id(0).as_str())
        .execute(&mut *held)
        .await
        .unwrap();
        held.commit().await.unwrap();
    };
    let (applied, ()) = tokio::join!(applying, moving_on);

    let applied = applied.unwrap().unwrap();
    assert!(applied.changed);
    // Created as version 1, moved on to 2 by the other writer, then the news.
    assert_eq!(applied.event.application.version, 3);
    assert_eq!(applied.event.application.status, Status::IdvApproved);
    let stored = store.current_of(&[id(0)]).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].application.version, 3);
    assert_eq!(stored[0].seq, applied.event.seq);
    store.close().await;
}
