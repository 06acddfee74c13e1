//! What can go wrong talking to ConnectPay, and what each failure means for the caller.

use std::time::Duration;

use super::{retry::CallKind, transformers, wire::ErrorAnswer};
use crate::domain::{Error, error::Detail, error::ErrorKind, error::Reason};

/// A failed ConnectPay call, after retries. Its `Display` names the failure class only: no URL parameters,
/// bodies or tokens.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("ConnectPay could not be reached")]
    NotSent,
    #[error("ConnectPay did not answer in time")]
    NoAnswer {
        /// The caller's deadline, not the gateway's own timeout, ran out.
        caller_deadline: bool,
    },
    #[error("ConnectPay answered HTTP {code}")]
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// ConnectPay's field paths, for `400`.
        fields: Vec<String>,
    },
    #[error("ConnectPay's answer could not be understood")]
    BadResponse,
    #[error("ConnectPay refused the gateway's credentials")]
    Auth,
    #[error("no OAuth token pair: bootstrap one from an authCode")]
    NoTokenPair,
    #[error("too little of the caller's deadline was left")]
    DeadlineTooShort,
    /// The circuit breaker is open: nothing was sent.
    #[error("ConnectPay is failing; calls fail fast for a while")]
    CircuitOpen { retry_after: Duration },
    /// Refused before sending: the request cannot be expressed on the wire.
    #[error("{0}")]
    Invalid(Error),
}

impl UpstreamError {
    pub fn from_answer(code: u16, retry_after: Option<Duration>, body: &[u8]) -> UpstreamError {
        let fields = if code == 400 {
            ErrorAnswer::parse(body)
                .errors
                .into_iter()
                .filter_map(|e| e.field)
                .collect()
        } else {
            Vec::new()
        };
        UpstreamError::Status {
            code,
            retry_after,
            fields,
        }
    }

    /// The caller-facing error. `kind` decides the one distinction that matters to a retrying caller: a
    /// submit that may have reached ConnectPay is reported as `Unknown` (or `DeadlineExceeded`), never as
    /// `Unavailable`, so no client retries it automatically. `fallback_field` names the request field a
    /// field error is blamed on when ConnectPay names nothing the caller sent.
    pub fn into_domain(self, kind: CallKind, fallback_field: &str) -> Error {
        use ErrorKind as K;
        let submit = kind == CallKind::Submit;
        match self {
            UpstreamError::NotSent => Error::new(K::Unavailable, Reason::UpstreamUnavailable),
            UpstreamError::NoAnswer {
                caller_deadline: true,
            } => Error::new(K::DeadlineExceeded, Reason::UpstreamTimeout),
            UpstreamError::NoAnswer {
                caller_deadline: false,
            } if submit => Error::new(K::Unknown, Reason::UpstreamOutcomeUnknown),
            UpstreamError::NoAnswer {
                caller_deadline: false,
            } => Error::new(K::Unavailable, Reason::UpstreamTimeout),
            UpstreamError::BadResponse if submit => {
                Error::new(K::Unknown, Reason::UpstreamBadResponse)
            }
            UpstreamError::BadResponse => Error::new(K::Internal, Reason::UpstreamBadResponse),
            UpstreamError::Auth => Error::new(K::Internal, Reason::UpstreamAuthFailed),
            UpstreamError::NoTokenPair => Error::new(K::Unavailable, Reason::UpstreamAuthFailed),
            UpstreamError::DeadlineTooShort => {
                Error::new(K::DeadlineExceeded, Reason::DeadlineTooShort)
            }
            UpstreamError::Invalid(e) => e,
            UpstreamError::CircuitOpen { retry_after } => {
                Error::new(K::Unavailable, Reason::UpstreamCircuitOpen)
                    .with_detail(Detail::RetryAfter(retry_after))
            }
            UpstreamError::Status {
                code,
                retry_after,
                fields,
            } => {
                let retry = retry_after.map(Detail::RetryAfter).unwrap_or(Detail::None);
                match code {
                    400 => transformers::rejected_fields(fields, fallback_field),
                    401 | 403 => Error::new(K::Internal, Reason::UpstreamAuthFailed),
                    404 => Error::new(K::NotFound, Reason::UpstreamNotFound),
                    409 => Error::wrong_state(
                        "ConnectPay refused the step in the application's current status",
                    ),
                    429 if submit => Error::new(K::ResourceExhausted, Reason::UpstreamRateLimited)
                        .with_detail(retry),
                    429 => {
                        Error::new(K::Unavailable, Reason::UpstreamRateLimited).with_detail(retry)
                    }
                    500.. if submit => Error::new(K::Unknown, Reason::UpstreamOutcomeUnknown),
                    500.. => {
                        Error::new(K::Unavailable, Reason::UpstreamUnavailable).with_detail(retry)
                    }
                    _ => Error::new(K::Internal, Reason::UpstreamError),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> UpstreamError {
        UpstreamError::Status {
            code,
            retry_after: Some(Duration::from_secs(3)),
            fields: vec![],
        }
    }

    #[test]
    fn a_submit_that_may_have_happened_is_never_unavailable() {
        for e in [
            || UpstreamError::NoAnswer {
                caller_deadline: false,
            },
            || UpstreamError::BadResponse,
            || status(500),
            || status(502),
            || status(503),
        ] {
            let mapped = e().into_domain(CallKind::Submit, "");
            assert_eq!(mapped.kind, ErrorKind::Unknown, "{mapped:?}");
        }
        let timed_out = UpstreamError::NoAnswer {
            caller_deadline: true,
        }
        .into_domain(CallKind::Submit, "");
        assert_eq!(timed_out.kind, ErrorKind::DeadlineExceeded);
        assert_eq!(
            UpstreamError::NotSent
                .into_domain(CallKind::Submit, "")
                .kind,
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn the_design_table() {
        let read = |e: UpstreamError| e.into_domain(CallKind::Read, "");
        let submit = |e: UpstreamError| e.into_domain(CallKind::Submit, "");
        assert_eq!(read(status(404)).kind, ErrorKind::NotFound);
        assert_eq!(read(status(409)).kind, ErrorKind::FailedPrecondition);
        assert_eq!(read(status(401)).reason, Reason::UpstreamAuthFailed);
        assert_eq!(read(status(503)).kind, ErrorKind::Unavailable);
        let limited = read(status(429));
        assert_eq!(
            (limited.kind, limited.retry_after()),
            (ErrorKind::Unavailable, Some(Duration::from_secs(3)))
        );
        let limited = submit(status(429));
        assert_eq!(
            (limited.kind, limited.retry_after()),
            (ErrorKind::ResourceExhausted, Some(Duration::from_secs(3)))
        );
        let rejected = submit(UpstreamError::Status {
            code: 400,
            retry_after: None,
            fields: vec!["person.address.city".into()],
        });
        assert_eq!(rejected.kind, ErrorKind::InvalidArgument);
        assert_eq!(rejected.reason, Reason::UpstreamRejectedFields);
        assert_eq!(rejected.field_violations()[0].field, "kyc.address.city");
    }
}
