//! The store failing for a moment: ConnectPay's notifications are still answered OK (a refusal would count
//! towards ConnectPay switching the subscription off), and every change still reaches the watchers, by
//! polling the application as soon as the store works again.

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, application, by_id, next, sandbox::AUTH_CODES, status_of, submit,
    watch,
};
use onboarding_gateway::grpc::pb::ApplicationStatus as S;
use sqlx::{Connection, sqlite::SqliteConnection};

#[tokio::test]
async fn notifications_are_acknowledged_while_the_store_is_locked_and_their_news_arrives_afterwards()
 {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.store.busy_timeout = Duration::from_millis(100);
    })
    .await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-outage", "session-hold")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    next(&mut stream, Duration::from_secs(5)).await.unwrap();

    // Someone else (a backup, an operator) holds the database's write lock.
    let url = format!("sqlite://{}", gateway.database().display());
    let mut lock = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    sandbox
        .set_status(&app.application_id, "IDV_APPROVED")
        .await;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let delivery = loop {
        let log = sandbox.webhook_log().await;
        if let Some(d) = log.into_iter().find(|d| d["status"] == "IDV_APPROVED") {
            break d;
        }
        assert!(tokio::time::Instant::now() < until, "no delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (
            delivery["answerStatus"].as_u64(),
            delivery["answerBody"].as_str()
        ),
        (Some(200), Some("OK"))
    );
    // Nothing could be recorded, so nothing was published yet.
    let early = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(early.is_err(), "{early:?}");

    // Counted for alerting, on the admin port's metrics.
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("onboarding_webhooks_total{outcome=\"degraded\"} 1"),
        "{metrics}"
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let change = next(&mut stream, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status_of(application(&change)), S::IdvApproved);
    assert_eq!(application(&change).version, 2);
}
