//! `serve --sandbox`: the gateway against an embedded ConnectPay sandbox, on loopback only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use connectpay_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::{Gateway, Listeners, StartError, run};
use crate::{
    config::{Config, TlsConfig},
    webhook,
};

/// Nothing in sandbox mode may be reachable from another machine: it authenticates no caller.
fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
}

/// A random webhook token of ConnectPay's shape (36 characters).
fn webhook_token() -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string(); // 32 hex characters
    format!("sbx-{raw}")
}

/// Starts the embedded sandbox, points the ConnectPay and webhook settings at it, and starts the gateway.
pub async fn start_with_sandbox(
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<Gateway, StartError> {
    config.grpc.listen = loopback(config.grpc.listen);
    // The sandbox forgets everything when it stops, so the gateway's state must start empty too.
    let scratch = tempfile::tempdir().map_err(StartError::Sandbox)?;
    if config.store.url.is_none() {
        let file = scratch.path().join("gateway.db");
        config.store.url = Some(SecretString::from(format!("sqlite://{}", file.display())));
    }
    config.webhook.listen = loopback(config.webhook.listen);
    config.admin.listen = loopback(config.admin.listen);
    config.health.listen = config.health.listen.map(loopback);
    let listeners = Listeners::bind(&config).await?;

    // Fresh credentials per run: nothing about them is secret, but nothing should depend on them either.
    let client_secret = uuid::Uuid::new_v4().to_string();
    let auth_code = uuid::Uuid::new_v4().to_string();
    let token = webhook_token();
    let sandbox = Sandbox::start(SandboxConfig {
        listen: loopback(config.sandbox.listen),
        client_id: "onboarding-gateway".into(),
        client_secret: client_secret.clone(),
        auth_codes: vec![auth_code.clone()],
        idv_delay_ms: config.sandbox.idv_delay.as_millis() as u64,
        review_delay_ms: config.sandbox.review_delay.as_millis() as u64,
        providers: config.connectpay.providers.clone(),
        webhook_token: token.clone(),
        webhook_token_header: config.webhook.token_header.clone(),
        ..SandboxConfig::default()
    })
    .await
    .map_err(StartError::Sandbox)?;
    let sandbox_url = sandbox.base_url();

    let cp = &mut config.connectpay;
    cp.base_url = sandbox_url.clone();
    cp.client_id = "onboarding-gateway".into();
    cp.client_secret = Some(SecretString::from(client_secret));
    cp.auth_code = Some(SecretString::from(auth_code));
    cp.allow_insecure_http = true;
    cp.tls = TlsConfig::default();
    cp.notification_url = webhook::local_url(listeners.webhook_addr(), &config.webhook.path);
    config.webhook.tokens = vec![SecretString::from(token)];
    config.webhook.allowed_sources = vec!["127.0.0.0/8".parse().expect("a CIDR")];
    config.webhook.trusted_proxies = Vec::new();

    tracing::warn!(
        sandbox = %sandbox_url,
        "SANDBOX MODE: ConnectPay is simulated, the gateway listens on loopback only and authenticates no caller"
    );
    let mut gateway = run(config, listeners, shutdown.clone()).await?;
    gateway.sandbox_url = Some(sandbox_url);
    gateway.tasks.spawn(async move {
        shutdown.cancelled().await;
        sandbox.shutdown().await;
        drop(scratch);
    });
    Ok(gateway)
}
