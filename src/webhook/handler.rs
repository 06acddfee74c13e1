//! One notification: authenticate, read, parse, record, answer `OK`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;

use super::{
    Settings,
    parse::{Parsed, parse},
};
use crate::{
    service::Onboarding,
    telemetry::{context, metrics},
};

pub struct Receiver {
    pub settings: Settings,
    pub service: Arc<Onboarding>,
}

fn count(outcome: &'static str) {
    metrics::metrics()
        .webhooks
        .get_or_create(&metrics::Outcome { outcome })
        .inc();
}

fn refuse(status: StatusCode, outcome: &'static str) -> Response {
    count(outcome);
    tracing::warn!(outcome, status = status.as_u16(), "webhook refused");
    (status, outcome).into_response()
}

/// A refusal that leaves (some of) the body unread: the connection cannot carry another request, so it is
/// closed once the answer is written, rather than read on.
fn refuse_and_close(status: StatusCode, outcome: &'static str) -> Response {
    let mut response = refuse(status, outcome);
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

pub async fn receive(
    State(receiver): State<Arc<Receiver>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "webhook.receive",
        otel.kind = "server",
        trace_id = tracing::field::Empty
    );
    if let Some(trace_id) = context::continue_from(&span, &headers) {
        span.record("trace_id", trace_id);
    }
    receive_in(receiver, peer, headers, body, span.clone())
        .instrument(span)
        .await
}

async fn receive_in(
    receiver: Arc<Receiver>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
    span: tracing::Span,
) -> Response {
    let settings = &receiver.settings;
    let client = settings.gate.client_address(peer.ip(), &headers);
    if !settings.gate.source_allowed(client) {
        return refuse(StatusCode::FORBIDDEN, "rejected_source");
    }
    let token = headers.get(&settings.token_header).map(|v| v.as_bytes());
    if !settings.gate.token_matches(token) {
        return refuse(StatusCode::UNAUTHORIZED, "rejected_token");
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > settings.max_body_bytes) {
        return refuse_and_close(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    }
    let read = Limited::new(body, settings.max_body_bytes).collect();
    let bytes = match tokio::time::timeout(settings.read_timeout, read).await {
        Err(_) => return refuse_and_close(StatusCode::REQUEST_TIMEOUT, "too_slow"),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return refuse_and_close(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        }
        Ok(Err(_)) => return refuse_and_close(StatusCode::BAD_REQUEST, "unreadable"),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    match parse(&bytes) {
        Parsed::Notification(mut notification) => {
            // Kept short: it only tells deliveries of one notification apart.
            notification.sent_at = headers
                .get("x-connectpay-timestamp")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect());
            notification.trace_context = context::traceparent(&span);
            let outcome = receiver.service.notify(notification).await;
            tracing::debug!(?outcome, "notification taken");
        }
        Parsed::UnknownEvent(event_type) => {
            count("unknown_event");
            tracing::info!(
                event_type,
                "notification of an event type this gateway does not handle; ignored"
            )
        }
        Parsed::Unreadable => {
            count("unreadable");
            tracing::warn!("authenticated notification could not be read; ignored")
        }
    }
    (StatusCode::OK, "OK").into_response()
}
