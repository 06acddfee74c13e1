//! The canary: the whole flow with a distinctive marker in every personal field, every session id and
//! every secret, with logs at TRACE, spans exported and metrics scraped — and then none of the markers
//! anywhere: not in standard output or error, an exported span, a metric, an error a caller got, or the
//! database.

mod common;

use std::time::Duration;

use common::{
    TestSandbox, identity::SigningKey, otlp::Collector, process::GatewayProcess, reason_and_fields,
};
use onboarding_gateway::grpc::pb::{self, onboarding_client::OnboardingClient};
use prost_types::{ListValue, Struct, Value, value::Kind};
use tonic::{Request, transport::Channel};
use tonic_types::StatusExt;

const AUTH_CODE: &str = "canary-auth-code-Zq81x";
const SESSION: &str = "canary-session-Zq81x";
const DECLINED_SESSION: &str = "canary-second-session-Zq81x";
/// Personal values; a PEP position may not contain digits.
const POSITION: &str = "CanaryPositionZqxz";
const STREET: &str = "CanaryStreet Zq81x 12";
const FLAT: &str = "CanaryFlat Zq81x";
const CITY: &str = "CanaryCity Zq81x";
const POSTCODE: &str = "CPZq81x";
const EXTRA_KEY: &str = "canaryExtraKeyZq81x";
const EXTRA_VALUE: &str = "CanaryExtraValue Zq81x";
const NESTED_VALUE: &str = "CanaryNestedValue Zq81x";
const LISTED_VALUE: &str = "CanaryListedValue Zq81x";
/// Values refused by the KYC rules: the error must not quote them either.
const BAD_POSITION: &str = "CanaryBad~PositionZqxz";
const BAD_CITY: &str = "Cz";
const BAD_TOKEN: &str = "canary.bearer.Zq81x";

fn text(value: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.into())),
    }
}

fn kyc(position: &str, city: &str) -> pb::PersonalKyc {
    let nested = Struct {
        fields: [("deep".to_owned(), text(NESTED_VALUE))].into(),
    };
    let listed = ListValue {
        values: vec![text(LISTED_VALUE)],
    };
    pb::PersonalKyc {
        is_ubo: Some(false),
        pep: Some(pb::Pep {
            is_pep: Some(true),
            position: position.into(),
        }),
        address: Some(pb::Address {
            country_code: "LT".into(),
            address_line1: STREET.into(),
            address_line2: FLAT.into(),
            city: city.into(),
            postcode: POSTCODE.into(),
        }),
        account_purposes: vec!["SALARY".into()],
        additional_fields: Some(Struct {
            fields: [
                (EXTRA_KEY.to_owned(), text(EXTRA_VALUE)),
                (
                    "canaryNested".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(nested)),
                    },
                ),
                (
                    "canaryListed".to_owned(),
                    Value {
                        kind: Some(Kind::ListValue(listed)),
                    },
                ),
            ]
            .into(),
        }),
    }
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Everything a caller can see of an error: code, message, and the decoded details.
fn seen(status: &tonic::Status) -> String {
    format!("{status:?} {:?}", status.get_error_details())
}

