//! Personal data does not stay forever: finished applications are erased after their retention, and an
//! operator erases one at once. Erased means gone from the database file, not only from answers.

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, postgres::TestDatabase, process::GatewayProcess, sandbox::AUTH_CODES,
};
use onboarding_gateway::grpc::pb;
use tonic::Code;

#[tokio::test]
async fn finished_applications_are_erased_after_their_retention_and_unfinished_ones_stay() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(
        &sandbox,
        AUTH_CODES[0],
        "[retention]\nfinished_applications = \"2s\"\ncleanup_interval = \"100ms\"",
    )
    .await;
    let mut client = gateway.client();
    let declined = common::submit(&mut client, "client-retained-1", "retention-decline")
        .await
        .unwrap();
    let approved = common::submit(&mut client, "client-retained-2", "retention-approve")
        .await
        .unwrap();
    common::poll_until(&mut client, &declined.application_id, |app| {
        common::status_of(app) == pb::ApplicationStatus::IdvDeclined
    })
    .await;
    common::poll_until(&mut client, &approved.application_id, |app| {
        common::status_of(app) == pb::ApplicationStatus::IdvApproved
    })
    .await;
    let finished_at = tokio::time::Instant::now();
    assert!(common::contains_bytes(
        &common::database_bytes(&gateway.database()),
        &declined.application_id
    ));

    // Kept for its retention...
    tokio::time::sleep(Duration::from_millis(800)).await;
    common::get(&mut client, &declined.application_id)
        .await
        .expect("still within its retention");
    // ...then gone, from answers and from the file.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match common::get(&mut client, &declined.application_id).await {
            Err(status) if status.code() == Code::NotFound => break,
            Ok(_) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(tokio::time::Instant::now() < until, "never erased");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished_at.elapsed() >= Duration::from_millis(1500));
    let by_reference = common::get_by_reference(&mut client, "client-retained-1")
        .await
        .expect_err("nothing left for the reference");
    assert_eq!(by_reference.code(), Code::NotFound);
    // An unfinished application is never erased, however old.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = common::get(&mut client, &approved.application_id)
        .await
        .expect("unfinished applications stay");
    assert_eq!(
        common::status_of(&still),
        pb::ApplicationStatus::IdvApproved
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_operator_erases_one_application_and_nothing_of_it_remains() {
    operator_erasure(None).await;
}

#[tokio::test]
async fn an_operator_erases_one_application_on_postgresql() {
    let database = TestDatabase::create().await;
    operator_erasure(Some(&database.url)).await;
}

/// On SQLite (`store_url` `None`) the database file is searched afterwards; on PostgreSQL its tables.
async fn operator_erasure(store_url: Option<&str>) {
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = match store_url {
        None => GatewayProcess::start(&sandbox, AUTH_CODES[0], &[]).await,
        Some(url) => GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], url, &[]).await,
    };
    let mut client = gateway.client();
    // Submitted with an idempotency key: its stored outcome is the application, and goes with it.
    let erased = client
        .submit_idv_session(pb::SubmitIdvSessionRequest {
            external_reference: "client-erased-ref".into(),
            session_id: "erasure-session-1".into(),
            provider_id: "ONDATO".into(),
            request_id: "erasure-key-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .application
        .unwrap();
    let kept = common::submit(&mut client, "client-kept-ref", "erasure-session-2")
        .await
        .unwrap();
    for app in [&erased, &kept] {
        common::poll_until(&mut client, &app.application_id, |app| {
            common::status_of(app) == pb::ApplicationStatus::IdvApproved
        })
        .await;
    }
    let erase = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
            .arg("--config")
            .arg(gateway.config_path())
            .args(["erase", "--application-id", id])
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // While the gateway runs: an operator command beside it.
    let out = erase(&erased.application_id);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let audit =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        audit.contains("Erase") && audit.contains(&erased.application_id),
        "the erasure is audited: {audit}"
    );
    let again = erase(&erased.application_id);
    assert_eq!(again.status.code(), Some(1), "nothing left to erase");
    let unknown = erase("   ");
    assert_eq!(unknown.status.code(), Some(2));

    let status = common::get(&mut client, &erased.application_id)
        .await
        .expect_err("erased");
    assert_eq!(status.code(), Code::NotFound);
    common::get(&mut client, &kept.application_id)
        .await
        .expect("the other application is untouched");

    gateway.terminate().await;
    if let Some(url) = store_url {
        // Every table, as text: nothing names it any more.
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        let mut rows = String::new();
        for table in ["applications", "events", "inbox", "requests"] {
            let dump: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM {table} t"
            )))
            .fetch_all(&mut connection)
            .await
            .unwrap();
            rows.push_str(&dump.join("\n"));
        }
        assert!(rows.contains(&kept.application_id), "the check can see ids");
        for gone in [
            erased.application_id.as_str(),
            "client-erased-ref",
            "erasure-key-1",
        ] {
            assert!(!rows.contains(gone), "{gone} is still in a table");
        }
        return;
    }
    // Nothing of it in the file: its id, its reference.
    let bytes = common::database_bytes(&gateway.database());
    assert!(
        common::contains_bytes(&bytes, &kept.application_id),
        "the check can see ids"
    );
    for gone in [
        erased.application_id.as_str(),
        "client-erased-ref",
        "erasure-key-1",
    ] {
        assert!(
            !common::contains_bytes(&bytes, gone),
            "{gone} is still in the database file"
        );
    }
}
