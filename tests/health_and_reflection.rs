//! What generic gRPC tooling needs: health checks, and reflection in both protocol versions (grpcurl 1.8
//! speaks only v1alpha, newer tools v1).

mod common;

use common::{TestGateway, TestSandbox, sandbox::AUTH_CODES};
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SERVICE: &str = "connectpay.onboarding.v1.Onboarding";

async fn channel(gateway: &TestGateway) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_api() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut health = HealthClient::new(channel(&gateway).await);
    for service in ["", SERVICE] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_and_describes_the_api_in_v1_and_v1alpha() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;

    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&gateway).await);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol(format!("{SERVICE}.SubmitIdvSession")),
        ]
        .map(|message| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        });
        let mut answers = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        match answers
            .next()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::ListServicesResponse(list) => {
                assert!(list.service.iter().any(|s| s.name == SERVICE), "{list:?}")
            }
            other => panic!("{other:?}"),
        }
        match answers
            .next()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::FileDescriptorResponse(files) => {
                assert!(!files.file_descriptor_proto.is_empty())
            }
            other => panic!("{other:?}"),
        }
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&gateway).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match answers
            .next()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::ListServicesResponse(list) => {
                assert!(list.service.iter().any(|s| s.name == SERVICE), "{list:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// `client health`, the exec probe for a gateway the kubelet cannot reach (`serve --sandbox` listens on
/// loopback only): it succeeds while the named service is SERVING, and fails, naming the status, once
/// readiness turns NOT_SERVING at the start of a drain, while liveness stays SERVING.
#[tokio::test]
async fn client_health_succeeds_only_while_the_service_is_serving() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |config| {
        config.shutdown.drain_delay = std::time::Duration::from_secs(5);
        config.shutdown.grace_period = std::time::Duration::from_secs(10);
    })
    .await;
    let addr = format!("http://{}", gateway.addr);
    let probe = |service: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
                .args(["client", "--addr", &addr, "health", "--service", service])
                .env_clear()
                .output()
                .unwrap()
        })
    };
    for service in ["readiness", "liveness", ""] {
        let out = probe(service).await.unwrap();
        assert!(out.status.success(), "{service:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"SERVING\""));
    }
    let out = probe("no-such-service").await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));

    gateway.begin_shutdown();
    let mut health = HealthClient::new(channel(&gateway).await);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while health
        .check(HealthCheckRequest {
            service: "readiness".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
        == ServingStatus::Serving
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never turned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = probe("readiness").await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_SERVING"));
    let out = probe("liveness").await.unwrap();
    assert!(out.status.success(), "{out:?}");
}
