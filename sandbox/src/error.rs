//! Error answers: ConnectPay's `{"code", "message", "errors"?}`, OAuth's `{"error"}`, and the
//! control interface's errors.

use std::borrow::Cow;
use std::fmt;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

/// One failing field of a `400 VALIDATION_ERROR`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

/// An error answer of a ConnectPay onboarding endpoint.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub(crate) fn validation(errors: Vec<FieldError>) -> ApiError {
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "the request is not valid",
            )
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "INVALID_STATE", message)
    }

    /// The answer of an injected fault: a generic body for the status, and `Retry-After` on
    /// a `429` even when the fault did not name one (ConnectPay's `429`s always carry it).
    pub(crate) fn injected(status: StatusCode, retry_after: Option<u64>) -> ApiError {
        let code = match status {
            StatusCode::BAD_REQUEST => "BAD_REQUEST",
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "FORBIDDEN",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "INVALID_STATE",
            StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
            StatusCode::BAD_GATEWAY => "BAD_GATEWAY",
            StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
            StatusCode::GATEWAY_TIMEOUT => "GATEWAY_TIMEOUT",
            s if s.is_server_error() => "INTERNAL_ERROR",
            _ => "ERROR",
        };
        let retry_after = retry_after.or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
        ApiError {
            retry_after,
            ..ApiError::new(status, code, "injected by the sandbox")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: &self.code,
            message: &self.message,
            errors: &self.errors,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An error answer of the token endpoint, in OAuth's shape: `{"error": "invalid_grant"}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    retry_after: Option<u64>,
}

impl OAuthError {
    pub(crate) fn invalid_client() -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client")
    }

    pub(crate) fn invalid_grant() -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant")
    }

    pub(crate) fn invalid_request() -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request")
    }

    pub(crate) fn unsupported_grant_type() -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type")
    }

    /// The answer of an injected fault on the token endpoint.
    pub(crate) fn injected(status: StatusCode, retry_after: Option<u64>) -> OAuthError {
        let error = match status {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::UNAUTHORIZED => "invalid_client",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                "temporarily_unavailable"
            }
            _ => "server_error",
        };
        let retry_after = retry_after.or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
        OAuthError {
            retry_after,
            ..OAuthError::new(status, error)
        }
    }

    fn new(status: StatusCode, error: &'static str) -> OAuthError {
        OAuthError {
            status,
            error,
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: &'static str,
        }
        let mut response = (self.status, Json(Body { error: self.error })).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Why a control operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The request is malformed or asks for something impossible (`400`).
    BadRequest(String),
    /// The application it names does not exist (`404`).
    NotFound(String),
}

impl ControlError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ControlError {
        ControlError::BadRequest(message.into())
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::BadRequest(message) => write!(f, "bad request: {message}"),
            ControlError::NotFound(message) => write!(f, "not found: {message}"),
        }
    }
}

impl std::error::Error for ControlError {}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ControlError::BadRequest(message) => (StatusCode::BAD_REQUEST, "BAD_REQUEST", message),
            ControlError::NotFound(message) => (StatusCode::NOT_FOUND, "NOT_FOUND", message),
        };
        ApiError::new(status, code, message).into_response()
    }
}
