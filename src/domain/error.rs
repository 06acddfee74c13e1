//! The one error type of the gateway's use cases.
//!
//! It carries a category (which becomes the gRPC code), a stable machine-readable reason and the structured
//! details a caller can act on. Its messages are fixed texts: they never echo a value the caller or
//! ConnectPay sent, so an error can be logged and returned without leaking anything.

use std::{fmt, time::Duration};

/// What kind of failure this is, in the vocabulary of gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    /// The outcome is unknown: the request may have taken effect.
    Unknown,
    DeadlineExceeded,
    Cancelled,
    Aborted,
    Internal,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
}

macro_rules! reasons {
    ($($variant:ident => $name:literal, $text:literal;)*) => {
        /// Stable, documented reasons (`google.rpc.ErrorInfo.reason`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($variant),* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $name),* }
            }

            /// A fixed, value-free sentence for the status message.
            pub fn description(self) -> &'static str {
                match self { $(Reason::$variant => $text),* }
            }
        }
    };
}

reasons! {
    InvalidFields => "INVALID_FIELDS", "the request has invalid fields; see the field violations";
    UpstreamRejectedFields => "UPSTREAM_REJECTED_FIELDS", "ConnectPay rejected fields of the request; see the field violations";
    ApplicationNotFound => "APPLICATION_NOT_FOUND", "no such application was created through this gateway";
    UpstreamNotFound => "UPSTREAM_NOT_FOUND", "ConnectPay does not know the application";
    WrongApplicationState => "WRONG_APPLICATION_STATE", "the application's status does not allow this step";
    PersonIdUnknown => "PERSON_ID_UNKNOWN", "ConnectPay has not yet reported the application's person id";
    UpstreamAuthFailed => "UPSTREAM_AUTH_FAILED", "the gateway's ConnectPay credentials were refused";
    UpstreamRateLimited => "UPSTREAM_RATE_LIMITED", "ConnectPay is limiting the request rate; retry later";
    UpstreamUnavailable => "UPSTREAM_UNAVAILABLE", "ConnectPay could not be reached; nothing was submitted";
    UpstreamCircuitOpen => "UPSTREAM_CIRCUIT_OPEN", "ConnectPay is failing, so calls fail fast until it recovers; nothing was submitted";
    Overloaded => "OVERLOADED", "the gateway is at capacity; retry after the delay";
    RateLimited => "RATE_LIMITED", "this caller exceeded its rate limit; retry after the delay";
    UpstreamOutcomeUnknown => "UPSTREAM_OUTCOME_UNKNOWN", "ConnectPay failed after the request was sent; it may have taken effect, read the application before retrying";
    UpstreamTimeout => "UPSTREAM_TIMEOUT", "ConnectPay did not answer in time";
    DeadlineTooShort => "DEADLINE_TOO_SHORT", "too little of the call's deadline was left to call ConnectPay";
    UpstreamBadResponse => "UPSTREAM_BAD_RESPONSE", "ConnectPay's answer could not be understood";
    UpstreamError => "UPSTREAM_ERROR", "ConnectPay refused the request";
    StoreUnavailable => "STORE_UNAVAILABLE", "the gateway's store is unavailable";
    ShuttingDown => "SHUTTING_DOWN", "the gateway is shutting down; resume the watch with its last token";
    ResumeTokenExpired => "RESUME_TOKEN_EXPIRED", "the resume token is older than the event log's retention; start a new watch";
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED", "the request_id was already used for a different request";
    RequestInProgress => "REQUEST_IN_PROGRESS", "a request with this request_id is still running; retry shortly";
    Internal => "INTERNAL", "internal error";
    CredentialsMissing => "CREDENTIALS_MISSING", "the call carries no credentials: present a client certificate or a bearer token";
    CredentialsInvalid => "CREDENTIALS_INVALID", "the caller's credentials were refused";
    CredentialsExpired => "CREDENTIALS_EXPIRED", "the bearer token has expired or is not valid yet";
    CredentialsWrongAudience => "CREDENTIALS_WRONG_AUDIENCE", "the bearer token was not issued for this gateway (issuer or audience)";
    PermissionDenied => "PERMISSION_DENIED", "this caller is not permitted to call this RPC";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field: its path in the caller's request, and what is wrong with it (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// The precondition that failed (`google.rpc.PreconditionFailure.Violation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreconditionViolation {
    /// e.g. `APPLICATION_STATUS`.
    pub kind: &'static str,
    /// What it is about, e.g. `application`.
    pub subject: &'static str,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    None,
    Fields(Vec<FieldViolation>),
    Precondition(PreconditionViolation),
    RetryAfter(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub reason: Reason,
    pub detail: Detail,
}

impl Error {
    pub fn new(kind: ErrorKind, reason: Reason) -> Self {
        Error {
            kind,
            reason,
            detail: Detail::None,
        }
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }

    /// The caller's input failed validation.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        Error::new(ErrorKind::InvalidArgument, Reason::InvalidFields)
            .with_detail(Detail::Fields(violations))
    }

    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::invalid_fields(vec![FieldViolation::new(field, description)])
    }

    pub fn application_not_found() -> Self {
        Error::new(ErrorKind::NotFound, Reason::ApplicationNotFound)
    }

    pub fn wrong_state(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::FailedPrecondition, Reason::WrongApplicationState).with_detail(
            Detail::Precondition(PreconditionViolation {
                kind: "APPLICATION_STATUS",
                subject: "application",
                description: description.into(),
            }),
        )
    }

    pub fn internal() -> Self {
        Error::new(ErrorKind::Internal, Reason::Internal)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.detail {
            Detail::RetryAfter(after) => Some(after),
            _ => None,
        }
    }

    pub fn field_violations(&self) -> &[FieldViolation] {
        match &self.detail {
            Detail::Fields(v) => v,
            _ => &[],
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason.description())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_snake_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
            assert!(seen.insert(name), "duplicate {name}");
        }
    }
}
