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
