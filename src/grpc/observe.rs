//! A server span and metrics for every call to the onboarding API: the span continues the caller's W3C
//! trace context (so one trace runs from the caller through the gateway to ConnectPay) and carries the
//! OpenTelemetry RPC attributes; the metrics count calls by RPC and code and time them.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};

use crate::telemetry::{
    context,
    metrics::{self, Rpc, RpcCode, grpc_code_name},
};

const SERVICE: &str = "connectpay.onboarding.v1.Onboarding";

/// The API's methods, as static labels; health and reflection are not observed (probes would drown the
/// signal).
fn method(path: &str) -> Option<&'static str> {
    let method = path
        .strip_prefix('/')?
        .strip_prefix(SERVICE)?
        .strip_prefix('/')?;
    Some(match method {
        "SubmitIdvSession" => "SubmitIdvSession",
        "GetApplication" => "GetApplication",
        "InitiateOnboarding" => "InitiateOnboarding",
        "WatchApplication" => "WatchApplication",
        "WatchApplications" => "WatchApplications",
        _ => "unknown",
    })
}

/// The status of an answer: in the headers for errors (trailers-only answers), otherwise OK as far as
/// the headers tell (a stream may still end with an error later, in its trailers).
fn status_code(response: &http::Response<Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(rpc) = method(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let span = tracing::info_span!(
            "grpc",
            otel.name = format!("{SERVICE}/{rpc}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = SERVICE,
            rpc.method = rpc,
            rpc.grpc.status_code = Empty,
            trace_id = Empty,
        );
        if let Some(trace_id) = context::continue_from(&span, request.headers()) {
            span.record("trace_id", trace_id);
        }
        let started = Instant::now();
        let answer = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let answer = answer.await;
            let code = answer.as_ref().map(status_code).unwrap_or(2);
            span.record("rpc.grpc.status_code", code);
            let m = metrics::metrics();
            m.rpc_requests
                .get_or_create(&RpcCode {
                    rpc,
                    code: grpc_code_name(code),
                })
                .inc();
            m.rpc_duration
                .get_or_create(&Rpc { rpc })
                .observe(started.elapsed().as_secs_f64());
            answer
        })
    }
}
