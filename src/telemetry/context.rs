//! W3C trace context at the gateway's edges: read from callers' gRPC metadata and webhook headers,
//! written into every ConnectPay request, so one trace runs from a caller through the gateway to
//! ConnectPay.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace context the headers carry (a caller's `traceparent`), and returns
/// the trace id for log correlation (the caller's, or `span`'s own).
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    trace_id(span).or_else(|| {
        // Not exporting traces: the caller's trace id still correlates the logs.
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let context = parent.span().span_context().clone();
        context.is_valid().then(|| context.trace_id().to_string())
    })
}

/// The trace id of `span`, when traces are being recorded.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Writes the trace context of `span` into outgoing request headers (`traceparent`).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let context: Context = span.context();
    if context.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeadersMut(headers))
        });
    }
}

/// The trace context of `span` as a `traceparent` value, to be linked to later (a recorded webhook).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    inject(span, &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Links `span` to the span a `traceparent` names (a webhook's receipt, from its processing).
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
    }
    let linked = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(&headers)));
    let linked = linked.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}
