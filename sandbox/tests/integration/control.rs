use connectpay_sandbox::{Endpoint, Status};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{self, Api, client, kyc_body};

const HOOK: &str = "http://127.0.0.1:9/hook";

async fn get(http: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_request_log_records_what_the_client_sent() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let (id, person) = api.submit("hold", HOOK).await;
    api.http
        .get(api.url(&format!("/idv/{person}?probe=1")))
        .bearer_auth(&api.token)
        .header("x-request-id", "r-1")
        .header("x-connectpay-requestid", "c-1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("cookie", "never-recorded")
        .send()
        .await
        .unwrap();

    let (status, all) = get(&api.http, format!("{}/_sandbox/requests", api.base)).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| r["endpoint"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["token", "submit_idv", "get_idv"]
    );

    // Token requests keep the grant type only: no code, no token.
    assert_eq!(all[0]["body"], json!({"grant_type": "authorization_code"}));
    assert_eq!(all[0]["headers"]["authorization"], "Basic …");
    assert_eq!(
        all[0]["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(all[0]["status"], 200);
    assert_eq!(all[0]["method"], "POST");
    assert_eq!(all[0]["path"], "/auth/v1/oauth2/token");

    assert_eq!(all[1]["body"]["sessionId"], "hold");
    assert_eq!(all[1]["headers"]["authorization"], "Bearer …");
    assert_eq!(all[1]["headers"]["content-type"], "application/json");

    let idv = &all[2];
    assert_eq!(
        idv["path"],
        format!("/baas/onboarding/personal/idv/{person}?probe=1")
    );
    assert_eq!(idv["body"], Value::Null);
    assert_eq!(idv["status"], 200);
    assert_eq!(
        idv["headers"],
        json!({"authorization": "Bearer …", "x-request-id": "r-1", "x-connectpay-requestid": "c-1",
               "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               "accept": "*/*"})
    );
    assert!(idv["at"].as_str().unwrap().ends_with('Z'));

    let (_, only) = get(
        &api.http,
        format!("{}/_sandbox/requests?endpoint=submit_idv", api.base),
    )
    .await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (status, _) = get(
        &api.http,
        format!("{}/_sandbox/requests?endpoint=bogus", api.base),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The in-process view is the same, and KYC bodies are recorded as sent.
    api.kyc(id, &kyc_body(&person, "Vilnius")).await;
    let kyc = sandbox.requests(Some(Endpoint::InitiateApplication));
    assert_eq!(kyc[0].status, Some(409));
    assert_eq!(kyc[0].headers["accept"], common::KYC_ACCEPT);
    assert_eq!(
        kyc[0].body.as_ref().unwrap()["person"]["address"]["city"],
        "Vilnius"
    );

    let response = api
        .http
        .delete(format!("{}/_sandbox/requests", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(sandbox.requests(None).is_empty());
    // Control routes are never recorded.
    let _ = get(&api.http, format!("{}/_sandbox/stats", api.base)).await;
    assert!(sandbox.requests(None).is_empty());
}

#[tokio::test]
async fn control_routes_over_http() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let base = &api.base;
    let http = &api.http;

    assert_eq!(
        get(http, format!("{base}/_sandbox/health")).await.1,
        json!({"ok": true})
    );

    let (id, person) = api.submit("hold", HOOK).await;
    let (status, stats) = get(http, format!("{base}/_sandbox/stats")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats,
        json!({"token": {"authorizationCode": 1, "refreshToken": 0, "invalidGrant": 0,
                         "invalidClient": 0},
               "unauthorized": 0,
               "requests": {"token": 1, "submit_idv": 1, "get_application": 0, "get_idv": 0,
                            "initiate_application": 0},
               "peakInFlight": {"token": 1, "submit_idv": 1, "get_application": 0, "get_idv": 0,
                                "initiate_application": 0}})
    );

    let response = http
        .post(format!("{base}/_sandbox/auth-codes"))
        .send()
        .await
        .unwrap();
    let code: Value = response.json().await.unwrap();
    let form = format!(
        "grant_type=authorization_code&code={}",
        code["code"].as_str().unwrap()
    );
    assert_eq!(
        common::token_request(http, base, &form).await.status(),
        StatusCode::OK
    );

    let (status, view) = get(http, format!("{base}/_sandbox/applications/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["applicationId"], json!(id));
    assert_eq!(view["personId"], json!(person));
    assert_eq!(view["externalReference"], "client-42");
    assert_eq!(view["status"], "IDV_TOKEN_GENERATED");
    assert_eq!(view["baasClientId"], Value::Null);
    assert_eq!(view["history"], json!(["IDV_TOKEN_GENERATED"]));
    assert_eq!(view["notificationUrl"], HOOK);

    let set = |body: Value| {
        http.post(format!("{base}/_sandbox/applications/{id}/status"))
            .json(&body)
            .send()
    };
    let response = set(json!({"status": "ACCOUNT_ISSUED"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "ACCOUNT_ISSUED");
    let issued = view["baasClientId"].as_str().unwrap().to_owned();
    let view: Value = set(json!({"status": "COMPLIANCE_REVIEW", "baasClientId": "given"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["baasClientId"], "given");
    // Any status, even one ConnectPay has not documented, to exercise clients.
    let view: Value = set(json!({"status": "ON_HOLD_BY_COMPLIANCE"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "ON_HOLD_BY_COMPLIANCE");
    assert_eq!(view["baasClientId"], "given");
    assert_ne!(issued, "given");
    assert_eq!(
        sandbox.application(id).unwrap().history.last(),
        Some(&Status::Other("ON_HOLD_BY_COMPLIANCE".into()))
    );

    for (body, expected) in [
        (json!({"status": ""}), StatusCode::BAD_REQUEST),
        (json!({"state": "ACCOUNT_ISSUED"}), StatusCode::BAD_REQUEST),
        (json!("ACCOUNT_ISSUED"), StatusCode::BAD_REQUEST),
    ] {
        let response = set(body).await.unwrap();
        assert_eq!(response.status(), expected);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "BAD_REQUEST");
    }
    let unknown = Uuid::new_v4();
    for url in [
        format!("{base}/_sandbox/applications/{unknown}"),
        format!("{base}/_sandbox/applications/nope"),
        format!("{base}/_sandbox/nothing-here"),
        format!("{base}/baas/onboarding/personal/nothing-here"),
    ] {
        let (status, error) = get(http, url).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["code"], "NOT_FOUND");
    }
    let response = http
        .post(format!("{base}/_sandbox/applications/{unknown}/status"))
        .json(&json!({"status": "ACCOUNT_ISSUED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    for response in [
        http.get(format!("{base}/auth/v1/oauth2/token"))
            .send()
            .await
            .unwrap(),
        http.delete(format!("{base}/_sandbox/stats"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "METHOD_NOT_ALLOWED");
    }
}

#[tokio::test]
async fn shutdown_stops_serving_and_drop_cleans_up() {
    let sandbox = common::start(common::config()).await;
    let base = sandbox.base_url();
    let http = client();
    assert!(
        http.get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_ok()
    );
    sandbox.shutdown().await;
    let fresh = client();
    assert!(
        fresh
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err()
    );

    let sandbox = common::start(common::config()).await;
    let base = sandbox.base_url();
    drop(sandbox);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        client()
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_config_that_cannot_run_is_refused() {
    for config in [
        connectpay_sandbox::SandboxConfig {
            time_scale: -1.0,
            ..common::config()
        },
        connectpay_sandbox::SandboxConfig {
            webhook_token_header: "bad header".into(),
            ..common::config()
        },
        connectpay_sandbox::SandboxConfig {
            providers: vec![],
            ..common::config()
        },
    ] {
        let error = connectpay_sandbox::Sandbox::start(config)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
}
