//! The webhook receiver under attack and under load: who may deliver, what a forged notification can do
//! (nothing), and what piled-up notifications cost (one GET).

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, application, by_id, initiate, next, sandbox::AUTH_CODES, status_of,
    submit, valid_kyc, watch,
};
use connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN;
use onboarding_gateway::grpc::pb::{ApplicationStatus as S, WatchApplicationResponse};
use serde_json::{Value, json};
use tonic::Streaming;

const SOON: Duration = Duration::from_secs(10);
const NEXT_TOKEN: &str = "next-webhook-token-0123456789abcdefgh";

fn http() -> reqwest::Client {
    common::init_logging();
    reqwest::Client::new()
}

async fn deliver(url: &str, headers: &[(&str, &str)], body: String) -> (u16, String) {
    let mut request = http().post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn issued_claim(id: &str) -> String {
    json!({"application": {"applicationId": id, "status": "ACCOUNT_ISSUED", "baasClientId": "forged"}}).to_string()
}

/// An application held in COMPLIANCE_REVIEW (the sandbox keeps a KYC city of "Review" there), with a watch
/// open on it that has read everything so far.
async fn in_review(
    sandbox: &TestSandbox,
    gateway: &TestGateway,
    reference: &str,
) -> (String, Streaming<WatchApplicationResponse>) {
    let mut client = gateway.client();
    let app = submit(&mut client, reference, "session-ok").await.unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    next(&mut stream, SOON).await.unwrap();
    assert_eq!(
        status_of(application(&next(&mut stream, SOON).await.unwrap())),
        S::IdvApproved
    );
    let mut kyc = valid_kyc();
    kyc.address.as_mut().unwrap().city = "Review".into();
    initiate(&mut client, &app.application_id, kyc)
        .await
        .unwrap();
    assert_eq!(
        status_of(application(&next(&mut stream, SOON).await.unwrap())),
        S::ComplianceReview
    );
    // Let the review webhook's own confirmation finish, so later counts concern only the test's doing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = sandbox;
    (app.application_id, stream)
}

/// Nothing reaches the watcher for a while.
async fn silent(stream: &mut Streaming<WatchApplicationResponse>) {
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(quiet.is_err(), "the watcher saw something: {quiet:?}");
}

#[tokio::test]
async fn unauthenticated_notifications_are_refused_before_anything_happens() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.tokens.push(NEXT_TOKEN.to_owned().into());
    })
    .await;
    let (id, mut stream) = in_review(&sandbox, &gateway, "client-attack").await;
    let url = gateway.webhook_url();
    let gets_before = sandbox.requests("get_application").await.len();

    let header = "x-connectpay-webhook-token";
    let truncated = &DEFAULT_WEBHOOK_TOKEN[..DEFAULT_WEBHOOK_TOKEN.len() - 1];
    let extended = format!("{DEFAULT_WEBHOOK_TOKEN}x");
    let upper = DEFAULT_WEBHOOK_TOKEN.to_uppercase();
    let wrong = "wrong-token-0123456789abcdefghijklmn";
    for (what, headers) in [
        ("missing", vec![]),
        ("empty", vec![(header, "")]),
        ("one byte", vec![(header, "s")]),
        ("truncated", vec![(header, truncated)]),
        ("extended", vec![(header, extended.as_str())]),
        ("wrong case", vec![(header, upper.as_str())]),
        ("wrong", vec![(header, wrong)]),
        (
            "other header",
            vec![("x-webhook-token", DEFAULT_WEBHOOK_TOKEN)],
        ),
    ] {
        let (status, _) = deliver(&url, &headers, issued_claim(&id)).await;
        assert_eq!(status, 401, "{what}");
    }
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(64 * 1024));
    let (status, _) = deliver(&url, &[(header, DEFAULT_WEBHOOK_TOKEN)], oversized).await;
    assert_eq!(status, 413);

    silent(&mut stream).await;
    assert_eq!(
        sandbox.requests("get_application").await.len(),
        gets_before,
        "no upstream call"
    );

    // During a rotation both tokens work; a forged claim is still only a hint: ConnectPay says review.
    for token in [DEFAULT_WEBHOOK_TOKEN, NEXT_TOKEN] {
        let (status, body) = deliver(&url, &[(header, token)], issued_claim(&id)).await;
        assert_eq!((status, body.as_str()), (200, "OK"));
    }
    silent(&mut stream).await;
    assert!(
        sandbox.requests("get_application").await.len() > gets_before,
        "confirmed with a GET"
    );
    let mut client = gateway.client();
    let read = common::get(&mut client, &id).await.unwrap();
    assert_eq!(status_of(&read), S::ComplianceReview);
    assert!(
        read.baas_client_id.is_empty(),
        "the forged id was never recorded"
    );
}

