//! The admin port: Prometheus metrics. Gauges that describe state rather than events (open streams, the
//! inbox's lag, the breaker, the refresh token's remaining life) are read at scrape time, so they are
//! never stale.

use std::{sync::Arc, time::SystemTime};

use axum::{
    Router, extract::State, http::header, response::IntoResponse, routing::get, serve::ListenerExt,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    connectpay::{BreakerState, TokenManager},
    service::Onboarding,
    telemetry::metrics,
};

#[derive(Clone)]
pub struct Sources {
    pub service: Arc<Onboarding>,
    pub tokens: TokenManager,
}

pub async fn serve(listener: TcpListener, sources: Sources, stopping: CancellationToken) {
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(sources);
    // Scrapes are answered at once, not held for the scraper's acknowledgement of the previous write.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stopping.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin server failed");
    }
}

async fn scrape(State(sources): State<Sources>) -> impl IntoResponse {
    let m = metrics::metrics();
    m.watch_streams
        .set(sources.service.watchers().open_streams() as i64);
    m.breaker_state
        .set(match sources.service.upstream_breaker() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        });
    let now = SystemTime::now();
    if let Some(expiry) = sources.tokens.refresh_token_expires_at() {
        let left = expiry
            .duration_since(now)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        m.refresh_token_expiry_seconds.set(left);
    }
    match sources.service.inbox_backlog().await {
        Ok((waiting, oldest)) => {
            m.inbox_waiting.set(waiting as i64);
            let age = oldest
                .and_then(|t| now.duration_since(t).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            m.inbox_oldest_seconds.set(age);
        }
        Err(e) => tracing::warn!(reason = %e.reason, "cannot read the inbox for metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
