//! The webhook receiver: the only code that knows ConnectPay's notification format.
//!
//! It runs on its own port and path, authenticates from the headers alone (source address, then the
//! secret token), reads at most a small body within a time limit, hands the notification to the service as
//! a hint, and answers `200 OK` at once. An authenticated notification is always answered `OK`, even when
//! it cannot be used: ConnectPay switches the subscription off after 100 failed deliveries, and a refusal
//! would not make the next delivery any more readable.
//!
//! It speaks HTTP/1.1 only (what a webhook sender, or the ingress in front of the receiver, speaks), so
//! that every connection is under the header timeout from its first byte on: a connection that sends
//! nothing, or its headers a byte at a time, is closed after `read_timeout`, as is an idle keep-alive
//! connection. (Detecting HTTP/2 first would wait for the first bytes without any limit, and an HTTP/2
//! connection has no header timeout at all.)

mod auth;
mod handler;
mod parse;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::post};
use http::HeaderName;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use auth::Gate;

use crate::service::Onboarding;

pub struct Settings {
    pub path: String,
    pub token_header: HeaderName,
    pub gate: Gate,
    pub max_body_bytes: usize,
    /// Headers and body must arrive within this time.
    pub read_timeout: Duration,
}

/// Serves until `shutdown`, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    service: Arc<Onboarding>,
    shutdown: CancellationToken,
) {
    let read_timeout = settings.read_timeout;
    let path = settings.path.clone();
    let router = Router::new()
        .route(&path, post(handler::receive))
        .with_state(Arc::new(handler::Receiver { settings, service }));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // A sender that trickles its headers in (or sends nothing) is cut off like one that trickles its body
    // (the handler's own limit).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers leave at once, not held for the sender's acknowledgement of the previous one (Nagle).
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "webhook connection ended with an error");
            }
        });
    }
    // In-flight notifications are recorded before `OK`: let them finish, but not forever.
    let _ = tokio::time::timeout(read_timeout + Duration::from_secs(5), graceful.shutdown()).await;
}

/// Where the receiver listens, for the notification URL of sandbox mode and tests.
pub fn local_url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}
