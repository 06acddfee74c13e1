//! The unary steps of the onboarding flow, end to end over gRPC, against the ConnectPay sandbox.

mod common;

use common::{
    TestGateway, TestSandbox, get, get_by_reference, initiate, poll_until, reason_and_fields,
    sandbox::AUTH_CODES, status_of, submit, valid_kyc,
};
use onboarding_gateway::grpc::pb::{self, ApplicationStatus as S};
use serde_json::json;
use tonic::Code;

/// submit → IDV approved → initiate → review → account issued; the version grows by one per status.
async fn walk_the_flow(sandbox: &TestSandbox, reference: &str) -> Vec<pb::Application> {
    let gateway = TestGateway::start(sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let submitted = submit(&mut client, reference, "session-ok").await.unwrap();
    assert_eq!(status_of(&submitted), S::IdvTokenGenerated);
    assert_eq!(submitted.version, 1);
    assert_eq!(submitted.external_reference, reference);
    assert!(
        !submitted.person_id.is_empty(),
        "the person id comes with the submit answer"
    );
    let id = submitted.application_id.clone();

    let mut history = vec![submitted];
    history.extend(
        poll_until(&mut client, &id, |a| status_of(a) == S::IdvApproved)
            .await
            .into_iter()
            .filter(|a| a.version > 1),
    );
    let initiated = initiate(&mut client, &id, valid_kyc()).await.unwrap();
    let initiated_version = initiated.version;
    history.push(initiated);
    history.extend(
        poll_until(&mut client, &id, |a| status_of(a) == S::AccountIssued)
            .await
            .into_iter()
            .filter(|a| a.version > initiated_version),
    );

    for (i, app) in history.iter().enumerate() {
        assert_eq!(
            app.version,
            i as u64 + 1,
            "one version per status: {history:#?}"
        );
        assert_eq!(app.application_id, id);
    }
    let issued = history.last().unwrap();
    assert!(
        !issued.baas_client_id.is_empty(),
        "ACCOUNT_ISSUED carries the baasClientId"
    );
    // The sandbox agrees on the final state.
    let upstream = sandbox.requests("get_application").await;
    assert!(!upstream.is_empty());
    gateway.stop().await;
    history
}

#[tokio::test]
async fn the_flow_end_to_end_with_an_in_process_sandbox() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let history = walk_the_flow(&sandbox, "client-legacy").await;
    let statuses: Vec<_> = history.iter().map(status_of).collect();
    assert_eq!(
        statuses,
        [
            S::IdvTokenGenerated,
            S::IdvApproved,
            S::ComplianceReview,
            S::AccountIssued
        ]
    );
    assert_eq!(history.last().unwrap().upstream_status, "ACCOUNT_ISSUED");
}

#[tokio::test]
async fn the_newer_generation_gives_the_same_gateway_statuses_with_a_separate_sandbox_process() {
    let sandbox = TestSandbox::process(&["--generation", "newer"]).await;
    let history = walk_the_flow(&sandbox, "client-newer").await;
    let statuses: Vec<_> = history.iter().map(status_of).collect();
    assert_eq!(
        &statuses[..3],
        [S::IdvTokenGenerated, S::IdvApproved, S::ApplicationCaptured]
    );
    assert_eq!(statuses.last(), Some(&S::AccountIssued));
    assert_eq!(
        history.last().unwrap().upstream_status,
        "APPLICATION_APPROVED"
    );
    // In the newer generation the application GET does not know the IDV stage: the IDV GET answered.
    assert!(!sandbox.requests("get_idv").await.is_empty());
}

