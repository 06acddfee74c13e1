//! Wires the floors together: configuration → ConnectPay client and store → use cases → transports.

mod sandbox;
mod storage;
mod upstream;

use std::{net::SocketAddr, sync::Arc};

use secrecy::SecretString;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use sandbox::start_with_sandbox;
use storage::open_store;
use upstream::connectpay_client;

use crate::{
    admin,
    config::{Config, ConfigError},
    connectpay::tls::TlsError,
    domain::poll::PollSchedule,
    grpc,
    service::{self, Onboarding},
    store::StoreError,
    webhook,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("connectpay: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded sandbox: {0}")]
    Sandbox(std::io::Error),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("OAuth: {0}")]
    OAuth(String),
    #[error("{0}")]
    Security(String),
}

/// The gateway's sockets, bound before anything else starts, so that the addresses are known (port 0 in
/// tests; the notification URL in sandbox mode) and a port conflict fails the start at once.
pub struct Listeners {
    grpc: TcpListener,
    health: Option<TcpListener>,
    webhook: TcpListener,
    admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        Ok(Listeners {
            grpc: bind("grpc.listen", config.grpc.listen).await?,
            health: match config.health.listen {
                Some(addr) => Some(bind("health.listen", addr).await?),
                None => None,
            },
            webhook: bind("webhook.listen", config.webhook.listen).await?,
            admin: bind("admin.listen", config.admin.listen).await?,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// The plaintext health port, when configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound socket has an address")
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { key, addr, source })
}

/// A started gateway. Dropping it does not stop it: cancel the shutdown token and `wait`.
pub struct Gateway {
    pub grpc_addr: SocketAddr,
    pub health_addr: Option<SocketAddr>,
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The embedded sandbox's base URL, in sandbox mode.
    pub sandbox_url: Option<String>,
    service: Arc<Onboarding>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// The use cases, e.g. to read how many watch streams are open.
    pub fn service(&self) -> &Onboarding {
        &self.service
    }

    /// Waits until every part has stopped (after the shutdown token was cancelled, or a part failed).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds and starts the gateway on an already validated configuration.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Gateway, StartError> {
    let listeners = Listeners::bind(&config).await?;
    run(config, listeners, shutdown).await
}

/// Starts the gateway on sockets bound earlier.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<Gateway, StartError> {
    let opened = open_store(&config, config.store.migrate_at_start, true).await?;
    let (connectpay, tokens) = connectpay_client(&config, opened.pairs, shutdown.clone())?;
    // Draining begins with `shutdown`; new work is refused (`stopping`) a drain delay later, once load
    // balancers have seen readiness turn off.
    let stopping = CancellationToken::new();
    tokio::spawn({
        let (shutdown, stopping, delay) = (
            shutdown.clone(),
            stopping.clone(),
            config.shutdown.drain_delay,
        );
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(delay).await;
            tracing::info!("refusing new work; finishing what is in flight");
            stopping.cancel();
        }
    });
    let service = Onboarding::start(
        connectpay,
        opened.store,
        settings(&config),
        stopping.clone(),
    );
    let webhook_settings = webhook_settings(&config, stopping.clone())?;

    let security = security(&config, stopping.clone())?;
    let grpc_addr = listeners.grpc_addr();
    let health_addr = listeners.health_addr();
    let webhook_addr = listeners.webhook_addr();
    let admin_addr = listeners.admin_addr();
    let mut tasks = JoinSet::new();
    tasks.spawn(tokens.clone().run(stopping.clone()));
    let admin_sources = admin::Sources {
        service: service.clone(),
        tokens,
    };
    tasks.spawn(admin::serve(
        listeners.admin,
        admin_sources,
        stopping.clone(),
    ));
    let lifecycle = grpc::server::Lifecycle {
        draining: shutdown.clone(),
        stopping: stopping.clone(),
        liveness_service: config.health.liveness_service.clone(),
        readiness_service: config.health.readiness_service.clone(),
    };
    let (grpc_config, grpc_service, failed) =
        (config.grpc.clone(), service.clone(), shutdown.clone());
    tasks.spawn(async move {
        let served = grpc::server::serve(
            listeners.grpc,
            listeners.health,
            &grpc_config,
            grpc_service,
            security,
            lifecycle,
        );
        if let Err(e) = served.await {
            tracing::error!(error = %e, "gRPC server failed");
            failed.cancel();
        }
    });
    tasks.spawn(webhook::serve(
        listeners.webhook,
        webhook_settings,
        service.clone(),
        stopping.clone(),
    ));

    tracing::info!(%grpc_addr, %webhook_addr, %admin_addr, "gateway listening");
    Ok(Gateway {
        grpc_addr,
        health_addr,
        webhook_addr,
        admin_addr,
        sandbox_url: None,
        service,
        tasks,
    })
}