async fn wait_for(
    client: &mut OnboardingClient<Channel>,
    token: &str,
    id: &str,
    status: pb::ApplicationStatus,
) {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let app = client
            .get_application(authed(
                pb::GetApplicationRequest {
                    key: Some(pb::get_application_request::Key::ApplicationId(id.into())),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .application
            .unwrap();
        if app.status == status as i32 {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "{app:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_marker_of_personal_data_or_secret_appears_anywhere() {
    let collector = Collector::default();
    let otlp = collector.start().await;
    let sandbox = TestSandbox::in_process(|c| c.auth_codes.push(AUTH_CODE.into())).await;
    let key = SigningKey::es256("canary-key");
    let mut gateway = GatewayProcess::prepare(&sandbox, AUTH_CODE);
    let jwks_file = gateway.dir().join("jwks.json");
    std::fs::write(&jwks_file, common::identity::jwks(&[&key])).unwrap();
    gateway.raw_env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{otlp}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let jwks_path = jwks_file.to_str().unwrap().to_owned();
    gateway
        .launch(&[
            ("LOG__LEVEL", "trace"),
            ("LOG__FORMAT", "json"),
            ("AUTH__ALLOW_UNAUTHENTICATED", "false"),
            ("AUTH__METHODS", "[\"jwt\"]"),
            ("AUTH__JWT__JWKS_FILE", &jwks_path),
            ("AUTH__JWT__ISSUER", common::identity::ISSUER),
            ("AUTH__JWT__AUDIENCE", common::identity::AUDIENCE),
            (
                "AUTH__PERMISSIONS__canary-caller",
                "[\"SubmitIdvSession\", \"GetApplication\", \"InitiateOnboarding\", \"WatchApplication\"]",
            ),
        ])
        .await;
    let token = key.sign(common::identity::claims("canary-caller"));
    let mut client = gateway.client();
    let mut errors = Vec::new();

    // Refused calls first: a bad token, KYC that breaks the rules, a session with an unknown provider.
    let refused = client
        .get_application(authed(
            pb::GetApplicationRequest {
                key: Some(pb::get_application_request::Key::ExternalReference(
                    "client-canary".into(),
                )),
            },
            BAD_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    errors.push(seen(&refused));
    let refused = client
        .submit_idv_session(authed(
            pb::SubmitIdvSessionRequest {
                external_reference: "client-canary".into(),
                session_id: DECLINED_SESSION.into(),
                provider_id: "NOT-A-PROVIDER".into(),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    errors.push(seen(&refused));

    // The flow.
    let app = client
        .submit_idv_session(authed(
            pb::SubmitIdvSessionRequest {
                external_reference: "client-canary".into(),
                session_id: SESSION.into(),
                provider_id: "ONDATO".into(),
                request_id: "canary-request-1".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .application
        .unwrap();
    let id = app.application_id.clone();
    wait_for(&mut client, &token, &id, pb::ApplicationStatus::IdvApproved).await;
    let refused = client
        .initiate_onboarding(authed(
            pb::InitiateOnboardingRequest {
                application_id: id.clone(),
                request_id: String::new(),
                kyc: Some(kyc(BAD_POSITION, BAD_CITY)),
            },
            &token,
        ))
        .await
        .unwrap_err();
    let (_, fields) = reason_and_fields(&refused);
    assert!(
        fields.contains(&"kyc.pep.position".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"kyc.address.city".to_owned()),
        "{fields:?}"
    );
    errors.push(seen(&refused));
    client
        .initiate_onboarding(authed(
            pb::InitiateOnboardingRequest {
                application_id: id.clone(),
                request_id: "canary-request-2".into(),
                kyc: Some(kyc(POSITION, CITY)),
            },
            &token,
        ))
        .await
        .expect("the KYC data is accepted");
    let mut stream = client
        .watch_application(authed(
            pb::WatchApplicationRequest {
                key: Some(pb::watch_application_request::Key::ApplicationId(
                    id.clone(),
                )),
                resume_token: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some(
            pb::watch_application_response::Event::Snapshot(app)
            | pb::watch_application_response::Event::Change(app),
        ) = message.event
            && app.status == pb::ApplicationStatus::AccountIssued as i32
        {
            break;
        }
    }

    // The markers did go through the gateway: ConnectPay received every one of them.
    let received = sandbox.application(&id).await.to_string();
    for marker in [
        POSITION,
        STREET,
        FLAT,
        CITY,
        POSTCODE,
        EXTRA_KEY,
        EXTRA_VALUE,
        NESTED_VALUE,
        LISTED_VALUE,
    ] {
        assert!(
            received.contains(marker),
            "ConnectPay never got {marker}: {received}"
        );
    }

    let metrics = reqwest::get(format!("http://{}/metrics", gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("onboarding_grpc_requests_total"),
        "{metrics}"
    );
    // Spans are exported in batches: wait for the flow's last RPC to arrive, then stop the process.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !collector
        .spans()
        .iter()
        .any(|s| s.name.contains("WatchApplication"))
    {
        assert!(tokio::time::Instant::now() < until, "spans never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.terminate().await;
    let spans = format!("{:?}", collector.spans());
    let output = gateway.output();
    assert!(
        output.contains("TRACE") || output.contains("\"level\":\"TRACE\""),
        "logs are at TRACE"
    );
    let database =
        String::from_utf8_lossy(&common::database_bytes(&gateway.database())).into_owned();

    let mut secrets: Vec<String> = vec![
        AUTH_CODE.into(),
        common::CLIENT_SECRET.into(),
        common::STORE_KEY.into(),
        connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN.into(),
        token.clone(),
        BAD_TOKEN.into(),
        SESSION.into(),
        DECLINED_SESSION.into(),
    ];
    let issued = sandbox.handle().issued_tokens();
    assert!(!issued.is_empty(), "the gateway obtained ConnectPay tokens");
    secrets.extend(issued);
    let personal = [
        POSITION,
        STREET,
        FLAT,
        CITY,
        POSTCODE,
        EXTRA_KEY,
        EXTRA_VALUE,
        NESTED_VALUE,
        LISTED_VALUE,
        BAD_POSITION,
    ];
    let places = [
        ("standard output and error", &output),
        ("exported spans", &spans),
        ("scraped metrics", &metrics),
        ("the database", &database),
        ("errors returned", &errors.join("\n")),
    ];
    let mut found = Vec::new();
    for marker in secrets.iter().map(String::as_str).chain(personal) {
        for (place, content) in &places {
            if content.contains(marker) {
                let at = content.find(marker).unwrap();
                let context =
                    &content[at.saturating_sub(200)..(at + marker.len() + 100).min(content.len())];
                found.push(format!("{marker:?} in {place}: …{context}…"));
            }
        }
    }
    assert!(found.is_empty(), "leaked:\n{}", found.join("\n\n"));
}
