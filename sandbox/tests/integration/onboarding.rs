use std::time::Duration;

use connectpay_sandbox::{Mode, ModeUpdate, Responses, SandboxConfig, SetStatus, Status, Statuses};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{self, Api, KYC_ACCEPT, kyc_body, wait_for_status};

const HOOK: &str = "http://127.0.0.1:9/hook";

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn scripted_idv_outcomes() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;

    let response = api
        .submit_raw(
            json!({"externalReference": "client-42", "sessionId": "ok-1",
                           "providerId": "ONDATO", "notificationUrl": HOOK}),
        )
        .await;
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    // Legacy answers are wrapped, with personId beside the wrapper.
    assert_eq!(body["application"]["status"], "IDV_TOKEN_GENERATED");
    let id: Uuid = body["application"]["applicationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let person = body["personId"].as_str().unwrap().to_owned();
    assert_eq!(body.as_object().unwrap().len(), 2);

    let (declined, _) = api.submit("provider-DECLINE-me", HOOK).await;
    let (expired, _) = api.submit("token-expired", HOOK).await;
    let (held, held_person) = api.submit("Hold-please", HOOK).await;

    wait_for_status(&sandbox, id, Status::IdvApproved).await;
    wait_for_status(&sandbox, declined, Status::IdvDeclined).await;
    wait_for_status(&sandbox, expired, Status::IdvTokenExpired).await;

    let (status, body) = json(api.get_application(&id.to_string()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"application": {"applicationId": id, "personId": person, "status": "IDV_APPROVED"}})
    );
    let (_, body) = json(api.get_idv(&person).await).await;
    assert_eq!(
        body,
        json!({"personId": person, "status": "IDV_APPROVED", "applicationId": id})
    );

    // `hold` stays undecided until the control interface decides.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sandbox.application(held).unwrap().status,
        Status::IdvTokenGenerated
    );
    let (_, body) = json(api.get_idv(&held_person).await).await;
    assert_eq!(body["status"], "IDV_TOKEN_GENERATED");
    sandbox
        .set_status(held, SetStatus::new(Status::IdvApproved))
        .unwrap();
    let (_, body) = json(api.get_idv(&held_person).await).await;
    assert_eq!(body["status"], "IDV_APPROVED");
}

#[tokio::test]
async fn scripted_application_outcomes_with_legacy_statuses() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;

    let (approved, person) = api.approved(&sandbox, HOOK).await;
    let (status, body) = json(api.kyc(approved, &kyc_body(&person, "Vilnius")).await).await;
    assert_eq!(status, StatusCode::OK);
    // The legacy example of this answer is unwrapped, even in wrapped mode.
    assert_eq!(
        body,
        json!({"applicationId": approved, "status": "COMPLIANCE_REVIEW"})
    );
    wait_for_status(&sandbox, approved, Status::AccountIssued).await;
    let view = sandbox.application(approved).unwrap();
    assert_eq!(
        view.history,
        [
            Status::IdvTokenGenerated,
            Status::IdvApproved,
            Status::ComplianceReview,
            Status::AccountIssued
        ]
    );
    let baas_client_id = view.baas_client_id.clone().unwrap();
    assert!(Uuid::parse_str(&baas_client_id).is_ok());
    // Extra KYC fields are kept as received.
    assert_eq!(view.kyc.unwrap()["person"]["occupation"], "Engineer");
    let (_, body) = json(api.get_application(&approved.to_string()).await).await;
    assert_eq!(body["application"]["status"], "ACCOUNT_ISSUED");
    assert_eq!(body["application"]["baasClientId"], json!(baas_client_id));
    // The IDV GET keeps reporting the IDV stage.
    let (_, body) = json(api.get_idv(&person).await).await;
    assert_eq!(body["status"], "IDV_APPROVED");

    let (declined, person) = api.approved(&sandbox, HOOK).await;
    let (_, body) = json(api.kyc(declined, &kyc_body(&person, "decline")).await).await;
    assert_eq!(body["status"], "COMPLIANCE_REVIEW");
    wait_for_status(&sandbox, declined, Status::ApplicationDeclined).await;
    assert_eq!(sandbox.application(declined).unwrap().baas_client_id, None);

    let (review, person) = api.approved(&sandbox, HOOK).await;
    let (_, body) = json(api.kyc(review, &kyc_body(&person, "REVIEW")).await).await;
    assert_eq!(body["status"], "COMPLIANCE_REVIEW");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sandbox.application(review).unwrap().status,
        Status::ComplianceReview
    );
}

