//! The gateway's metrics, in one Prometheus registry for the process. Labels have low cardinality: RPC
//! and endpoint names, status codes, outcomes — never an application id or anything a caller chose.

use std::sync::{OnceLock, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCode {
    pub rpc: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rpc {
    pub rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointStatus {
    pub endpoint: &'static str,
    /// The HTTP status, or `unreached`, `no_answer`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcCode, Counter>,
    pub rpc_duration: Family<Rpc, Histogram>,
    pub upstream_requests: Family<EndpointStatus, Counter>,
    pub upstream_duration: Family<Endpoint, Histogram>,
    pub webhooks: Family<Outcome, Counter>,
    pub notifications_confirmed: Family<Outcome, Counter>,
    pub polls: Family<Outcome, Counter>,
    pub application_changes: Family<Status, Counter>,
    pub inbox_batch_notifications: Histogram,
    pub inbox_waiting: Gauge,
    pub inbox_oldest_seconds: Gauge<f64, AtomicU64>,
    pub watch_streams: Gauge,
    pub refresh_token_expiry_seconds: Gauge<f64, AtomicU64>,
    pub breaker_state: Gauge,
}

/// Latency buckets from 100 µs to about 30 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("onboarding");
        let m = Metrics {
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(latency),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(latency),
            webhooks: Family::default(),
            notifications_confirmed: Family::default(),
            polls: Family::default(),
            application_changes: Family::default(),
            // A lease takes at most 32 (`service/notifications.rs`); 0 is a lease that found nothing.
            inbox_batch_notifications: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
            inbox_waiting: Gauge::default(),
            inbox_oldest_seconds: Gauge::default(),
            watch_streams: Gauge::default(),
            refresh_token_expiry_seconds: Gauge::default(),
            breaker_state: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by RPC and status code",
            m.rpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "time to answer a gRPC call (to the first message, for streams)",
            m.rpc_duration.clone(),
        );
        registry.register(
            "connectpay_requests",
            "requests to ConnectPay, by endpoint and HTTP status (or unreached, no_answer)",
            m.upstream_requests.clone(),
        );
        registry.register(
            "connectpay_request_duration_seconds",
            "time ConnectPay took to answer, by endpoint",
            m.upstream_duration.clone(),
        );
        registry.register(
            "webhooks",
            "notifications received, by outcome: recorded, duplicate, already_known, degraded (answered OK but \
             not recorded), unknown_event, unreadable, or refused: rejected_source, rejected_token, too_large, \
             too_slow",
            m.webhooks.clone(),
        );
        registry.register(
            "notifications_confirmed",
            "recorded notifications processed by the inbox workers: confirmed, retried, dropped, unknown_application",
            m.notifications_confirmed.clone(),
        );
        registry.register(
            "polls",
            "reconciliation polls, by outcome: changed (news no notification brought), unchanged, failed",
            m.polls.clone(),
        );
        registry.register(
            "application_changes",
            "new application versions recorded, by status",
            m.application_changes.clone(),
        );
        registry.register(
            "inbox_batch_notifications",
            "recorded notifications taken by one lease of an inbox worker (0: the lease found nothing)",
            m.inbox_batch_notifications.clone(),
        );
        registry.register(
            "inbox_waiting",
            "notifications recorded and not yet confirmed",
            m.inbox_waiting.clone(),
        );
        registry.register(
            "inbox_oldest_seconds",
            "age of the oldest notification waiting for confirmation (0 when none)",
            m.inbox_oldest_seconds.clone(),
        );
        registry.register(
            "watch_streams",
            "watch streams open on this replica",
            m.watch_streams.clone(),
        );
        registry.register(
            "oauth_refresh_token_expiry_seconds",
            "seconds until the OAuth refresh token expires (a person must issue a new authCode after that)",
            m.refresh_token_expiry_seconds.clone(),
        );
        registry.register(
            "connectpay_breaker_state",
            "the ConnectPay circuit breaker: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A gRPC status code's canonical name, for labels.
pub fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

/// An HTTP status, for labels: the codes ConnectPay is known to use, and a class for the rest.
pub fn http_status_name(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        201..=299 => "2xx",
        // Redirects are not followed, so they are answers of their own.
        300..=399 => "3xx",
        402 | 405..=408 | 410..=428 | 430..=499 => "4xx",
        501 | 505..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family() {
        let m = metrics();
        m.rpc_requests
            .get_or_create(&RpcCode {
                rpc: "GetApplication",
                code: "OK",
            })
            .inc();
        m.rpc_duration
            .get_or_create(&Rpc {
                rpc: "GetApplication",
            })
            .observe(0.002);
        m.upstream_requests
            .get_or_create(&EndpointStatus {
                endpoint: "get_application",
                status: "200",
            })
            .inc();
        m.webhooks
            .get_or_create(&Outcome {
                outcome: "recorded",
            })
            .inc();
        let text = m.encode();
        for name in [
            "onboarding_grpc_requests_total{rpc=\"GetApplication\",code=\"OK\"}",
            "# TYPE onboarding_grpc_request_duration_seconds histogram",
            "onboarding_connectpay_requests_total{endpoint=\"get_application\",status=\"200\"} 1",
            "onboarding_webhooks_total{outcome=\"recorded\"} 1",
            "# TYPE onboarding_inbox_oldest_seconds gauge",
            "# TYPE onboarding_oauth_refresh_token_expiry_seconds gauge",
            "# TYPE onboarding_connectpay_breaker_state gauge",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn each_http_status_lands_in_its_own_class() {
        for (status, label) in [
            (200, "200"),
            (204, "2xx"),
            (301, "3xx"),
            (307, "3xx"),
            (308, "3xx"),
            (409, "409"),
            (418, "4xx"),
            (501, "5xx"),
            (599, "5xx"),
            (101, "other"),
            (600, "other"),
        ] {
            assert_eq!(http_status_name(status), label, "HTTP {status}");
        }
    }
}
