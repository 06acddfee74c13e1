//! What every ConnectPay endpoint does around its own work: record the request, count it, add
//! latency, apply scripted and random faults, and stamp the answer's headers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use tracing::debug;
use uuid::Uuid;

use crate::clock;
use crate::error::{ApiError, OAuthError};
use crate::faults::FaultAction;
use crate::recorder::{Endpoint, RecordedRequest, recorded_headers};
use crate::server::ConnectionHandle;
use crate::shared::{Shared, lock};
use crate::status::Status;

/// Request bodies above this are refused with `413`.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

const REQUEST_ID: &str = "x-connectpay-requestid";

/// The parts of a request the pipeline and the handlers need.
pub(crate) struct Call {
    pub(crate) endpoint: Endpoint,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    connection: Option<ConnectionHandle>,
}

impl Call {
    /// Splits a request and reads its body (bounded).
    pub(crate) async fn read(
        endpoint: Endpoint,
        request: Request,
    ) -> (Call, Result<Bytes, ApiError>) {
        let (parts, body) = request.into_parts();
        let call = Call {
            endpoint,
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            headers: parts.headers,
            connection: parts.extensions.get::<ConnectionHandle>().cloned(),
        };
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body could not be read within {BODY_LIMIT} bytes"),
            )
        });
        (call, body)
    }
}

/// Answers `call` with `work`, inside the fault machinery. `work` gets the status a `stale`
/// fault asks for, if any; `application` is the application the request is about (for faults
/// limited to one application).
pub(crate) async fn serve<F, Fut>(
    shared: &Arc<Shared>,
    call: &Call,
    recorded_body: Option<Value>,
    application: Option<Uuid>,
    work: F,
) -> Response
where
    F: FnOnce(Option<Status>) -> Fut,
    Fut: Future<Output = Response>,
{
    let endpoint = call.endpoint;
    let entry = shared.requests.start(RecordedRequest {
        endpoint,
        method: call.method.to_string(),
        path: call.path.clone(),
        headers: recorded_headers(&call.headers),
        body: recorded_body,
        status: None,
        abandoned: false,
        at: clock::now(),
    });
    // Marks the request abandoned if this future is dropped before it answers (the connection went
    // away under it).
    let mut unanswered = Unanswered {
        shared: shared.clone(),
        entry: Some(entry),
    };
    shared.counters.request(endpoint);
    let _in_flight = shared.counters.in_flight(endpoint);

    let (fault, rates) = {
        let mut world = lock(&shared.world);
        (world.faults.take(endpoint, application), world.faults.rates)
    };
    // Random faults and latency model an overloaded onboarding backend; the token endpoint is
    // left alone so that only scripted faults can break authentication.
    let onboarding = endpoint.is_onboarding();
    if onboarding && rates.latency_ms > 0 && !wait(call, rates.latency_ms).await {
        return gone();
    }

    let reset = matches!(fault, Some(FaultAction::Reset {}));
    let answer = match fault {
        Some(FaultAction::Fail {
            status,
            retry_after,
            body,
        }) => Some(injected(endpoint, status, retry_after, body)),
        Some(FaultAction::Delay { ms }) => {
            if !wait(call, ms).await {
                return gone();
            }
            Some(work(None).await)
        }
        Some(FaultAction::Stale { status }) => Some(work(Some(status)).await),
        Some(FaultAction::AfterEffect { status }) => {
            work(None).await;
            Some(injected(endpoint, status, None, None))
        }
        Some(FaultAction::Hang {}) | Some(FaultAction::Reset {}) => {
            work(None).await;
            None
        }
        None => match rates.roll().filter(|_| onboarding) {
            Some(status) => Some(injected(endpoint, status, None, None)),
            None => Some(work(None).await),
        },
    };

    let Some(mut response) = answer else {
        // `hang` and `reset`: the log keeps `status: null` for them; a hung request the client gave up
        // on is abandoned, a reset one was broken by the sandbox itself.
        if reset {
            unanswered.entry = None;
        }
        return never_answer(call.connection.as_ref(), reset).await;
    };
    unanswered.entry = None;
    shared.requests.finish(entry, response.status().as_u16());
    debug!(%endpoint, status = response.status().as_u16(), "answered");
    let headers = response.headers_mut();
    let request_id = call
        .headers
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(new_request_id);
    headers.insert(REQUEST_ID, request_id);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Marks its request abandoned when dropped unanswered.
struct Unanswered {
    shared: Arc<Shared>,
    entry: Option<u64>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(entry) = self.entry {
            self.shared.requests.abandon(entry);
        }
    }
}

/// Sleeps `ms`, unless the client goes away first (`false`): a delayed answer nobody waits for
/// is not worked on.
async fn wait(call: &Call, ms: u64) -> bool {
    let sleep = tokio::time::sleep(Duration::from_millis(ms));
    match call.connection.as_ref() {
        Some(connection) => tokio::select! {
            () = sleep => true,
            () = connection.closed() => false,
        },
        None => {
            sleep.await;
            true
        }
    }
}

/// The answer to a client that is gone (it goes nowhere); the request stays marked abandoned.
fn gone() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// The error answer of a fault, in the endpoint's own error shape unless the fault gives a
/// raw body.
fn injected(
    endpoint: Endpoint,
    status: u16,
    retry_after: Option<u64>,
    body: Option<String>,
) -> Response {
    // Fault statuses are checked to be 400–599 when the fault is added.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(body) = body {
        let mut response = (status, Body::from(body)).into_response();
        let retry_after = retry_after.or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return response;
    }
    match endpoint {
        Endpoint::Token => OAuthError::injected(status, retry_after).into_response(),
        _ => ApiError::injected(status, retry_after).into_response(),
    }
}

/// Waits until the connection is gone: on its own for `hang` (the client gives up), or after
/// closing it for `reset`. The response returned afterwards goes nowhere.
async fn never_answer(connection: Option<&ConnectionHandle>, reset: bool) -> Response {
    match connection {
        Some(connection) => {
            if reset {
                connection.reset();
            }
            connection.closed().await;
        }
        // Only reachable when the router is served by something other than `server`.
        None => std::future::pending::<()>().await,
    }
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

fn new_request_id() -> HeaderValue {
    HeaderValue::try_from(Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}
