//! The gRPC server: the onboarding API, health (`grpc.health.v1`) and reflection (v1 and v1alpha, so that
//! every grpcurl version can list and call the API).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

use super::{
    admission::AdmissionLayer,
    auth::{AuthLayer, Authenticator},
    observe::ObserveLayer,
    onboarding::OnboardingApi,
    pb::{self, onboarding_server::OnboardingServer},
};
use crate::{config::GrpcConfig, config::reload::Reloading, service::Onboarding};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What the server needs beyond its configuration section.
pub struct Lifecycle {
    /// Cancelled when draining begins: readiness turns NOT_SERVING, nothing else changes yet.
    pub draining: CancellationToken,
    /// Cancelled when new work is refused: the server stops accepting and finishes what is in flight.
    pub stopping: CancellationToken,
    pub liveness_service: String,
    pub readiness_service: String,
}

/// Who may call, and over what.
pub struct Security {
    pub authenticator: Arc<Authenticator>,
    /// TLS on the API port (the configuration reloads when its files change); `None`: plaintext.
    pub tls: Option<Arc<Reloading<Arc<rustls::ServerConfig>>>>,
}

/// Serves until `lifecycle.stopping`, then lets in-flight calls finish (watch streams end by themselves).
/// `health_listener`, when given, serves health alone, in plaintext, for probes.
pub async fn serve(
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    config: &GrpcConfig,
    service: Arc<Onboarding>,
    security: Security,
    lifecycle: Lifecycle,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OnboardingServer<OnboardingApi>>()
        .await;
    for name in [&lifecycle.liveness_service, &lifecycle.readiness_service] {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let readiness = lifecycle.readiness_service.clone();
    let draining = lifecycle.draining.clone();
    tokio::spawn(async move {
        draining.cancelled().await;
        tracing::info!("draining: readiness is now NOT_SERVING");
        health
            .set_service_status(readiness, ServingStatus::NotServing)
            .await;
    });

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let api = OnboardingServer::new(OnboardingApi::new(service))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    if let Some(health_listener) = health_listener {
        let (health_only, stopping) = (health_service.clone(), lifecycle.stopping.clone());
        tokio::spawn(async move {
            let served = Server::builder()
                .add_service(health_only)
                .serve_with_incoming_shutdown(
                    without_delay(health_listener),
                    stopping.cancelled_owned(),
                )
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "health port failed");
            }
        });
    }
    let router = Server::builder()
        // Bounds what one connection can hold open; watches are streams, so this is their limit too.
        .max_concurrent_streams(config.max_concurrent_streams)
        // Pings find dead peers and keep idle watch streams alive through proxies.
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        // Old connections are closed gracefully so clients spread over new replicas after a scale-out.
        .max_connection_age(config.max_connection_age)
        .max_connection_age_grace(config.max_connection_age_grace)
        // Outermost: every call gets its span and its metrics, refused ones included.
        .layer(ObserveLayer)
        // Who calls, and may they: before admission, whose rate limits are per caller.
        .layer(AuthLayer::new(security.authenticator))
        // Before any service: a call refused for load or rate costs nothing further.
        .layer(AdmissionLayer::new(
            config.max_in_flight,
            config.rate_limit_per_caller,
            config.rate_limit_burst,
        ))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(api);
    let stopping = lifecycle.stopping;
    match security.tls {
        Some(tls) => {
            let incoming = super::tls::incoming(listener, tls, stopping.clone());
            router
                .serve_with_incoming_shutdown(incoming, stopping.cancelled_owned())
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(without_delay(listener), stopping.cancelled_owned())
                .await?
        }
    }
    Ok(())
}

/// The connections `listener` accepts, each sending what it is given at once (`TCP_NODELAY`).
///
/// A server given its own listener leaves tonic's `tcp_nodelay` unapplied. Without it, when an answer
/// leaves in more than one write, Nagle's algorithm holds the later ones until the client acknowledges
/// the first, which Linux delays by up to 40 ms: the benchmark's closed-loop unary p99.9 was 41–50 ms,
/// and is 9–20 ms with it (BENCHMARKS.md §11).
fn without_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
