use std::time::Duration;

use connectpay_sandbox::SandboxConfig;
use http::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Api, basic, client, token_request};

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn authorization_code_is_usable_once() {
    let sandbox = common::start(common::config()).await;
    let http = client();
    let base = sandbox.base_url();
    let form = "grant_type=authorization_code&code=sandbox-auth-code";

    let (status, answer) = json(token_request(&http, &base, form).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], json!(3600));
    assert_eq!(answer["refresh_token_expires_in"], json!("2592000"));
    assert_eq!(answer["scope"], "onboarding-baas");
    assert_eq!(answer["client_customer_name"], "Sandbox Platform");
    assert!(answer["access_token"].is_string() && answer["refresh_token"].is_string());

    let (status, answer) = json(token_request(&http, &base, form).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, json!({"error": "invalid_grant"}));

    // Minted codes work the same way.
    let code = sandbox.mint_auth_code().code;
    let form = format!("grant_type=authorization_code&code={code}");
    assert_eq!(
        token_request(&http, &base, &form).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        token_request(&http, &base, &form).await.status(),
        StatusCode::BAD_REQUEST
    );

    let stats = sandbox.stats();
    assert_eq!(stats.token.authorization_code, 2);
    assert_eq!(stats.token.invalid_grant, 2);
}

#[tokio::test]
async fn client_credentials_are_checked() {
    let sandbox = common::start(common::config()).await;
    let http = client();
    let url = format!("{}/auth/v1/oauth2/token", sandbox.base_url());
    let form = "grant_type=authorization_code&code=sandbox-auth-code";
    for authorization in [
        None,
        Some(basic("sandbox-client", "wrong")),
        Some("Basic %%%".into()),
    ] {
        let mut request = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let (status, answer) = json(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer, json!({"error": "invalid_client"}));
    }
    assert_eq!(sandbox.stats().token.invalid_client, 3);
    // The code was not spent by the refused attempts.
    assert_eq!(
        token_request(&http, &sandbox.base_url(), form)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_token_requests_are_400() {
    let sandbox = common::start(common::config()).await;
    let http = client();
    let base = sandbox.base_url();
    for (form, error) in [
        ("grant_type=password&username=x", "unsupported_grant_type"),
        ("code=sandbox-auth-code", "invalid_request"),
        ("grant_type=authorization_code", "invalid_request"),
        ("grant_type=refresh_token", "invalid_request"),
    ] {
        let (status, answer) = json(token_request(&http, &base, form).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert_eq!(answer["error"], error, "{form}");
    }
    // A JSON body is not a form.
    let response = http
        .post(format!("{base}/auth/v1/oauth2/token"))
        .header("authorization", basic("sandbox-client", "sandbox-secret"))
        .json(&json!({"grant_type": "authorization_code", "code": "sandbox-auth-code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await.1["error"], "invalid_request");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_are_single_use() {
    let sandbox = common::start(common::config()).await;
    let http = client();
    let base = sandbox.base_url();
    let (_, first) = json(
        token_request(
            &http,
            &base,
            "grant_type=authorization_code&code=sandbox-auth-code",
        )
        .await,
    )
    .await;
    let refresh = |token: &Value| {
        format!(
            "grant_type=refresh_token&refresh_token={}",
            token.as_str().unwrap()
        )
    };

    let (status, second) =
        json(token_request(&http, &base, &refresh(&first["refresh_token"])).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);

    // The spent refresh token, a second time: what a racing replica would get.
    let (status, answer) =
        json(token_request(&http, &base, &refresh(&first["refresh_token"])).await).await;
    assert_eq!(
        (status, answer),
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
    );
    let (status, _) =
        json(token_request(&http, &base, &refresh(&json!("never-issued"))).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) =
        json(token_request(&http, &base, &refresh(&second["refresh_token"])).await).await;
    assert_eq!(status, StatusCode::OK);

    let stats = sandbox.stats();
    assert_eq!(stats.token.refresh_token, 2);
    assert_eq!(stats.token.invalid_grant, 2);

    // Refreshing did not revoke the first access token.
    let api = Api {
        http,
        base,
        token: first["access_token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        api.get_idv(&uuid::Uuid::new_v4().to_string())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn lifetimes_are_divided_by_the_time_scale() {
    // 7 sandbox seconds per second: 3600 / 7 = 514.28… → 514.
    let sandbox = common::start(SandboxConfig {
        time_scale: 7.0,
        ..common::config()
    })
    .await;
    let (_, answer) = json(
        token_request(
            &client(),
            &sandbox.base_url(),
            "grant_type=authorization_code&code=sandbox-auth-code",
        )
        .await,
    )
    .await;
    assert_eq!(answer["expires_in"], json!(514));
    assert_eq!(answer["refresh_token_expires_in"], json!("370285"));
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    // 3600 s and 3000 s at 2400× are 1.5 s and 1.25 s: both round down to 1 s.
    let sandbox = common::start(SandboxConfig {
        time_scale: 2400.0,
        refresh_token_ttl_secs: 3000,
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let (_, answer) = json(
        token_request(
            &api.http,
            &api.base,
            &format!(
                "grant_type=authorization_code&code={}",
                sandbox.mint_auth_code().code
            ),
        )
        .await,
    )
    .await;
    assert_eq!(answer["expires_in"], json!(1));
    assert_eq!(answer["refresh_token_expires_in"], json!("1"));
    let unknown_person = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        api.get_idv(&unknown_person).await.status(),
        StatusCode::NOT_FOUND
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = json(api.get_idv(&unknown_person).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "UNAUTHORIZED");
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        answer["refresh_token"].as_str().unwrap()
    );
    let (status, body) = json(token_request(&api.http, &api.base, &refresh).await).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
    );
    assert_eq!(sandbox.stats().unauthorized, 1);
    assert_eq!(sandbox.stats().token.invalid_grant, 1);
}

#[tokio::test]
async fn onboarding_needs_a_valid_bearer_token() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let url = api.url("/idv/external");
    let body = json!({"externalReference": "r", "sessionId": "s", "providerId": "ONDATO",
                      "notificationUrl": "http://127.0.0.1:9/"});

    let without = api.http.post(&url).json(&body).send().await.unwrap();
    let basic = api
        .http
        .post(&url)
        .header("authorization", basic("sandbox-client", "sandbox-secret"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let unknown = api
        .http
        .post(&url)
        .bearer_auth("made-up")
        .json(&body)
        .send()
        .await
        .unwrap();
    for response in [without, basic, unknown] {
        let (status, answer) = json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer["code"], "UNAUTHORIZED");
        assert!(answer["message"].is_string());
    }
    assert_eq!(sandbox.stats().unauthorized, 3);

    // The control interface expires every access token at once; refreshing still works.
    assert_eq!(api.submit_raw(body.clone()).await.status(), StatusCode::OK);
    let response = api
        .http
        .post(format!("{}/_sandbox/tokens/expire-access", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.submit_raw(body).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
