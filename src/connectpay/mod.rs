//! The ConnectPay adapter: the only code that knows ConnectPay's URLs, headers and JSON.
//!
//! `client` has one async fn per endpoint; `transformers` converts between the domain and the `wire` models
//! (pure); `transport` sends requests with mTLS, OAuth, request ids, timeouts and the `retry` policy;
//! `oauth` keeps the token pair fresh.

pub mod breaker;
pub mod client;
pub mod error;
pub mod oauth;
pub mod retry;
pub mod tls;
pub mod transformers;
pub mod transport;
pub mod wire;

pub use breaker::BreakerState;
pub use client::ConnectPayClient;
pub use error::UpstreamError;
pub use oauth::{MemoryPairStore, PairStore, TokenManager, TokenPair};
pub use retry::CallKind;

/// The endpoints, named for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    SubmitIdv,
    GetApplication,
    GetIdv,
    InitiateApplication,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::SubmitIdv => "submit_idv",
            Endpoint::GetApplication => "get_application",
            Endpoint::GetIdv => "get_idv",
            Endpoint::InitiateApplication => "initiate_application",
        }
    }
}

/// The headers that carry a request's id: the common one, and ConnectPay's own, which its answers repeat.
/// Parsed once: a name given as a string is parsed and lower-cased on every request.
pub(crate) const REQUEST_ID_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-request-id");
pub(crate) const CONNECTPAY_REQUEST_ID_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-connectpay-requestid");

/// A fresh id for one request's `X-Request-ID`: a version 4 UUID drawn from the thread's random generator
/// (a ChaCha generator the OS reseeds). `Uuid::new_v4` asks the kernel for every id, a system call per
/// ConnectPay request.
pub(crate) fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let (a, b) = (super::request_id(), super::request_id());
        for id in [&a, &b] {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
        assert_ne!(a, b);
    }
}
