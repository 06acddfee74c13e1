use std::time::{Duration, Instant};

use connectpay_sandbox::{Endpoint, Fault, FaultAction, FaultRates, Status};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{self, Api, kyc_body, token_request, wait_for_status};

const HOOK: &str = "http://127.0.0.1:9/hook";

fn fault(endpoint: Endpoint, count: u32, action: FaultAction) -> Fault {
    Fault {
        endpoint,
        application_id: None,
        count,
        action,
    }
}

#[tokio::test]
async fn fail_answers_without_doing_anything() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, _) = api.approved(&sandbox, HOOK).await;

    // Over HTTP, as a test written in another language would.
    let response = api
        .http
        .post(format!("{}/_sandbox/faults", api.base))
        .json(&json!({"endpoint": "get_application", "count": 2,
                      "action": {"fail": {"status": 503, "retryAfter": 2}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        let response = api.get_application(&id.to_string()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "2");
        assert!(response.headers().contains_key("x-connectpay-requestid"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    }
    assert_eq!(
        api.get_application(&id.to_string()).await.status(),
        StatusCode::OK
    );

    // A raw body, and a 429 that gets a Retry-After of its own.
    sandbox
        .add_fault(fault(
            Endpoint::GetIdv,
            1,
            FaultAction::Fail {
                status: 429,
                retry_after: None,
                body: Some("<html>slow down</html>".into()),
            },
        ))
        .unwrap();
    let response = api.get_idv("whoever").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.text().await.unwrap(), "<html>slow down</html>");

    // A failed submit creates nothing: the scripted fault answered before the work.
    sandbox
        .add_fault(fault(
            Endpoint::InitiateApplication,
            1,
            FaultAction::Fail {
                status: 502,
                retry_after: None,
                body: None,
            },
        ))
        .unwrap();
    let person = sandbox.application(id).unwrap().person_id.to_string();
    assert_eq!(
        api.kyc(id, &kyc_body(&person, "Review")).await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(sandbox.application(id).unwrap().status, Status::IdvApproved);
}

#[tokio::test]
async fn faults_can_target_one_application_and_the_token_endpoint() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (target, target_person) = api.submit("hold", HOOK).await;
    let (other, _) = api.submit("hold", HOOK).await;
    sandbox
        .add_fault(Fault {
            application_id: Some(target),
            ..fault(
                Endpoint::GetIdv,
                1,
                FaultAction::Fail {
                    status: 500,
                    retry_after: None,
                    body: None,
                },
            )
        })
        .unwrap();
    let other_person = sandbox.application(other).unwrap().person_id.to_string();
    assert_eq!(api.get_idv(&other_person).await.status(), StatusCode::OK);
    assert_eq!(
        api.get_idv(&target_person).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    sandbox
        .add_fault(fault(
            Endpoint::Token,
            1,
            FaultAction::Fail {
                status: 503,
                retry_after: None,
                body: None,
            },
        ))
        .unwrap();
    let response = token_request(
        &api.http,
        &api.base,
        "grant_type=refresh_token&refresh_token=x",
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "temporarily_unavailable"}));

    // Faults that cannot apply are refused.
    let response = api
        .http
        .post(format!("{}/_sandbox/faults", api.base))
        .json(&json!({"endpoint": "token", "action": {"stale": {"status": "IDV_APPROVED"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bad = [
        json!({"endpoint": "token", "action": {"fail": {"status": 204}}}),
        json!({"endpoint": "submit_idv", "applicationId": Uuid::new_v4(), "action": {"hang": {}}}),
        json!({"endpoint": "get_idv", "count": 0, "action": {"hang": {}}}),
        json!({"endpoint": "nowhere", "action": {"hang": {}}}),
    ];
    for body in bad {
        let response = api
            .http
            .post(format!("{}/_sandbox/faults", api.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn delay_stale_and_after_effect() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, person) = api.approved(&sandbox, HOOK).await;

    sandbox
        .add_fault(fault(Endpoint::GetIdv, 1, FaultAction::Delay { ms: 200 }))
        .unwrap();
    let started = Instant::now();
    let response = api.get_idv(&person).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status(), StatusCode::OK);

    for endpoint in [Endpoint::GetApplication, Endpoint::GetIdv] {
        sandbox
            .add_fault(fault(
                endpoint,
                1,
                FaultAction::Stale {
                    status: Status::IdvTokenGenerated,
                },
            ))
            .unwrap();
    }
    let body: Value = api
        .get_application(&id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["application"]["status"], "IDV_TOKEN_GENERATED");
    let body: Value = api.get_idv(&person).await.json().await.unwrap();
    assert_eq!(body["status"], "IDV_TOKEN_GENERATED");
    let body: Value = api.get_idv(&person).await.json().await.unwrap();
    assert_eq!(body["status"], "IDV_APPROVED");
    assert_eq!(sandbox.application(id).unwrap().status, Status::IdvApproved);

    // The work is done, the answer is an error: the client cannot know the KYC was taken.
    sandbox
        .add_fault(fault(
            Endpoint::InitiateApplication,
            1,
            FaultAction::AfterEffect { status: 500 },
        ))
        .unwrap();
    let response = api.kyc(id, &kyc_body(&person, "Review")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        sandbox.application(id).unwrap().status,
        Status::ComplianceReview
    );
    assert_eq!(
        api.kyc(id, &kyc_body(&person, "Review")).await.status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn hang_keeps_the_answer_and_reset_breaks_the_connection() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, person) = api.approved(&sandbox, HOOK).await;

    sandbox
        .add_fault(fault(
            Endpoint::InitiateApplication,
            1,
            FaultAction::Hang {},
        ))
        .unwrap();
    let hung = api
        .http
        .post(api.url(&format!("/applications/{id}/kyc")))
        .bearer_auth(&api.token)
        .header("accept", common::KYC_ACCEPT)
        .json(&kyc_body(&person, "Review"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    // The work was done, and the server kept answering everyone else.
    assert_eq!(
        sandbox.application(id).unwrap().status,
        Status::ComplianceReview
    );
    assert_eq!(api.get_idv(&person).await.status(), StatusCode::OK);
    let logged = sandbox.requests(Some(Endpoint::InitiateApplication));
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].status, None);

    let (id, person) = api.approved(&sandbox, HOOK).await;
    sandbox
        .add_fault(fault(
            Endpoint::InitiateApplication,
            1,
            FaultAction::Reset {},
        ))
        .unwrap();
    let started = Instant::now();
    let reset = api.kyc_result(id, &kyc_body(&person, "Review")).await;
    let error = reset.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        sandbox.application(id).unwrap().status,
        Status::ComplianceReview
    );
    // The connection pool recovers: the next request gets a new connection.
    assert_eq!(api.get_idv(&person).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn random_faults_and_latency_spare_the_token_endpoint() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let response = api
        .http
        .put(format!("{}/_sandbox/fault-rates", api.base))
        .json(&json!({"rate500": 0, "rate503": 1.0, "rate429": 0, "latencyMs": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    assert_eq!(
        api.get_idv("x").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    let code = sandbox.mint_auth_code().code;
    let token = token_request(
        &api.http,
        &api.base,
        &format!("grant_type=authorization_code&code={code}"),
    )
    .await;
    assert_eq!(token.status(), StatusCode::OK);

    sandbox
        .set_fault_rates(FaultRates {
            rate500: 0.3,
            rate503: 0.0,
            rate429: 0.3,
            latency_ms: 0,
        })
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let response = api.get_idv("x").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
        *seen.entry(response.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [404, 429, 500],
        "{seen:?}"
    );
    assert!(seen[&404] > 40, "{seen:?}");

    assert!(
        sandbox
            .set_fault_rates(FaultRates {
                rate500: 1.5,
                ..FaultRates::default()
            })
            .is_err()
    );
    let response = api
        .http
        .delete(format!("{}/_sandbox/faults", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for _ in 0..20 {
        assert_eq!(api.get_idv("x").await.status(), StatusCode::NOT_FOUND);
    }
    wait_for_status(
        &sandbox,
        api.approved(&sandbox, HOOK).await.0,
        Status::IdvApproved,
    )
    .await;
}