/// What `oauth bootstrap` did.
pub enum Bootstrapped {
    /// A new pair is stored; the refresh token lasts until then (if ConnectPay said).
    Stored(Option<std::time::SystemTime>),
    /// The store already holds a pair, and replacing it was not asked for.
    AlreadyHeld,
}

/// Exchanges an authCode (read by the operator from a person) into the store, which must hold no pair
/// unless `replace`: an authCode is never used where a working pair exists.
pub async fn oauth_bootstrap(
    config: &Config,
    auth_code: SecretString,
    replace: bool,
) -> Result<Bootstrapped, StartError> {
    let opened = open_store(config, config.store.migrate_at_start, false).await?;
    if !replace && opened.pairs.load().await.ok().flatten().is_some() {
        return Ok(Bootstrapped::AlreadyHeld);
    }
    let (_, tokens) = connectpay_client(config, opened.pairs, CancellationToken::new())?;
    let pair = tokens
        .exchange(auth_code)
        .await
        .map_err(|e| StartError::OAuth(e.to_string()))?;
    Ok(Bootstrapped::Stored(pair.refresh_expires_at))
}

/// The stored pair's refresh-token expiry: `None` when no pair is stored, `Some(None)` when ConnectPay
/// did not say.
pub async fn oauth_status(
    config: &Config,
) -> Result<Option<Option<std::time::SystemTime>>, StartError> {
    let opened = open_store(config, config.store.migrate_at_start, false).await?;
    let pair = opened
        .pairs
        .load()
        .await
        .map_err(|e| StartError::OAuth(e.to_string()))?;
    Ok(pair.map(|p| p.refresh_expires_at))
}

/// What an operator asks about the store: the inbox's backlog, and the unfinished applications that
/// waited longest.
pub struct Report {
    pub inbox_waiting: u64,
    pub inbox_oldest: Option<std::time::SystemTime>,
    pub waiting: Vec<crate::domain::Application>,
}

pub async fn report(config: &Config, limit: usize) -> Result<Report, StartError> {
    let opened = open_store(config, config.store.migrate_at_start, false).await?;
    let (inbox_waiting, inbox_oldest) = opened
        .store
        .inbox_backlog()
        .await
        .map_err(StartError::Store)?;
    let waiting = opened
        .store
        .waiting_longest(limit)
        .await
        .map_err(StartError::Store)?
        .into_iter()
        .map(|event| event.application)
        .collect();
    Ok(Report {
        inbox_waiting,
        inbox_oldest,
        waiting,
    })
}

/// Caller authentication and the API port's TLS, each reloading its files until `stop`.
fn security(
    config: &Config,
    stop: CancellationToken,
) -> Result<grpc::server::Security, StartError> {
    use crate::{
        config::{
            AuthMethod,
            reload::{self, Source},
        },
        grpc::{
            auth::{Authenticator, JwtVerifier, KeySet},
            tls::{ClientCertificates, server_config},
        },
    };
    let (auth, interval) = (&config.auth, config.reload.interval);
    let tls = match (&config.grpc.tls.cert_file, &config.grpc.tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut files = vec![cert.clone(), key.clone()];
            files.extend(config.grpc.tls.client_ca_file.clone());
            let client = match (
                auth.methods.contains(&AuthMethod::Mtls),
                auth.methods.contains(&AuthMethod::Jwt),
            ) {
                (false, _) => ClientCertificates::NotAsked,
                (true, false) => ClientCertificates::Required,
                (true, true) => ClientCertificates::Optional,
            };
            let source = Source {
                what: "grpc.tls",
                files,
            };
            let built = reload::watch(source, interval, stop.clone(), move |files| {
                server_config(files, client)
            });
            Some(built.map_err(StartError::Security)?)
        }
        _ => None,
    };
    let jwt = match &auth.jwt.jwks_file {
        Some(file) if auth.methods.contains(&AuthMethod::Jwt) => {
            let source = Source {
                what: "auth.jwt.jwks_file",
                files: vec![file.clone()],
            };
            let keys = reload::watch(source, interval, stop, |files| KeySet::parse(&files[0]))
                .map_err(StartError::Security)?;
            Some(JwtVerifier::new(keys, &auth.jwt))
        }
        _ => None,
    };
    let authenticator = Authenticator::new(auth, jwt);
    if authenticator.is_open() {
        tracing::warn!(
            "CALLERS ARE NOT AUTHENTICATED: every caller is \"anonymous\" and may call every RPC \
             (auth.methods is empty)"
        );
    }
    Ok(grpc::server::Security {
        authenticator: Arc::new(authenticator),
        tls,
    })
}

