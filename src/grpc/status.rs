//! Domain errors as gRPC statuses with `google.rpc` details: always an `ErrorInfo`, plus field violations,
//! a failed precondition or a retry delay where they apply.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::ERROR_DOMAIN;
use crate::domain::{
    Error,
    error::{Detail, ErrorKind},
};

/// The gRPC code's canonical name, for audit records.
pub fn code_name(kind: ErrorKind) -> &'static str {
    crate::telemetry::metrics::grpc_code_name(grpc_code(kind) as i32)
}

fn grpc_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unknown => Code::Unknown,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
    }
}

pub fn to_status(error: &Error) -> Status {
    let code = grpc_code(error.kind);
    let mut details =
        ErrorDetails::with_error_info(error.reason.as_str(), ERROR_DOMAIN, HashMap::new());
    match &error.detail {
        Detail::None => {}
        Detail::Fields(violations) => {
            for v in violations {
                details.add_bad_request_violation(&v.field, &v.description);
            }
        }
        Detail::Precondition(p) => {
            details.add_precondition_failure_violation(p.kind, p.subject, &p.description);
        }
        Detail::RetryAfter(after) => {
            details.set_retry_info(Some(*after));
        }
    }
    Status::with_error_details(code, error.reason.description(), details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FieldViolation, error::Reason};

    #[test]
    fn field_violations_and_error_info_travel_in_the_details() {
        let status = to_status(&Error::invalid_fields(vec![FieldViolation::new(
            "kyc.address.city",
            "is required",
        )]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_FIELDS", ERROR_DOMAIN)
        );
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "kyc.address.city"
        );
    }

    #[test]
    fn retry_delay_travels_as_retry_info() {
        let error = Error::new(ErrorKind::ResourceExhausted, Reason::UpstreamRateLimited)
            .with_detail(Detail::RetryAfter(std::time::Duration::from_secs(2)));
        let details = to_status(&error).get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(2))
        );
    }
}