#[tokio::test]
async fn sources_outside_the_list_and_spoofed_forwarding_are_refused() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    // Only 10.9.8.7 may deliver; the test connects from 127.0.0.1.
    let strict = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.allowed_sources = vec!["10.9.8.7/32".parse().unwrap()];
    })
    .await;
    let token = ("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN);
    let body = issued_claim("any");
    let (status, _) = deliver(&strict.webhook_url(), &[token], body.clone()).await;
    assert_eq!(status, 403);
    // Claiming to be forwarded for an allowed address changes nothing: 127.0.0.1 is no trusted proxy.
    let spoofed = ("x-forwarded-for", "10.9.8.7");
    let (status, _) = deliver(&strict.webhook_url(), &[token, spoofed], body.clone()).await;
    assert_eq!(status, 403);

    // Behind a trusted proxy the entry it appended counts, and only that one.
    let proxied = TestGateway::start_adjusted(&sandbox, AUTH_CODES[1], "", |c| {
        c.webhook.allowed_sources = vec!["10.9.8.7/32".parse().unwrap()];
        c.webhook.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (status, _) = deliver(&proxied.webhook_url(), &[token, spoofed], body.clone()).await;
    assert_eq!(status, 200);
    let chained = ("x-forwarded-for", "10.9.8.7, 192.0.2.1");
    let (status, _) = deliver(&proxied.webhook_url(), &[token, chained], body).await;
    assert_eq!(
        status, 403,
        "the sender's own entry, further left, proves nothing"
    );
}

#[tokio::test]
async fn unknown_events_unknown_applications_and_garbage_are_answered_ok_and_cost_nothing() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let token = ("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN);
    let bodies: Vec<Value> = vec![
        json!({"eventType": "OutgoingPayment.Completed", "data": {"paymentId": "p"}}),
        json!({"application": {"applicationId": "not-ours", "status": "ACCOUNT_ISSUED"}}),
        json!({"eventType": "baaspersonidv.APPROVED", "data": {"personId": "nobody"}}),
        json!({"unrelated": true}),
        json!([1, 2, 3]),
    ];
    for body in bodies {
        let (status, answer) = deliver(&gateway.webhook_url(), &[token], body.to_string()).await;
        assert_eq!((status, answer.as_str()), (200, "OK"), "{body}");
    }
    let (status, _) = deliver(&gateway.webhook_url(), &[token], "not json".into()).await;
    assert_eq!(status, 200);
    let onboarding: Vec<_> = sandbox
        .requests("")
        .await
        .into_iter()
        .filter(|r| r["endpoint"] != "token")
        .collect();
    assert!(onboarding.is_empty(), "no upstream call: {onboarding:?}");
}

#[tokio::test]
async fn many_notifications_for_one_application_cost_one_more_get_at_most() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let (id, mut stream) = in_review(&sandbox, &gateway, "client-burst").await;
    let before = sandbox.requests("get_application").await.len();
    // ConnectPay approves, and its first GET answer is slow, so the burst piles up behind it.
    sandbox
        .add_fault(
            json!({"endpoint": "get_application", "applicationId": id, "count": 1,
                          "action": {"delay": {"ms": 300}}}),
        )
        .await;
    sandbox
        .control_put("webhooks", json!({"mode": "drop"}))
        .await;
    sandbox.set_status(&id, "ACCOUNT_ISSUED").await;
    let url = gateway.webhook_url();
    let burst = (0..50).map(|_| {
        let (url, body) = (url.clone(), issued_claim(&id));
        tokio::spawn(async move {
            deliver(
                &url,
                &[("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN)],
                body,
            )
            .await
        })
    });
    for delivery in burst {
        assert_eq!(delivery.await.unwrap().0, 200);
    }
    let issued = next(&mut stream, SOON).await.unwrap();
    assert_eq!(status_of(application(&issued)), S::AccountIssued);
    assert!(
        next(&mut stream, SOON).await.is_none(),
        "the stream ends after the terminal status"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gets = sandbox.requests("get_application").await.len() - before;
    assert!((1..=2).contains(&gets), "50 notifications cost {gets} GETs");
}

/// Once the gateway has seen an application finish, news about it — repeated, stale or forged — is answered
/// at once: nothing is recorded, ConnectPay is not asked, the watchers hear nothing.
#[tokio::test]
async fn news_about_a_finished_application_is_answered_without_recording_or_asking() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let (id, mut stream) = in_review(&sandbox, &gateway, "client-finished").await;
    sandbox
        .control_put("webhooks", json!({"mode": "drop"}))
        .await;
    sandbox.set_status(&id, "ACCOUNT_ISSUED").await;
    let token = ("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN);
    let (status, _) = deliver(&gateway.webhook_url(), &[token], issued_claim(&id)).await;
    assert_eq!(status, 200);
    let issued = next(&mut stream, SOON).await.unwrap();
    let issued = application(&issued);
    assert_eq!(status_of(issued), S::AccountIssued);
    assert!(!issued.baas_client_id.is_empty(), "issued with its id");
    assert!(next(&mut stream, SOON).await.is_none(), "the stream ends");
    // The issuing notification's confirmation is over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(common::webhooks::inbox(&gateway).await, 0);
    let before = common::webhooks::onboarding_calls(&sandbox).await.len();

    let later = [
        json!({"application": {"applicationId": id, "status": "ACCOUNT_ISSUED", "baasClientId": "other"}}),
        json!({"application": {"applicationId": id, "status": "COMPLIANCE_REVIEW"}}),
        json!({"application": {"applicationId": id, "status": "APPLICATION_DECLINED"}}),
        json!({"eventType": "BaaSPersonIdv.Approved", "eventId": "late-1",
               "data": {"applicationId": id, "status": "IDV_APPROVED"}}),
    ];
    for body in later {
        let (status, answer) = deliver(&gateway.webhook_url(), &[token], body.to_string()).await;
        assert_eq!((status, answer.as_str()), (200, "OK"), "{body}");
        assert_eq!(
            common::webhooks::inbox(&gateway).await,
            0,
            "recorded: {body}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = common::webhooks::onboarding_calls(&sandbox).await;
    assert_eq!(asked.len(), before, "ConnectPay was asked: {asked:?}");
}

/// `webhook.workers` bounds the confirming GETs in flight in all, however the notifications fall among the
/// gateway's inbox loops; and a slow ConnectPay answer does not hold the other slots back.
#[tokio::test]
async fn webhook_workers_bound_the_confirmations_in_flight_across_all_inbox_loops() {
    const APPLICATIONS: usize = 8;
    const WORKERS: usize = 2;
    // The sandbox decides nothing by itself during the test: only the test's notifications ask.
    let sandbox = TestSandbox::in_process(|c| c.idv_delay_ms = 600_000).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.workers = WORKERS;
    })
    .await;
    let mut client = gateway.client();
    let mut notifications = Vec::with_capacity(APPLICATIONS);
    for n in 0..APPLICATIONS {
        let (reference, session) = (format!("client-slots-{n}"), format!("session-slots-{n}"));
        let app = submit(&mut client, &reference, &session).await.unwrap();
        let status = sandbox.application(&app.application_id).await["status"].clone();
        notifications.push(json!({"eventId": format!("slots-{n}"),
            "application": {"applicationId": app.application_id, "status": status}}));
    }
    let before = sandbox.requests("get_application").await.len();
    // Every answer takes 300 ms: the notifications below arrive while earlier confirmations still wait.
    sandbox
        .control_put(
            "fault-rates",
            json!({"rate500": 0.0, "rate503": 0.0, "rate429": 0.0, "latencyMs": 300}),
        )
        .await;
    let url = gateway.webhook_url();
    for notification in &notifications {
        let (status, _) = deliver(
            &url,
            &[("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN)],
            notification.to_string(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let until = tokio::time::Instant::now() + SOON;
    loop {
        let answered = sandbox.requests("get_application").await[before..]
            .iter()
            .filter(|r| !r["status"].is_null())
            .count();
        if answered >= APPLICATIONS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{answered} of {APPLICATIONS} notifications confirmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = &sandbox.stats().await["peakInFlight"]["get_application"];
    assert_eq!(
        peak,
        &json!(WORKERS),
        "confirmations in flight at once, with webhook.workers = {WORKERS}"
    );
}
