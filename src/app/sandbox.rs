//! `serve --sandbox`: the gateway against an embedded ConnectPay sandbox, on loopback only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use connectpay_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::{Gateway, StartError, start};
use crate::config::{Config, TlsConfig};

/// Nothing in sandbox mode may be reachable from another machine: it authenticates no caller.
fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
}

/// Starts the embedded sandbox, points the ConnectPay settings at it, and starts the gateway.
pub async fn start_with_sandbox(
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<Gateway, StartError> {
    // Fresh credentials per run: nothing about them is secret, but nothing should depend on them either.
    let client_secret = uuid::Uuid::new_v4().to_string();
    let auth_code = uuid::Uuid::new_v4().to_string();
    let sandbox = Sandbox::start(SandboxConfig {
        listen: loopback(config.sandbox.listen),
        client_id: "onboarding-gateway".into(),
        client_secret: client_secret.clone(),
        auth_codes: vec![auth_code.clone()],
        idv_delay_ms: config.sandbox.idv_delay.as_millis() as u64,
        review_delay_ms: config.sandbox.review_delay.as_millis() as u64,
        providers: config.connectpay.providers.clone(),
        ..SandboxConfig::default()
    })
    .await
    .map_err(StartError::Sandbox)?;
    let sandbox_url = sandbox.base_url();

    config.grpc.listen = loopback(config.grpc.listen);
    let cp = &mut config.connectpay;
    cp.base_url = sandbox_url.clone();
    cp.client_id = "onboarding-gateway".into();
    cp.client_secret = Some(SecretString::from(client_secret));
    cp.auth_code = Some(SecretString::from(auth_code));
    cp.allow_insecure_http = true;
    cp.tls = TlsConfig::default();
    // No receiver yet: ConnectPay's notifications are not consumed, and GetApplication polls instead.
    cp.notification_url = "http://127.0.0.1:9/webhooks/connectpay".into();

    tracing::warn!(
        sandbox = %sandbox_url,
        "SANDBOX MODE: ConnectPay is simulated, the gateway listens on loopback only and authenticates no caller"
    );
    let mut gateway = start(config, shutdown.clone()).await?;
    gateway.sandbox_url = Some(sandbox_url);
    gateway.tasks.spawn(async move {
        shutdown.cancelled().await;
        sandbox.shutdown().await;
    });
    Ok(gateway)
}