#[tokio::test]
async fn declined_and_expired_sessions_end_the_application_and_a_new_session_starts_again() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let declined = submit(&mut client, "client-retry", "session-decline")
        .await
        .unwrap();
    poll_until(&mut client, &declined.application_id, |a| {
        status_of(a) == S::IdvDeclined
    })
    .await;
    let expired = submit(&mut client, "client-expire", "session-expire")
        .await
        .unwrap();
    poll_until(&mut client, &expired.application_id, |a| {
        status_of(a) == S::IdvTokenExpired
    })
    .await;

    // A terminal application takes no KYC, and ConnectPay is not even asked.
    let refused = initiate(&mut client, &declined.application_id, valid_kyc())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason_and_fields(&refused).0, "WRONG_APPLICATION_STATE");
    assert!(sandbox.requests("initiate_application").await.is_empty());

    // Starting again: a new application for the same reference, which lookups by reference now follow.
    let again = submit(&mut client, "client-retry", "session-second-try")
        .await
        .unwrap();
    assert_ne!(again.application_id, declined.application_id);
    let latest = get_by_reference(&mut client, "client-retry").await.unwrap();
    assert_eq!(latest.application_id, again.application_id);
    let old = get(&mut client, &declined.application_id).await.unwrap();
    assert_eq!(status_of(&old), S::IdvDeclined);
}

#[tokio::test]
async fn kyc_before_idv_approval_is_a_failed_precondition() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let held = submit(&mut client, "client-early", "session-hold")
        .await
        .unwrap();
    let refused = initiate(&mut client, &held.application_id, valid_kyc())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason_and_fields(&refused).0, "WRONG_APPLICATION_STATE");
    // This one ConnectPay had to decide (the gateway's view might have been stale), and refused with 409.
    let sent = sandbox.requests("initiate_application").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["status"], 409);
}

#[tokio::test]
async fn invalid_kyc_is_refused_by_field_before_any_upstream_call() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-kyc", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    poll_until(&mut client, &id, |a| status_of(a) == S::IdvApproved).await;

    type Break = fn(&mut pb::PersonalKyc);
    let cases: Vec<(Break, &str)> = vec![
        (|k| k.is_ubo = None, "kyc.is_ubo"),
        (|k| k.pep.as_mut().unwrap().is_pep = None, "kyc.pep.is_pep"),
        (
            |k| k.pep.as_mut().unwrap().is_pep = Some(true),
            "kyc.pep.position",
        ),
        (
            |k| {
                let pep = k.pep.as_mut().unwrap();
                pep.is_pep = Some(true);
                pep.position = "Minister 1".into();
            },
            "kyc.pep.position",
        ),
        (
            |k| {
                let pep = k.pep.as_mut().unwrap();
                pep.is_pep = Some(true);
                pep.position = "Minister/deputy".into();
            },
            "kyc.pep.position",
        ),
        (
            |k| {
                let pep = k.pep.as_mut().unwrap();
                pep.is_pep = Some(true);
                pep.position = "a".repeat(101);
            },
            "kyc.pep.position",
        ),
        (
            |k| k.address.as_mut().unwrap().country_code = "LTU".into(),
            "kyc.address.country_code",
        ),
        (
            |k| k.address.as_mut().unwrap().country_code = "ZZ".into(),
            "kyc.address.country_code",
        ),
        (
            |k| k.address.as_mut().unwrap().address_line1 = "ab".into(),
            "kyc.address.address_line1",
        ),
        (
            |k| k.address.as_mut().unwrap().address_line1 = "a".repeat(101),
            "kyc.address.address_line1",
        ),
        (
            |k| k.address.as_mut().unwrap().address_line2 = "ab".into(),
            "kyc.address.address_line2",
        ),
        (
            |k| k.address.as_mut().unwrap().city = "Vi".into(),
            "kyc.address.city",
        ),
        (
            |k| k.address.as_mut().unwrap().city = "V".repeat(101),
            "kyc.address.city",
        ),
        (
            |k| k.address.as_mut().unwrap().postcode = String::new(),
            "kyc.address.postcode",
        ),
        (
            |k| k.address.as_mut().unwrap().postcode = "1".repeat(21),
            "kyc.address.postcode",
        ),
        (|k| k.address = None, "kyc.address"),
        (|k| k.pep = None, "kyc.pep"),
    ];
    for (break_it, field) in cases {
        let mut kyc = valid_kyc();
        break_it(&mut kyc);
        let refused = initiate(&mut client, &id, kyc).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert_eq!(
            reason_and_fields(&refused),
            ("INVALID_FIELDS".into(), vec![field.to_string()])
        );
        assert!(
            !refused.message().contains("Minister") && !refused.message().contains("aaa"),
            "errors never echo values"
        );
    }
    let missing = client
        .initiate_onboarding(pb::InitiateOnboardingRequest {
            application_id: id.clone(),
            request_id: String::new(),
            kyc: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_and_fields(&missing).1, ["kyc"]);
    assert!(
        sandbox.requests("initiate_application").await.is_empty(),
        "no invalid KYC reached ConnectPay"
    );
}