/// Erases one application and everything the store holds about it (the `erase` command: a client's
/// right to erasure, say), with an audit record; `false` when the store held nothing about it.
pub async fn erase(config: &Config, id: &crate::domain::ApplicationId) -> Result<bool, StartError> {
    let opened = open_store(config, config.store.migrate_at_start, false).await?;
    let erased = opened
        .store
        .erase_application(id)
        .await
        .map_err(StartError::Store)?;
    tracing::info!(
        target: crate::telemetry::AUDIT_TARGET,
        caller = "operator",
        rpc = "Erase",
        application_id = %id,
        outcome = if erased { "OK" } else { "NOT_FOUND" },
        reason = "",
        "audit"
    );
    Ok(erased)
}

fn settings(config: &Config) -> service::Settings {
    service::Settings {
        providers: config.connectpay.providers.clone(),
        heartbeat_interval: config.watch.heartbeat_interval,
        upstream_timeout: config.connectpay.timeouts.background,
        notification_workers: config.webhook.workers,
        inbox_lease: config.webhook.lease,
        poll: PollSchedule {
            idv_interval: config.poll.idv_interval,
            review_interval: config.poll.review_interval,
            max_interval: config.poll.max_interval,
        },
        poll_rate: config.poll.max_requests_per_second,
        finished_retention: config.retention.finished_applications,
        event_retention: config.retention.events,
        request_retention: config.retention.requests,
        cleanup_interval: config.retention.cleanup_interval,
        tail_interval: config.watch.tail_interval,
    }
}

/// Applies the store's migrations (the `migrate` command, for deployments that run them as a step of
/// their own).
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    open_store(config, true, false).await.map(drop)
}

/// The receiver's settings. Tokens from `webhook.tokens_file` are read again whenever the file changes
/// (every `reload.interval`, until `stop`), so a rotation needs no restart; a changed file that breaks the
/// token rules is not taken, and the tokens before it stay. Inline `webhook.tokens` are fixed (and also
/// accepted, should both be set, as in sandbox mode).
fn webhook_settings(
    config: &Config,
    stop: CancellationToken,
) -> Result<webhook::Settings, StartError> {
    use crate::config::{
        WebhookConfig,
        reload::{self, Reloading, Source},
    };
    let wh = &config.webhook;
    let token_header = http::HeaderName::from_bytes(wh.token_header.as_bytes())
        .map_err(|_| ConfigError(vec!["webhook.token_header: not a valid header name".into()]))?;
    let inline = wh.tokens.clone();
    let tokens = match &wh.tokens_file {
        None => Reloading::fixed(inline),
        Some(file) => reload::watch(
            Source {
                what: "webhook.tokens_file",
                files: vec![file.clone()],
            },
            config.reload.interval,
            stop,
            move |contents| {
                let mut tokens = WebhookConfig::parse_tokens_file(&contents[0])?;
                tokens.extend(inline.iter().cloned());
                Ok(tokens)
            },
        )
        .map_err(|problem| ConfigError(vec![problem]))?,
    };
    Ok(webhook::Settings {
        path: wh.path.clone(),
        token_header,
        gate: webhook::Gate::new(
            tokens,
            wh.allowed_sources.clone(),
            wh.trusted_proxies.clone(),
        ),
        max_body_bytes: wh.max_body_bytes,
        read_timeout: wh.read_timeout,
    })
}