#[tokio::test]
async fn scripted_application_outcomes_with_newer_statuses() {
    let sandbox = common::start(SandboxConfig {
        mode: Mode::newer(),
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;

    let response = api
        .submit_raw(json!({"externalReference": "client-42", "sessionId": "ok",
                           "providerId": "ONDATO", "notificationUrl": HOOK}))
        .await;
    let (_, body) = json(response).await;
    // Unwrapped answer.
    assert_eq!(body["status"], "IDV_TOKEN_GENERATED");
    let id: Uuid = body["applicationId"].as_str().unwrap().parse().unwrap();
    let person = body["personId"].as_str().unwrap().to_owned();

    // `idvStage: separate`: the application GET does not see the IDV stage.
    assert_eq!(
        api.get_application(&id.to_string()).await.status(),
        StatusCode::NOT_FOUND
    );
    wait_for_status(&sandbox, id, Status::IdvApproved).await;
    assert_eq!(
        api.get_application(&id.to_string()).await.status(),
        StatusCode::NOT_FOUND
    );
    let (_, body) = json(api.get_idv(&person).await).await;
    assert_eq!(body["status"], "IDV_APPROVED");

    let (status, body) = json(api.kyc(id, &kyc_body(&person, "Kaunas")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"applicationId": id, "status": "APPLICATION_CAPTURED"})
    );
    // Out of the IDV stage, so visible now, and unwrapped. (COMPLIANCE_REVIEW may already
    // have come: it is due after half the review delay.)
    let (_, body) = json(api.get_application(&id.to_string()).await).await;
    assert_eq!(body["applicationId"], json!(id));
    assert!(body.get("application").is_none());

    wait_for_status(&sandbox, id, Status::ApplicationApproved).await;
    let view = sandbox.application(id).unwrap();
    assert_eq!(
        view.history,
        [
            Status::IdvTokenGenerated,
            Status::IdvApproved,
            Status::ApplicationCaptured,
            Status::ComplianceReview,
            Status::ApplicationApproved
        ]
    );
    let (_, body) = json(api.get_application(&id.to_string()).await).await;
    assert_eq!(body["baasClientId"], json!(view.baas_client_id.unwrap()));

    let (declined, person) = api.approved(&sandbox, HOOK).await;
    api.kyc(declined, &kyc_body(&person, "Decline")).await;
    wait_for_status(&sandbox, declined, Status::ApplicationDeclined).await;
    assert_eq!(
        sandbox.application(declined).unwrap().history[2..],
        [
            Status::ApplicationCaptured,
            Status::ComplianceReview,
            Status::ApplicationDeclined
        ]
    );

    let (review, person) = api.approved(&sandbox, HOOK).await;
    api.kyc(review, &kyc_body(&person, "Review")).await;
    wait_for_status(&sandbox, review, Status::ComplianceReview).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        sandbox.application(review).unwrap().status,
        Status::ComplianceReview
    );

    // Wrapped responses with newer statuses wrap the KYC answer too.
    sandbox.set_mode(ModeUpdate {
        responses: Some(Responses::Wrapped),
        ..ModeUpdate::default()
    });
    let (wrapped, person) = api.approved(&sandbox, HOOK).await;
    let (_, body) = json(api.kyc(wrapped, &kyc_body(&person, "Riga")).await).await;
    assert_eq!(
        body,
        json!({"application": {"applicationId": wrapped, "status": "APPLICATION_CAPTURED"}})
    );
}

