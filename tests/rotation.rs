//! The certificates and keys behind caller authentication rotate on disk without a restart, while open
//! streams carry on.

mod common;

use std::time::Duration;

use common::{
    callers::*,
    identity::{Ca, SigningKey, claims, jwks},
};
use onboarding_gateway::grpc::pb::{self, onboarding_client::OnboardingClient};
use tonic::Code;

#[tokio::test]
async fn certificates_and_keys_rotate_on_disk_while_streams_stay_open() {
    // The IDV decision comes after the rotations, so the open watch must carry it across them.
    let s = setup_with_idv_delay(4000).await;
    let mut payments = client(&s.gateway, &s.server_ca, s.client_ca.client_uri(PAYMENTS)).await;
    let app = common::submit(&mut payments, "client-r", "session-rot-1")
        .await
        .unwrap();
    // A watch opened before any rotation, on a connection made before it.
    let mut stream = common::watch(&mut payments, common::by_id(&app.application_id), "")
        .await
        .unwrap();
    common::next(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();

    // 1. The server certificate: a new one from a new CA. New connections see it; old ones stay.
    let new_server_ca = Ca::new("server CA 2");
    let (cert, key) = new_server_ca.server();
    // Both files of a Kubernetes secret change at once; here the key first, then the certificate: the
    // pair mismatches for a moment, and the gateway keeps the old pair until the new one is whole.
    replace(&s.files.key, &key);
    replace(&s.files.cert, &cert);
    let mut rotated = false;
    for _ in 0..100 {
        if channel(
            &s.gateway,
            &new_server_ca,
            Some(s.client_ca.client_uri(PAYMENTS)),
        )
        .await
        .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "new connections get the new server certificate");
    assert!(
        channel(
            &s.gateway,
            &s.server_ca,
            Some(s.client_ca.client_uri(PAYMENTS))
        )
        .await
        .is_err(),
        "the old certificate is no longer served"
    );

    // 2. The client CA: callers with certificates from the new CA get in; the old CA's do not.
    let new_client_ca = Ca::new("client CA 2");
    replace(&s.files.client_ca, &new_client_ca.pem());
    let mut accepted = false;
    for _ in 0..100 {
        if let Ok(channel) = channel(
            &s.gateway,
            &new_server_ca,
            Some(new_client_ca.client_uri(PAYMENTS)),
        )
        .await
            && OnboardingClient::new(channel)
                .get_application(get_request(&app.application_id))
                .await
                .is_ok()
        {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "a certificate from the new client CA is accepted");

    // 3. The JWKS: a token signed with a new key is refused until the key set names it.
    let next_key = SigningKey::es256("k2");
    let token = next_key.sign(claims("payments-by-token"));
    let mut by_token =
        OnboardingClient::new(channel(&s.gateway, &new_server_ca, None).await.unwrap());
    expect_refused(
        by_token
            .get_application(with_token(get_request(&app.application_id), &token))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    replace(&s.files.jwks, &jwks(&[&s.key, &next_key]));
    let mut taken = false;
    for _ in 0..100 {
        // The application is another caller's: NOT_FOUND means the token was accepted.
        let answer = by_token
            .get_application(with_token(get_request(&app.application_id), &token))
            .await;
        if answer.is_err_and(|status| status.code() == Code::NotFound) {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "the new key set is used");

    // The stream opened before all of it still delivers: the sandbox approves the IDV.
    let mut statuses = Vec::new();
    while let Some(message) = common::next(&mut stream, Duration::from_secs(10)).await {
        if let Some(pb::watch_application_response::Event::Change(app)) = message.event {
            statuses.push(app.status);
            if app.status == pb::ApplicationStatus::IdvApproved as i32 {
                break;
            }
        }
    }
    assert!(
        statuses.contains(&(pb::ApplicationStatus::IdvApproved as i32)),
        "the open watch went on: {statuses:?}"
    );
}