#[tokio::test]
async fn additional_fields_arrive_inside_person_and_the_documented_shape_is_sent() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-extra", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    poll_until(&mut client, &id, |a| status_of(a) == S::IdvApproved).await;

    let mut kyc = valid_kyc();
    let value = |kind| prost_types::Value { kind: Some(kind) };
    use prost_types::value::Kind;
    kyc.additional_fields = Some(prost_types::Struct {
        fields: [
            (
                "sourceOfFunds".to_string(),
                value(Kind::StringValue("SALARY".into())),
            ),
            (
                "expectedMonthlyTurnover".to_string(),
                value(Kind::NumberValue(2500.0)),
            ),
        ]
        .into(),
    });
    let initiated = initiate(&mut client, &id, kyc).await.unwrap();
    assert_eq!(status_of(&initiated), S::ComplianceReview);

    let sent = sandbox.requests("initiate_application").await;
    assert_eq!(sent.len(), 1);
    let person = &sent[0]["body"]["person"];
    assert_eq!(person["Id"], json!(app.person_id));
    assert_eq!(person["isUbo"], json!(true));
    assert_eq!(person["pep"], json!({"isPep": false}));
    assert_eq!(
        person["address"],
        json!({"countryCode": "LT", "addressLine1": "Gedimino pr. 1", "city": "Vilnius", "postcode": "01103"})
    );
    assert_eq!(
        person["accountPurposes"],
        json!(["SALARY", "PERSONAL_OR_HOUSEHOLD_EXPENSES"])
    );
    assert_eq!(person["sourceOfFunds"], json!("SALARY"));
    assert_eq!(person["expectedMonthlyTurnover"], json!(2500));
    assert_eq!(
        sent[0]["headers"]["accept"],
        json!("application/json;version=2")
    );
}

#[tokio::test]
async fn every_upstream_call_carries_fresh_request_ids_and_the_configured_notification_url() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-ids", "session-ok")
        .await
        .unwrap();
    get(&mut client, &app.application_id).await.unwrap();
    get(&mut client, &app.application_id).await.unwrap();

    let submits = sandbox.requests("submit_idv").await;
    assert_eq!(
        submits[0]["body"]["notificationUrl"],
        gateway.webhook_url().as_str()
    );
    assert_eq!(submits[0]["body"]["externalReference"], "client-ids");
    assert_eq!(submits[0]["body"]["providerId"], "ONDATO");
    let mut ids = std::collections::HashSet::new();
    for request in submits
        .iter()
        .chain(&sandbox.requests("get_application").await)
    {
        let headers = &request["headers"];
        let id = headers["x-connectpay-requestid"]
            .as_str()
            .expect("x-connectpay-requestid");
        assert_eq!(
            headers["x-request-id"].as_str(),
            Some(id),
            "both headers carry the same id"
        );
        assert!(uuid::Uuid::parse_str(id).is_ok());
        assert!(ids.insert(id.to_owned()), "a fresh id per call");
        assert!(
            headers["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
}

#[tokio::test]
async fn requests_that_name_nothing_usable_are_refused_with_the_field() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let refused = client
        .submit_idv_session(pb::SubmitIdvSessionRequest {
            external_reference: String::new(),
            session_id: String::new(),
            provider_id: "UNKNOWN_PROVIDER".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        reason_and_fields(&refused).1,
        ["external_reference", "session_id", "provider_id"]
    );
    let no_key = client
        .get_application(pb::GetApplicationRequest { key: None })
        .await
        .unwrap_err();
    assert_eq!(reason_and_fields(&no_key).1, ["key"]);
    let unknown = get(&mut client, "no-such-application").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason_and_fields(&unknown).0, "APPLICATION_NOT_FOUND");
    let unknown = get_by_reference(&mut client, "nobody").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        sandbox
            .requests("")
            .await
            .iter()
            .all(|r| r["endpoint"] == "token")
    );
}