#[tokio::test]
async fn mode_switches_apply_at_once() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, person) = api.approved(&sandbox, HOOK).await;

    let response = api
        .http
        .put(format!("{}/_sandbox/mode", api.base))
        .json(&json!({"responses": "unwrapped", "idvStage": "separate"}))
        .send()
        .await
        .unwrap();
    let (status, mode) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mode,
        json!({"responses": "unwrapped", "statuses": "legacy",
               "webhookBody": "application", "idvStage": "separate"})
    );
    assert_eq!(
        api.get_application(&id.to_string()).await.status(),
        StatusCode::NOT_FOUND
    );
    sandbox.set_mode(ModeUpdate {
        statuses: Some(Statuses::Newer),
        ..ModeUpdate::default()
    });
    // The mode at KYC time decides the script.
    let (_, body) = json(api.kyc(id, &kyc_body(&person, "Vilnius")).await).await;
    assert_eq!(body["status"], "APPLICATION_CAPTURED");
    let (_, body) = json(api.get_application(&id.to_string()).await).await;
    assert_eq!(body["applicationId"], json!(id));

    let (status, mode) = json(
        api.http
            .get(format!("{}/_sandbox/mode", api.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mode["statuses"], "newer");
    let bad = api
        .http
        .put(format!("{}/_sandbox/mode", api.base))
        .json(&json!({"responses": "sideways"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn submit_validation() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let cases = [
        (
            json!({}),
            vec![
                "externalReference",
                "sessionId",
                "providerId",
                "notificationUrl",
            ],
        ),
        (
            json!({"externalReference": "r", "sessionId": "", "providerId": "VERIFF",
                   "notificationUrl": 7}),
            vec!["sessionId", "notificationUrl", "providerId"],
        ),
        (
            json!([1, 2]),
            vec![
                "externalReference",
                "sessionId",
                "providerId",
                "notificationUrl",
            ],
        ),
    ];
    for (body, fields) in cases {
        let (status, answer) = json(api.submit_raw(body.clone()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["code"], "VALIDATION_ERROR");
        let got: Vec<&str> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body}");
    }

    let malformed = api
        .http
        .post(api.url("/idv/external"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, answer) = json(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], "MALFORMED_REQUEST");

    let not_json = api
        .http
        .post(api.url("/idv/external"))
        .bearer_auth(&api.token)
        .body("externalReference=r")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn kyc_v2_validation() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, person) = api.approved(&sandbox, HOOK).await;

    let pointer_cases: [(&str, Value, &str); 13] = [
        ("/person/isUbo", Value::Null, "person.isUbo"),
        ("/person/isUbo", json!("true"), "person.isUbo"),
        ("/person/pep/isPep", Value::Null, "person.pep.isPep"),
        ("/person/pep", json!({"isPep": true}), "person.pep.position"),
        (
            "/person/pep",
            json!({"isPep": true, "position": "Mayor 2"}),
            "person.pep.position",
        ),
        (
            "/person/pep",
            json!({"isPep": true, "position": "Mayor (retired)"}),
            "person.pep.position",
        ),
        (
            "/person/pep",
            json!({"isPep": true, "position": "x".repeat(101)}),
            "person.pep.position",
        ),
        (
            "/person/address/countryCode",
            json!("LTU"),
            "person.address.countryCode",
        ),
        (
            "/person/address/countryCode",
            json!("l1"),
            "person.address.countryCode",
        ),
        (
            "/person/address/addressLine1",
            json!("ab"),
            "person.address.addressLine1",
        ),
        (
            "/person/address/addressLine2",
            json!("x".repeat(101)),
            "person.address.addressLine2",
        ),
        ("/person/address/city", json!("Vi"), "person.address.city"),
        (
            "/person/address/postcode",
            json!(""),
            "person.address.postcode",
        ),
    ];
    for (pointer, value, field) in pointer_cases {
        let mut body = kyc_body(&person, "Vilnius");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = value;
        let (status, answer) = json(api.kyc(id, &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pointer}");
        assert_eq!(answer["code"], "VALIDATION_ERROR", "{pointer}");
        assert_eq!(
            answer["errors"],
            json!([{"field": field, "message": answer["errors"][0]["message"]}]),
            "{pointer}"
        );
    }

    // Several failures at once: one entry each.
    let mut body = kyc_body(&person, "Vi");
    body["person"]["address"]["postcode"] = json!("123456789012345678901");
    let (_, answer) = json(api.kyc(id, &body).await).await;
    assert_eq!(answer["errors"].as_array().unwrap().len(), 2);

    // person.Id must be this application's person, checked first.
    let mut body = kyc_body(&Uuid::new_v4().to_string(), "Vi");
    let (status, answer) = json(api.kyc(id, &body).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["errors"][0]["field"], "person.Id");
    assert_eq!(answer["errors"].as_array().unwrap().len(), 1);
    body["person"].as_object_mut().unwrap().remove("Id");
    let (_, answer) = json(api.kyc(id, &body).await).await;
    assert_eq!(answer["errors"][0]["field"], "person.Id");

    // The Accept header selects v2.
    for accept in [
        None,
        Some("application/json"),
        Some("application/json;version=1"),
    ] {
        let mut request = api
            .http
            .post(api.url(&format!("/applications/{id}/kyc")))
            .bearer_auth(&api.token)
            .json(&kyc_body(&person, "Vilnius"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let (status, answer) = json(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{accept:?}");
        assert_eq!(answer["code"], "UNSUPPORTED_VERSION");
    }

    // Nothing so far was accepted.
    assert_eq!(sandbox.application(id).unwrap().status, Status::IdvApproved);
    let mut pep = kyc_body(&person, "Vilnius");
    pep["person"]["pep"] = json!({"isPep": true, "position": "Deputy Minister of Finance"});
    pep["person"]["address"]["addressLine2"] = json!("Apt. 5");
    assert_eq!(api.kyc(id, &pep).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn kyc_needs_an_approved_idv_once() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;

    let (held, person) = api.submit("hold", HOOK).await;
    let (status, answer) = json(api.kyc(held, &kyc_body(&person, "Vilnius")).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["code"], "INVALID_STATE");

    let (declined, person) = api.submit("decline", HOOK).await;
    wait_for_status(&sandbox, declined, Status::IdvDeclined).await;
    assert_eq!(
        api.kyc(declined, &kyc_body(&person, "Vilnius"))
            .await
            .status(),
        StatusCode::CONFLICT
    );

    let (id, person) = api.approved(&sandbox, HOOK).await;
    assert_eq!(
        api.kyc(id, &kyc_body(&person, "Review")).await.status(),
        StatusCode::OK
    );
    // Submitted once; even set back to IDV_APPROVED, it is not taken twice.
    sandbox
        .set_status(id, SetStatus::new(Status::IdvApproved))
        .unwrap();
    assert_eq!(
        api.kyc(id, &kyc_body(&person, "Review")).await.status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let unknown = Uuid::new_v4();
    for response in [
        api.get_application(&unknown.to_string()).await,
        api.get_application("not-a-uuid").await,
        api.get_idv(&unknown.to_string()).await,
        api.get_idv("nobody").await,
        api.kyc(unknown, &kyc_body(&unknown.to_string(), "Vilnius"))
            .await,
    ] {
        let (status, answer) = json(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(answer["code"], "NOT_FOUND");
    }
    let response = api
        .http
        .post(api.url(&format!("/applications/{unknown}/kyc")))
        .bearer_auth(&api.token)
        .header("accept", KYC_ACCEPT)
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    // The application is looked up before the body is parsed.
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn answers_carry_request_id_and_json_content_type() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let response = api
        .http
        .get(api.url(&format!("/applications/{}", Uuid::new_v4())))
        .bearer_auth(&api.token)
        .header("x-connectpay-requestid", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-connectpay-requestid"], "req-123");
    assert_eq!(response.headers()["content-type"], "application/json");

    let response = api.get_idv("x").await;
    let generated = response.headers()["x-connectpay-requestid"]
        .to_str()
        .unwrap();
    assert!(Uuid::parse_str(generated).is_ok());

    let response = common::token_request(&api.http, &api.base, "grant_type=x").await;
    assert!(response.headers().contains_key("x-connectpay-requestid"));
    assert_eq!(response.headers()["content-type"], "application/json");
}
