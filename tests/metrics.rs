//! The metrics move as the flow does (its own test binary: the registry is per process).

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, by_id, initiate, metric_value, next, read_to_end,
    sandbox::AUTH_CODES, submit, valid_kyc, watch,
};

#[tokio::test]
async fn scraped_values_follow_the_flow() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let before = gateway.metrics().await;

    let app = submit(&mut client, "client-metrics", "session-ok")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    next(&mut stream, Duration::from_secs(10)).await.unwrap();
    next(&mut stream, Duration::from_secs(10)).await.unwrap(); // IDV_APPROVED
    let during = gateway.metrics().await;
    assert_eq!(
        metric_value(&during, "onboarding_watch_streams"),
        1.0,
        "{during}"
    );
    assert!(
        metric_value(&during, "onboarding_oauth_refresh_token_expiry_seconds") > 2_000_000.0,
        "{during}"
    );
    assert_eq!(
        metric_value(&during, "onboarding_connectpay_breaker_state"),
        0.0
    );

    initiate(&mut client, &app.application_id, valid_kyc())
        .await
        .unwrap();
    read_to_end(&mut stream, Duration::from_secs(10)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = gateway.metrics().await;

    let grew = |series: &str, by: f64| {
        let delta = metric_value(&after, series) - metric_value(&before, series);
        assert!(
            delta >= by,
            "{series} grew by {delta}, expected {by}:\n{after}"
        );
    };
    grew(
        "onboarding_grpc_requests_total{rpc=\"SubmitIdvSession\",code=\"OK\"}",
        1.0,
    );
    grew(
        "onboarding_grpc_requests_total{rpc=\"InitiateOnboarding\",code=\"OK\"}",
        1.0,
    );
    grew(
        "onboarding_grpc_requests_total{rpc=\"WatchApplication\",code=\"OK\"}",
        1.0,
    );
    grew(
        "onboarding_grpc_request_duration_seconds_count{rpc=\"SubmitIdvSession\"}",
        1.0,
    );
    grew(
        "onboarding_connectpay_requests_total{endpoint=\"submit_idv\",status=\"200\"}",
        1.0,
    );
    grew(
        "onboarding_connectpay_requests_total{endpoint=\"token\",status=\"200\"}",
        0.0,
    );
    grew(
        "onboarding_connectpay_request_duration_seconds_count{endpoint=\"initiate_application\"}",
        1.0,
    );
    grew("onboarding_webhooks_total{outcome=\"recorded\"}", 2.0);
    grew(
        "onboarding_notifications_confirmed_total{outcome=\"confirmed\"}",
        2.0,
    );
    grew(
        "onboarding_application_changes_total{status=\"ACCOUNT_ISSUED\"}",
        1.0,
    );
    assert_eq!(metric_value(&after, "onboarding_watch_streams"), 0.0);
    assert_eq!(metric_value(&after, "onboarding_inbox_waiting"), 0.0);
    // Nothing that identifies an application is a label.
    assert!(!after.contains(&app.application_id));
}
