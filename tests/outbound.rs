//! Where the gateway's requests to ConnectPay go: through the configured proxy, and nowhere else, whatever
//! a redirect says.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    http::{StatusCode, header::LOCATION},
    response::IntoResponse,
};
use common::{TestGateway, TestSandbox, reason_and_fields, sandbox::AUTH_CODES, submit};
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn connectpay_is_reached_through_the_configured_proxy() {
    let sandbox = TestSandbox::process(&[]).await;
    // The name does not resolve: only the proxy (here the sandbox itself, serving the absolute-form
    // requests a proxy receives) can carry the calls.
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.connectpay.base_url = "http://connectpay.invalid".into();
        c.connectpay.proxy_url = Some(sandbox.base_url().to_owned().into());
    })
    .await;
    let app = submit(&mut gateway.client(), "client-proxied", "session-hold")
        .await
        .expect("through the proxy");
    assert!(!app.application_id.is_empty());
}

#[tokio::test]
async fn redirects_from_connectpay_are_not_followed() {
    let sandbox = TestSandbox::process(&[]).await;
    // A ConnectPay that issues tokens itself and answers every other call with a 307 to the sandbox: a
    // client that followed it would send the request again, body and all, to a host nobody configured.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    let elsewhere = sandbox.base_url().trim_end_matches('/').to_owned();
    let redirected = Arc::new(AtomicUsize::new(0));
    let answer = {
        let redirected = redirected.clone();
        move |uri: axum::http::Uri| async move {
            if uri.path().ends_with("/oauth2/token") {
                let pair = json!({"access_token": "a", "refresh_token": "r", "expires_in": 3600});
                return axum::Json(pair).into_response();
            }
            redirected.fetch_add(1, Ordering::SeqCst);
            let location = format!("{elsewhere}{uri}");
            (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]).into_response()
        }
    };
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(answer))
            .await
            .unwrap()
    });
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.connectpay.base_url = redirector;
    })
    .await;

    let e = submit(&mut gateway.client(), "client-redirected", "session-ok")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(reason_and_fields(&e), ("UPSTREAM_ERROR".to_owned(), vec![]));
    assert_eq!(
        redirected.load(Ordering::SeqCst),
        1,
        "one call, not retried"
    );
    assert!(
        sandbox.requests("").await.is_empty(),
        "the redirect's target received a request"
    );
    // Operators see the answer for what it was.
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(
            r#"onboarding_connectpay_requests_total{endpoint="submit_idv",status="3xx"} 1"#
        ),
        "{metrics}"
    );
}
