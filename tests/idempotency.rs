//! AIP-155 request ids on the submitting RPCs, and the same IDV session submitted twice.

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, get, poll_until, reason_and_fields, sandbox::AUTH_CODES, status_of,
    valid_kyc,
};
use onboarding_gateway::grpc::pb::{
    self, ApplicationStatus as S, onboarding_client::OnboardingClient,
};
use serde_json::json;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

async fn submit_keyed(
    client: &mut OnboardingClient<Channel>,
    reference: &str,
    session: &str,
    request_id: &str,
) -> Result<pb::Application, tonic::Status> {
    client
        .submit_idv_session(pb::SubmitIdvSessionRequest {
            external_reference: reference.into(),
            session_id: session.into(),
            provider_id: "ONDATO".into(),
            request_id: request_id.into(),
        })
        .await
        .map(|r| r.into_inner().application.unwrap())
}

async fn initiate_keyed(
    client: &mut OnboardingClient<Channel>,
    id: &str,
    kyc: pb::PersonalKyc,
    request_id: &str,
) -> Result<pb::Application, tonic::Status> {
    client
        .initiate_onboarding(pb::InitiateOnboardingRequest {
            application_id: id.into(),
            request_id: request_id.into(),
            kyc: Some(kyc),
        })
        .await
        .map(|r| r.into_inner().application.unwrap())
}

#[tokio::test]
async fn the_same_key_and_request_replays_the_first_outcome_without_calling_connectpay() {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let first = submit_keyed(&mut client, "client-idem", "session-idem", "key-1")
        .await
        .unwrap();
    let again = submit_keyed(&mut client, "client-idem", "session-idem", "key-1")
        .await
        .unwrap();
    assert_eq!(again, first, "the first outcome, exactly");
    assert_eq!(sandbox.requests("submit_idv").await.len(), 1);

    // The same key for a different request is a mistake.
    let reused = submit_keyed(&mut client, "client-idem", "another-session", "key-1")
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(
        reason_and_fields(&reused),
        ("IDEMPOTENCY_KEY_REUSED".into(), vec!["request_id".into()])
    );

    // Without a key, the same session again is the same application: no second submit.
    let unkeyed = submit_keyed(&mut client, "client-idem", "session-idem", "")
        .await
        .unwrap();
    assert_eq!(unkeyed.application_id, first.application_id);
    assert_eq!(sandbox.requests("submit_idv").await.len(), 1);
    let elsewhere = submit_keyed(&mut client, "client-other", "session-idem", "")
        .await
        .unwrap_err();
    assert_eq!(reason_and_fields(&elsewhere).1, ["session_id"]);

    // A definite refusal is replayed too: KYC before approval (held), refused by ConnectPay once.
    let held = submit_keyed(&mut client, "client-held", "session-hold", "key-2")
        .await
        .unwrap();
    let refused = initiate_keyed(&mut client, &held.application_id, valid_kyc(), "key-3")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let replayed = initiate_keyed(&mut client, &held.application_id, valid_kyc(), "key-3")
        .await
        .unwrap_err();
    assert_eq!(
        (replayed.code(), reason_and_fields(&replayed)),
        (Code::FailedPrecondition, reason_and_fields(&refused))
    );
    assert_eq!(sandbox.requests("initiate_application").await.len(), 1);
}

#[tokio::test]
async fn a_concurrent_duplicate_is_told_to_retry_and_only_one_call_reaches_connectpay() {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    sandbox
        .add_fault(json!({"endpoint": "submit_idv", "count": 1, "action": {"delay": {"ms": 800}}}))
        .await;
    let (mut a, mut b) = (gateway.client(), gateway.client());
    let first = tokio::spawn(async move {
        submit_keyed(&mut a, "client-race", "session-race", "key-race").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = submit_keyed(&mut b, "client-race", "session-race", "key-race")
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::Aborted);
    assert_eq!(reason_and_fields(&second).0, "REQUEST_IN_PROGRESS");
    assert!(
        second
            .get_error_details()
            .retry_info()
            .and_then(|r| r.retry_delay)
            .is_some()
    );
    let first = first.await.unwrap().unwrap();
    let retried = submit_keyed(
        &mut gateway.client(),
        "client-race",
        "session-race",
        "key-race",
    )
    .await
    .unwrap();
    assert_eq!(retried, first);
    assert_eq!(sandbox.requests("submit_idv").await.len(), 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_never_replayed_the_retry_reads_connectpay_first() {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit_keyed(&mut client, "client-unknown", "session-ok", "")
        .await
        .unwrap();
    let id = app.application_id.clone();
    poll_until(&mut client, &id, |a| status_of(a) == S::IdvApproved).await;

    // ConnectPay takes the KYC data, then fails the answer.
    sandbox
        .add_fault(json!({"endpoint": "initiate_application", "count": 1, "action": {"afterEffect": {"status": 500}}}))
        .await;
    let mut kyc = valid_kyc();
    kyc.address.as_mut().unwrap().city = "Review".into();
    let unknown = initiate_keyed(&mut client, &id, kyc.clone(), "key-kyc")
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        Code::Unknown,
        "a submit that may have happened is never UNAVAILABLE"
    );
    assert_eq!(reason_and_fields(&unknown).0, "UPSTREAM_OUTCOME_UNKNOWN");

    // The retry finds out from ConnectPay that it happened, and does not send it again.
    let settled = initiate_keyed(&mut client, &id, kyc, "key-kyc")
        .await
        .unwrap();
    assert_eq!(status_of(&settled), S::ComplianceReview);
    assert_eq!(sandbox.requests("initiate_application").await.len(), 1);
    assert_eq!(
        status_of(&get(&mut client, &id).await.unwrap()),
        S::ComplianceReview
    );
}

#[tokio::test]
async fn an_unknown_outcome_that_did_not_happen_is_sent_again_on_retry() {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit_keyed(&mut client, "client-lost", "session-ok", "")
        .await
        .unwrap();
    let id = app.application_id.clone();
    poll_until(&mut client, &id, |a| status_of(a) == S::IdvApproved).await;

    // The answer is a 502 from something in front of ConnectPay: nothing happened, but nobody can know.
    sandbox
        .add_fault(json!({"endpoint": "initiate_application", "count": 1, "action": {"fail": {"status": 502}}}))
        .await;
    let unknown = initiate_keyed(&mut client, &id, valid_kyc(), "key-lost")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unknown);
    let settled = initiate_keyed(&mut client, &id, valid_kyc(), "key-lost")
        .await
        .unwrap();
    assert_eq!(status_of(&settled), S::ComplianceReview);
    let sent = sandbox.requests("initiate_application").await;
    assert_eq!(
        sent.iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [502, 200]
    );
}
