//! Wires the floors together: configuration → ConnectPay client and store → use cases → transports.

mod sandbox;

pub use sandbox::start_with_sandbox;

use std::{net::SocketAddr, sync::Arc};

use secrecy::SecretString;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, ConfigError},
    connectpay::{
        ConnectPayClient, MemoryPairStore, TokenManager,
        oauth::TokenEndpoint,
        retry::RetryPolicy,
        tls::{self, TlsError},
        transport::Transport,
    },
    grpc,
    service::Onboarding,
    store::MemoryStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("connectpay: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded sandbox: {0}")]
    Sandbox(std::io::Error),
}

/// A started gateway. Dropping it does not stop it: cancel the shutdown token and `wait`.
pub struct Gateway {
    pub grpc_addr: SocketAddr,
    /// The embedded sandbox's base URL, in sandbox mode.
    pub sandbox_url: Option<String>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Waits until every part has stopped (after the shutdown token was cancelled, or a part failed).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts the gateway on an already validated configuration.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Gateway, StartError> {
    let cp = &config.connectpay;
    let base_url = reqwest::Url::parse(&cp.base_url)
        .map_err(|_| ConfigError(vec!["connectpay.base_url: not a URL".into()]))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(&cp.tls)?)
        .connect_timeout(cp.timeouts.connect)
        .user_agent(concat!("onboarding-gateway/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let token_url = base_url
        .join(cp.paths.token.trim_start_matches('/'))
        .map_err(|_| ConfigError(vec!["connectpay.paths.token: not a path".into()]))?;
    let tokens = TokenManager::new(
        http.clone(),
        TokenEndpoint {
            url: token_url,
            client_id: cp.client_id.clone(),
            client_secret: cp
                .client_secret
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            request_timeout: cp.oauth.request_timeout,
        },
        cp.oauth.refresh_ahead,
        Arc::new(MemoryPairStore::default()),
        cp.auth_code.clone(),
    );
    let transport = Transport::new(
        http,
        base_url,
        tokens.clone(),
        RetryPolicy::from(&cp.retry),
        cp.timeouts.clone(),
    );
    let connectpay = Arc::new(ConnectPayClient::new(
        transport,
        cp.paths.clone(),
        cp.notification_url.clone(),
    ));
    let service = Arc::new(Onboarding::new(
        connectpay,
        Arc::new(MemoryStore::default()),
        cp.providers.clone(),
    ));

    let grpc_listener = TcpListener::bind(config.grpc.listen)
        .await
        .map_err(|source| StartError::Listen {
            what: "grpc.listen",
            addr: config.grpc.listen,
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            what: "grpc.listen",
            addr: config.grpc.listen,
            source,
        })?;

    let mut tasks = JoinSet::new();
    tasks.spawn(tokens.run(shutdown.clone()));
    let grpc_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = grpc::server::serve(grpc_listener, service, grpc_shutdown.clone()).await {
            tracing::error!(error = %e, "gRPC server failed");
            grpc_shutdown.cancel();
        }
    });
    tracing::info!(%grpc_addr, "gRPC API listening");
    Ok(Gateway {
        grpc_addr,
        sandbox_url: None,
        tasks,
    })
}
