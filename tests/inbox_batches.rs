//! How the inbox workers take recorded notifications, as the metrics show it (its own test binary: the
//! registry is per process).

mod common;

use std::time::{Duration, Instant};

use common::{
    TestGateway, TestSandbox, application, by_id, initiate, metric_value, next,
    sandbox::AUTH_CODES, status_of, submit, valid_kyc, watch,
};
use connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN;
use onboarding_gateway::grpc::pb::ApplicationStatus as S;
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

/// Notifications that arrive one at a time are each taken by one lease: a worker whose lease came back
/// short waits for the next notification instead of asking the store again at once and finding nothing.
#[tokio::test]
async fn a_short_batch_is_not_followed_by_a_lease_that_finds_nothing() {
    const NOTIFICATIONS: usize = 100;
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-batches", "session-ok")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    next(&mut stream, SOON).await.unwrap();
    next(&mut stream, SOON).await.unwrap(); // IDV_APPROVED
    let mut kyc = valid_kyc();
    // The sandbox holds an application whose KYC city is "Review" in COMPLIANCE_REVIEW.
    kyc.address.as_mut().unwrap().city = "Review".into();
    initiate(&mut client, &app.application_id, kyc)
        .await
        .unwrap();
    let review = next(&mut stream, SOON).await.unwrap();
    assert_eq!(status_of(application(&review)), S::ComplianceReview);
    gateway
        .webhook_confirmed(&sandbox, "COMPLIANCE_REVIEW")
        .await;

    let service = gateway.gateway().service();
    let http = reqwest::Client::new();
    let before = gateway.metrics().await;
    let started = Instant::now();
    for n in 0..NOTIFICATIONS {
        // Each one is news to the inbox (its own event id) and confirms what the gateway already has.
        let body = json!({"eventId": format!("repeat-{n}"),
            "application": {"applicationId": app.application_id, "status": "COMPLIANCE_REVIEW"}});
        let answer = http
            .post(gateway.webhook_url())
            .header("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let until = Instant::now() + SOON;
        while service.inbox_backlog().await.unwrap().0 > 0 {
            assert!(Instant::now() < until, "notification {n} was not confirmed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = gateway.metrics().await;
    let grew = |series: &str| metric_value(&after, series) - metric_value(&before, series);

    let confirmed = grew("onboarding_notifications_confirmed_total{outcome=\"confirmed\"}");
    assert_eq!(confirmed, NOTIFICATIONS as f64, "{after}");
    let taken = grew("onboarding_inbox_batch_notifications_sum");
    assert_eq!(taken, NOTIFICATIONS as f64, "{after}");
    // Leases that found nothing: without the wait, one after each notification. Besides those, a worker
    // left waiting looks again every 500 ms (for postponed notifications and expired leases): about six
    // a second from the three workers not woken.
    let empty = grew("onboarding_inbox_batch_notifications_bucket{le=\"0.0\"}");
    assert!(
        empty <= (NOTIFICATIONS / 2) as f64,
        "{empty} leases found nothing for {NOTIFICATIONS} notifications in {seconds:.2} s:\n{after}"
    );
}
