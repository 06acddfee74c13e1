//! The first definite outcome of an idempotent request, as stored and replayed: the application it
//! produced, or the error it ended with. Identifiers and statuses only; errors carry field paths and fixed
//! texts, never values.

use serde_json::{Value, json};

use super::{from_micros, micros};
use crate::domain::{
    Application, ApplicationId, Error, FieldViolation, Status,
    error::{Detail, ErrorKind, PreconditionViolation, Reason},
};

#[derive(Debug, Clone, PartialEq)]
pub enum StoredOutcome {
    Application(Application),
    Error(Error),
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
        ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::Unknown => "UNKNOWN",
        ErrorKind::DeadlineExceeded => "DEADLINE_EXCEEDED",
        ErrorKind::Cancelled => "CANCELLED",
        ErrorKind::Aborted => "ABORTED",
        ErrorKind::Internal => "INTERNAL",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
    }
}

const KINDS: [ErrorKind; 12] = [
    ErrorKind::InvalidArgument,
    ErrorKind::NotFound,
    ErrorKind::FailedPrecondition,
    ErrorKind::ResourceExhausted,
    ErrorKind::Unavailable,
    ErrorKind::Unknown,
    ErrorKind::DeadlineExceeded,
    ErrorKind::Cancelled,
    ErrorKind::Aborted,
    ErrorKind::Internal,
    ErrorKind::Unauthenticated,
    ErrorKind::PermissionDenied,
];

impl StoredOutcome {
    pub fn to_json(&self) -> String {
        match self {
            StoredOutcome::Application(app) => json!({"application": {
                "id": app.id.as_str(),
                "owner": app.owner,
                "externalReference": app.external_reference,
                "personId": app.person_id,
                "status": app.status.as_str(),
                "upstreamStatus": app.upstream_status,
                "lastKnownStatus": app.last_known_status.as_str(),
                "baasClientId": app.baas_client_id,
                "version": app.version,
                "createdAt": micros(app.create_time),
                "updatedAt": micros(app.update_time),
            }}),
            StoredOutcome::Error(e) => {
                let detail = match &e.detail {
                    Detail::None => Value::Null,
                    Detail::Fields(v) => json!({"fields": v.iter().map(|f| json!([f.field, f.description])).collect::<Vec<_>>()}),
                    Detail::Precondition(p) => json!({"precondition": [p.kind, p.subject, p.description]}),
                    Detail::RetryAfter(d) => json!({"retryAfterMs": d.as_millis() as u64}),
                };
                json!({"error": {"kind": kind_name(e.kind), "reason": e.reason.as_str(), "detail": detail}})
            }
        }
        .to_string()
    }

    /// `None` for anything this version did not write.
    pub fn from_json(text: &str) -> Option<StoredOutcome> {
        let value: Value = serde_json::from_str(text).ok()?;
        if let Some(app) = value.get("application") {
            let s = |key: &str| app.get(key).and_then(Value::as_str).map(str::to_owned);
            let status = |key: &str| s(key).as_deref().and_then(Status::from_name);
            return Some(StoredOutcome::Application(Application {
                id: ApplicationId::parse(&s("id")?)?,
                owner: s("owner")?,
                external_reference: s("externalReference")?,
                person_id: s("personId"),
                status: status("status")?,
                upstream_status: s("upstreamStatus")?,
                last_known_status: status("lastKnownStatus")?,
                baas_client_id: s("baasClientId"),
                version: app.get("version")?.as_u64()?,
                create_time: from_micros(app.get("createdAt")?.as_i64()?),
                update_time: from_micros(app.get("updatedAt")?.as_i64()?),
            }));
        }
        let error = value.get("error")?;
        let kind_text = error.get("kind")?.as_str()?;
        let kind = KINDS.into_iter().find(|k| kind_name(*k) == kind_text)?;
        let reason_text = error.get("reason")?.as_str()?;
        let reason = *Reason::ALL.iter().find(|r| r.as_str() == reason_text)?;
        let detail = error.get("detail")?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let detail = if let Some(fields) = detail.get("fields").and_then(Value::as_array) {
            Detail::Fields(
                fields
                    .iter()
                    .filter_map(|f| Some(FieldViolation::new(text(f.get(0)?)?, text(f.get(1)?)?)))
                    .collect(),
            )
        } else if let Some(p) = detail.get("precondition") {
            Detail::Precondition(PreconditionViolation {
                kind: static_name(p.get(0)?.as_str()?),
                subject: static_name(p.get(1)?.as_str()?),
                description: text(p.get(2)?)?,
            })
        } else if let Some(ms) = detail.get("retryAfterMs").and_then(Value::as_u64) {
            Detail::RetryAfter(std::time::Duration::from_millis(ms))
        } else {
            Detail::None
        };
        Some(StoredOutcome::Error(Error {
            kind,
            reason,
            detail,
        }))
    }
}

/// Precondition kinds and subjects are the gateway's own constants.
fn static_name(name: &str) -> &'static str {
    match name {
        "APPLICATION_STATUS" => "APPLICATION_STATUS",
        "application" => "application",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Observation;
    use std::time::{Duration, SystemTime};

    #[test]
    fn outcomes_round_trip() {
        let app = Application::created(
            ApplicationId::parse("a-1").unwrap(),
            "payments".into(),
            "client-42".into(),
            Observation {
                status: Status::Other,
                upstream_status: "NEW_THING".into(),
                person_id: Some("p".into()),
                baas_client_id: None,
            },
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        );
        let errors = [
            Error::invalid_fields(vec![FieldViolation::new("kyc.address.city", "is required")]),
            Error::wrong_state("the application is IDV_DECLINED"),
            Error::new(ErrorKind::ResourceExhausted, Reason::UpstreamRateLimited)
                .with_detail(Detail::RetryAfter(Duration::from_secs(3))),
            Error::new(ErrorKind::NotFound, Reason::UpstreamNotFound),
        ];
        let outcomes = std::iter::once(StoredOutcome::Application(app))
            .chain(errors.into_iter().map(StoredOutcome::Error));
        for outcome in outcomes {
            assert_eq!(StoredOutcome::from_json(&outcome.to_json()), Some(outcome));
        }
        assert_eq!(StoredOutcome::from_json("{\"something\": 1}"), None);
    }
}
