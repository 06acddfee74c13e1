//! Callers are authenticated (mutual TLS or JWT), hold permissions per RPC, and see only their own
//! applications. The files behind it rotating on disk: `rotation.rs`.

mod common;

use std::{path::PathBuf, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    callers::*,
    identity::{Ca, SigningKey, claims, now},
    reason_and_fields,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use onboarding_gateway::grpc::pb::{self, onboarding_client::OnboardingClient};
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use serde_json::json;
use tonic::{
    Code, Request,
    transport::{Endpoint, Identity},
};

#[tokio::test]
async fn client_certificates_name_the_caller_and_permissions_decide() {
    let s = setup().await;
    let mut payments = client(&s.gateway, &s.server_ca, s.client_ca.client_uri(PAYMENTS)).await;
    let app = common::submit(&mut payments, "client-1", "session-mtls-1")
        .await
        .expect("a permitted caller with a valid certificate");
    common::get(&mut payments, &app.application_id)
        .await
        .unwrap();

    // Known to the CA, but granted nothing.
    let mut stranger = client(
        &s.gateway,
        &s.server_ca,
        s.client_ca.client_uri("spiffe://bank.test/ns/other/sa/x"),
    )
    .await;
    expect_refused(
        common::get(&mut stranger, &app.application_id).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // A DNS name is the identity when there is no URI; this one is not granted anything either.
    let (cert, key) = s.client_ca.leaf(
        vec![SanType::DnsName("reporting.bank.test".try_into().unwrap())],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut by_dns = client(&s.gateway, &s.server_ca, Identity::from_pem(cert, key)).await;
    expect_refused(
        common::get(&mut by_dns, &app.application_id).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Verified, but naming no one.
    let (cert, key) = s
        .client_ca
        .leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    let mut unnamed = client(&s.gateway, &s.server_ca, Identity::from_pem(cert, key)).await;
    expect_refused(
        common::get(&mut unnamed, &app.application_id).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );

    // No certificate and no token.
    let mut anonymous =
        OnboardingClient::new(channel(&s.gateway, &s.server_ca, None).await.unwrap());
    expect_refused(
        common::get(&mut anonymous, &app.application_id).await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );

    // A certificate from a CA the gateway does not trust never gets past the handshake.
    let rogue = Ca::new("rogue CA").client_uri(PAYMENTS);
    let refused = match channel(&s.gateway, &s.server_ca, Some(rogue)).await {
        Err(_) => true,
        Ok(channel) => OnboardingClient::new(channel)
            .get_application(get_request(&app.application_id))
            .await
            .is_err_and(|status| {
                status.code() == Code::Unavailable || status.code() == Code::Unknown
            }),
    };
    assert!(refused, "an untrusted client certificate is refused");

    // Health needs no identity: on the API port (TLS, no certificate) and on the plaintext health port.
    for channel in [
        channel(&s.gateway, &s.server_ca, None).await.unwrap(),
        Endpoint::from_shared(format!(
            "http://{}",
            s.gateway.gateway().health_addr.unwrap()
        ))
        .unwrap()
        .connect()
        .await
        .unwrap(),
    ] {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "readiness".into(),
            })
            .await
            .expect("health answers without credentials");
        assert_eq!(answer.into_inner().status, 1, "SERVING");
    }
    // Reflection needs an identity.
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel(&s.gateway, &s.server_ca, None).await.unwrap(),
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let refused = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect_err("reflection without credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn bearer_tokens_are_checked_as_rfc_8725_asks() {
    let s = setup().await;
    let channel = channel(&s.gateway, &s.server_ca, None).await.unwrap();
    let mut client = OnboardingClient::new(channel);
    let valid = s.key.sign(claims("payments-by-token"));
    let app = client
        .submit_idv_session(with_token(
            submit_request("client-jwt", "session-jwt-1", ""),
            &valid,
        ))
        .await
        .expect("a valid token of a permitted caller")
        .into_inner()
        .application
        .unwrap();
    let id = app.application_id.as_str();

    let mut expired = claims("payments-by-token");
    expired["exp"] = json!(now() - 60);
    let mut not_yet = claims("payments-by-token");
    not_yet["nbf"] = json!(now() + 600);
    let mut other_audience = claims("payments-by-token");
    other_audience["aud"] = json!("another-service");
    let mut other_issuer = claims("payments-by-token");
    other_issuer["iss"] = json!("https://elsewhere.test");
    let mut no_expiry = claims("payments-by-token");
    no_expiry.as_object_mut().unwrap().remove("exp");
    let unknown_key = SigningKey::es256("k-unknown");
    let impostor_with_known_kid = SigningKey::es256("k1");
    // `alg: none`, unsigned.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("payments-by-token").to_string())
    );
    // HS256 keyed with the public key's JWK: the classic algorithm confusion.
    let confused = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("payments-by-token"),
        &EncodingKey::from_secret(s.key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    let mut tampered = valid.clone();
    tampered.replace_range(valid.len() - 4.., "AAAA");

    let cases: Vec<(&str, String, Code, &str)> = vec![
        (
            "expired",
            s.key.sign(expired),
            Code::Unauthenticated,
            "CREDENTIALS_EXPIRED",
        ),
        (
            "not yet valid",
            s.key.sign(not_yet),
            Code::Unauthenticated,
            "CREDENTIALS_EXPIRED",
        ),
        (
            "wrong audience",
            s.key.sign(other_audience),
            Code::Unauthenticated,
            "CREDENTIALS_WRONG_AUDIENCE",
        ),
        (
            "wrong issuer",
            s.key.sign(other_issuer),
            Code::Unauthenticated,
            "CREDENTIALS_WRONG_AUDIENCE",
        ),
        (
            "no expiry",
            s.key.sign(no_expiry),
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "unknown key",
            unknown_key.sign(claims("payments-by-token")),
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "known kid, other key",
            impostor_with_known_kid.sign(claims("payments-by-token")),
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "alg none",
            unsigned,
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "wrong algorithm",
            confused,
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "tampered signature",
            tampered,
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "garbage",
            "not.a.jwt".into(),
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "empty",
            String::new(),
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        ),
        (
            "not permitted",
            s.key.sign(claims("read-only")),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
    ];
    for (case, token, code, reason) in cases {
        let mut request = Request::new(submit_request("client-x", "session-jwt-2", ""));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").trim_end().parse().unwrap(),
        );
        let status = client.submit_idv_session(request).await.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {status:?}");
        assert_eq!(reason_and_fields(&status).0, reason, "{case}: {status:?}");
        if !token.is_empty() {
            assert!(
                !status.message().contains(&token),
                "{case}: the token is not echoed"
            );
        }
    }
    // The permitted read-only caller reads, but only what it owns: the application is not its own.
    let status = client
        .get_application(with_token(
            get_request(id),
            &s.key.sign(claims("read-only")),
        ))
        .await
        .expect_err("another caller's application");
    assert_eq!(status.code(), Code::NotFound);
    // A non-bearer authorization scheme is refused rather than ignored.
    let mut basic = Request::new(get_request(id));
    basic
        .metadata_mut()
        .insert("authorization", "Basic cGF5bWVudHM6eA==".parse().unwrap());
    expect_refused(
        client.get_application(basic).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    let _ = &s.files.dir;
}

#[tokio::test]
async fn a_caller_sees_only_its_own_applications_on_every_rpc() {
    let s = setup().await;
    let mut payments = client(&s.gateway, &s.server_ca, s.client_ca.client_uri(PAYMENTS)).await;
    let mut lending = client(&s.gateway, &s.server_ca, s.client_ca.client_uri(LENDING)).await;
    let mine = common::submit(&mut payments, "client-7", "session-iso-1")
        .await
        .unwrap();
    let id = mine.application_id.clone();

    // Every RPC naming it, from another caller: NOT_FOUND, exactly as for an id that does not exist.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for target in [id.as_str(), unknown] {
        expect_refused(
            common::get(&mut lending, target).await,
            Code::NotFound,
            "APPLICATION_NOT_FOUND",
        );
        expect_refused(
            common::watch(&mut lending, common::by_id(target), "").await,
            Code::NotFound,
            "APPLICATION_NOT_FOUND",
        );
        expect_refused(
            common::initiate(&mut lending, target, common::valid_kyc()).await,
            Code::NotFound,
            "APPLICATION_NOT_FOUND",
        );
    }
    expect_refused(
        common::get_by_reference(&mut lending, "client-7").await,
        Code::NotFound,
        "APPLICATION_NOT_FOUND",
    );
    expect_refused(
        common::watch(&mut lending, common::by_reference("client-7"), "").await,
        Code::NotFound,
        "APPLICATION_NOT_FOUND",
    );
    // The same IDV session from another caller is refused without saying whose it is.
    let status = common::submit(&mut lending, "client-7", "session-iso-1")
        .await
        .expect_err("a session already submitted");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(!format!("{status:?}").contains(PAYMENTS));

    // External references are per caller: the same one names each caller's own application.
    let theirs = common::submit(&mut lending, "client-7", "session-iso-2")
        .await
        .unwrap();
    assert_ne!(theirs.application_id, id);
    let by_reference = common::get_by_reference(&mut payments, "client-7")
        .await
        .unwrap();
    assert_eq!(by_reference.application_id, id);
    let by_reference = common::get_by_reference(&mut lending, "client-7")
        .await
        .unwrap();
    assert_eq!(by_reference.application_id, theirs.application_id);
    // The owner still sees and watches its own.
    let mut stream = common::watch(&mut payments, common::by_id(&id), "")
        .await
        .unwrap();
    let first = common::next(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(common::application(&first).application_id, id);

    // Idempotency keys are per caller: the same request_id in two callers' different requests.
    for (client, session) in [
        (&mut payments, "session-iso-3"),
        (&mut lending, "session-iso-4"),
    ] {
        client
            .submit_idv_session(submit_request("client-8", session, "shared-key-1"))
            .await
            .expect("a request_id is the caller's own");
    }

    // WatchApplications needs its own permission, and then shows every caller's applications.
    let status = payments
        .watch_applications(pb::WatchApplicationsRequest {
            resume_token: String::new(),
        })
        .await
        .expect_err("not granted");
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut feed_client =
        OnboardingClient::new(channel(&s.gateway, &s.server_ca, None).await.unwrap());
    let mut feed = feed_client
        .watch_applications(with_token(
            pb::WatchApplicationsRequest {
                resume_token: String::new(),
            },
            &s.key.sign(claims("reporting")),
        ))
        .await
        .expect("granted")
        .into_inner();
    let a = common::submit(&mut payments, "client-9", "session-iso-5")
        .await
        .unwrap();
    let b = common::submit(&mut lending, "client-9", "session-iso-6")
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    while !(seen.contains(&a.application_id) && seen.contains(&b.application_id)) {
        let message = tokio::time::timeout(Duration::from_secs(10), feed.message())
            .await
            .expect("the feed delivers")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_applications_response::Event::Change(app)) = message.event {
            seen.insert(app.application_id);
        }
    }
}

#[tokio::test]
async fn the_terminal_client_presents_a_certificate_or_a_token() {
    let s = setup().await;
    let mut payments = client(&s.gateway, &s.server_ca, s.client_ca.client_uri(PAYMENTS)).await;
    let app = common::submit(&mut payments, "client-cli", "session-cli-1")
        .await
        .unwrap();
    let dir = s.files.dir.path();
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let server_ca = write("server-ca.pem", &s.server_ca.pem());
    let (cert, key) = s.client_ca.leaf(
        vec![SanType::URI(PAYMENTS.try_into().unwrap())],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (cert, key) = (write("client.crt", &cert), write("client.key", &key));
    let token = write("token", &s.key.sign(claims("payments-by-token")));
    let addr = format!("https://localhost:{}", s.gateway.addr.port());
    // Asynchronously: the gateway runs on this test's runtime and must keep serving meanwhile.
    let cli = |credentials: Vec<(&'static str, PathBuf)>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"));
        command
            .args(["client", "--addr", &addr, "--ca-file"])
            .arg(&server_ca);
        for (flag, path) in credentials {
            command.arg(flag).arg(path);
        }
        command.args(["get", "--application-id", &app.application_id]);
        async move {
            let out = command.output().await.unwrap();
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), shown)
        }
    };
    // By certificate: the owner reads its application.
    let (ok, shown) = cli(vec![("--cert-file", cert), ("--key-file", key)]).await;
    assert!(ok, "{shown}");
    assert!(shown.contains(&app.application_id), "{shown}");
    // By token: another caller, to whom the application does not exist.
    let (ok, shown) = cli(vec![("--token-file", token)]).await;
    assert!(!ok);
    assert!(shown.contains("NOT_FOUND"), "{shown}");
    // Without either: refused, and told why.
    let (ok, shown) = cli(Vec::new()).await;
    assert!(!ok);
    assert!(shown.contains("CREDENTIALS_MISSING"), "{shown}");
}
