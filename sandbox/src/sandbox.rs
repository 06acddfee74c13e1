//! The in-process handle: start, address, shutdown, and every control operation as a method.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tracing::info;
use uuid::Uuid;

use crate::config::SandboxConfig;
use crate::control::{self, Health};
use crate::delivery::Deliverer;
use crate::error::{ApiError, ControlError};
use crate::faults::{Fault, FaultRates};
use crate::mode::{Mode, ModeUpdate};
use crate::oauth::{self, AuthCode};
use crate::recorder::{Counters, Endpoint, RecordedRequest, RequestLog, Stats};
use crate::server::Server;
use crate::shared::{Shared, Tasks};
use crate::state::{ApplicationView, SetStatus, World};
use crate::webhooks::{DeliveryLog, DeliveryLogEntry, ReleaseOrder, Released, WebhookDelivery};
use crate::{api, tls};

/// A running sandbox. Dropping it stops its server and background tasks at once;
/// [`Sandbox::shutdown`] lets requests in flight finish first.
pub struct Sandbox {
    shared: Arc<Shared>,
    server: Option<Server>,
    local_addr: SocketAddr,
}

impl Sandbox {
    /// Binds `config.listen` and starts serving. Must be called within a Tokio runtime, which
    /// then runs the server and every background task.
    pub async fn start(config: SandboxConfig) -> io::Result<Sandbox> {
        // Checked first: everything below spawns on this runtime.
        let runtime = Handle::try_current()
            .map_err(|e| io::Error::other(format!("Sandbox::start needs a Tokio runtime: {e}")))?;
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let deliverer = Deliverer::new(&config)?;
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;

        let mut world = World {
            mode: config.mode,
            ..World::default()
        };
        for code in config.auth_codes.iter().filter(|c| !c.is_empty()) {
            world.tokens.add_code(code.clone());
        }
        let shared = Arc::new(Shared {
            config,
            world: Mutex::new(world),
            requests: RequestLog::default(),
            counters: Counters::default(),
            deliveries: DeliveryLog::default(),
            deliverer,
            tasks: Tasks::new(runtime),
        });
        let server = Server::spawn(listener, tls, router(Arc::clone(&shared)));
        let sandbox = Sandbox {
            shared,
            server: Some(server),
            local_addr,
        };
        info!(url = %sandbox.base_url(), "connectpay-sandbox started");
        Ok(sandbox)
    }

    /// `http://IP:PORT` (or `https://`), without a trailing slash. An unspecified listen
    /// address (`0.0.0.0`, `::`) is given as the loopback address, which is connectable.
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// The address actually bound (with the OS-chosen port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// Every access and refresh token issued so far (the newest 4096), for an in-process test that
    /// checks a client never logs or stores one. Not available over HTTP.
    pub fn issued_tokens(&self) -> Vec<String> {
        crate::shared::lock(&self.shared.world).tokens.issued()
    }

    /// Stops accepting, gives requests in flight a moment (1 s) to finish, then stops
    /// everything, including scheduled steps and webhook retries.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.shared.tasks.close();
        info!("connectpay-sandbox stopped");
    }

    /// `GET /_sandbox/health`
    pub fn health(&self) -> Health {
        Health { ok: true }
    }

    /// `GET /_sandbox/stats`
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// `GET /_sandbox/requests[?endpoint=…]`: oldest first.
    pub fn requests(&self, endpoint: Option<Endpoint>) -> Vec<RecordedRequest> {
        self.shared.requests.list(endpoint)
    }

    /// `DELETE /_sandbox/requests`
    pub fn clear_requests(&self) {
        self.shared.requests.clear();
    }

    /// `POST /_sandbox/auth-codes`: a new authorization code, usable once.
    pub fn mint_auth_code(&self) -> AuthCode {
        self.shared.mint_auth_code()
    }

    /// `POST /_sandbox/tokens/expire-access`: every access token issued so far gets `401`.
    pub fn expire_access_tokens(&self) {
        self.shared.expire_access_tokens();
    }

    /// `GET /_sandbox/applications/{id}`
    pub fn application(&self, id: Uuid) -> Option<ApplicationView> {
        self.shared.application(id)
    }

    /// `POST /_sandbox/applications/{id}/status`
    pub fn set_status(
        &self,
        id: Uuid,
        request: SetStatus,
    ) -> Result<ApplicationView, ControlError> {
        self.shared.set_status(id, request)
    }

    /// `GET /_sandbox/mode`
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// `PUT /_sandbox/mode`: returns the full mode after the change.
    pub fn set_mode(&self, update: ModeUpdate) -> Mode {
        self.shared.set_mode(update)
    }

    /// `POST /_sandbox/faults`
    pub fn add_fault(&self, fault: Fault) -> Result<(), ControlError> {
        self.shared.add_fault(fault)
    }

    /// `PUT /_sandbox/fault-rates`
    pub fn set_fault_rates(&self, rates: FaultRates) -> Result<(), ControlError> {
        self.shared.set_fault_rates(rates)
    }

    /// `DELETE /_sandbox/faults`: scripted faults and random rates alike.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// `PUT /_sandbox/webhooks`
    pub fn set_webhook_delivery(&self, delivery: WebhookDelivery) -> Result<(), ControlError> {
        self.shared.set_webhook_delivery(delivery)
    }

    /// `POST /_sandbox/webhooks/release`
    pub fn release_webhooks(&self, order: ReleaseOrder) -> Released {
        self.shared.release_webhooks(order)
    }

    /// `GET /_sandbox/webhooks`: oldest first.
    pub fn webhook_log(&self) -> Vec<DeliveryLogEntry> {
        self.shared.webhook_log()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        self.shared.tasks.close();
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    const BASE: &str = "/baas/onboarding/personal";
    Router::new()
        .route("/auth/v1/oauth2/token", post(oauth::token))
        .route(&format!("{BASE}/idv/external"), post(api::submit_idv))
        .route(&format!("{BASE}/idv/{{person_id}}"), get(api::get_idv))
        .route(
            &format!("{BASE}/applications/{{application_id}}"),
            get(api::get_application),
        )
        .route(
            &format!("{BASE}/applications/{{application_id}}/kyc"),
            post(api::initiate_application),
        )
        .nest("/_sandbox", control::router())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not accept that method",
            )
        })
        .with_state(shared)
}
