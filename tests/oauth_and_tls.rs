//! The ConnectPay side's security: OAuth pairs refreshed ahead of expiry and never reused, and mutual TLS.

mod common;

use std::time::Duration;

use common::{TestGateway, TestSandbox, certs, get, sandbox::AUTH_CODES, submit};
use connectpay_sandbox::TlsConfig;

fn counter(stats: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(stats, |v, key| &v[*key])
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in {stats}"))
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_and_no_refresh_token_is_spent_twice() {
    // One sandbox hour lasts three real seconds.
    let sandbox = TestSandbox::in_process(|c| c.time_scale = 1200.0).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-oauth", "session-hold")
        .await
        .unwrap();

    // Keep calling across several access-token lifetimes: no call may fail, and none may carry an
    // expired token.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut calls = 0;
    while tokio::time::Instant::now() < until {
        get(&mut client, &app.application_id)
            .await
            .expect("every call succeeds");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = sandbox.stats().await;
    assert!(calls > 50);
    assert_eq!(
        counter(&stats, &["token", "authorizationCode"]),
        1,
        "{stats}"
    );
    assert!(
        counter(&stats, &["token", "refreshToken"]) >= 4,
        "several rotations: {stats}"
    );
    assert_eq!(
        counter(&stats, &["token", "invalidGrant"]),
        0,
        "no spent refresh token reused: {stats}"
    );
    assert_eq!(
        counter(&stats, &["unauthorized"]),
        0,
        "never sent an expired token: {stats}"
    );
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_for_all_concurrent_callers() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-401", "session-hold")
        .await
        .unwrap();
    let before = counter(&sandbox.stats().await, &["token", "refreshToken"]);

    // ConnectPay stops accepting the current access token well before its stated expiry.
    sandbox.handle().expire_access_tokens();
    let calls = (0..20).map(|_| {
        let mut client = gateway.client();
        let id = app.application_id.clone();
        tokio::spawn(async move { get(&mut client, &id).await })
    });
    for call in calls {
        call.await
            .unwrap()
            .expect("the call is retried once with the renewed token");
    }
    let stats = sandbox.stats().await;
    assert_eq!(
        counter(&stats, &["token", "refreshToken"]),
        before + 1,
        "exactly one refresh: {stats}"
    );
    assert_eq!(counter(&stats, &["token", "invalidGrant"]), 0, "{stats}");
}

#[tokio::test]
async fn connectpay_requires_the_client_certificate_and_the_gateway_presents_it() {
    let pki = certs::pki();
    let sandbox = TestSandbox::in_process(|c| {
        c.tls = Some(TlsConfig {
            cert_path: pki.server_cert.clone(),
            key_path: pki.server_key.clone(),
            client_ca_path: Some(pki.ca.clone()),
        })
    })
    .await;
    assert!(sandbox.base_url().starts_with("https://"));

    let without = TestGateway::start(
        &sandbox,
        AUTH_CODES[0],
        &format!("[connectpay.tls]\nca_bundle_file = {:?}", pki.ca),
    )
    .await;
    let refused = submit(&mut without.client(), "client-mtls", "session-ok")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
        ),
        "{refused:?}"
    );
    assert!(
        sandbox.handle().requests(None).is_empty(),
        "nothing got through without a certificate"
    );
    without.stop().await;

    let with = TestGateway::start(
        &sandbox,
        AUTH_CODES[1],
        &format!(
            "[connectpay.tls]\nca_bundle_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
            pki.ca, pki.client_chain, pki.client_key
        ),
    )
    .await;
    let app = submit(&mut with.client(), "client-mtls", "session-ok")
        .await
        .unwrap();
    assert!(!app.application_id.is_empty());
}
