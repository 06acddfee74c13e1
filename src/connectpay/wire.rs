//! ConnectPay's JSON, as serde models.
//!
//! Answers are parsed tolerantly: unknown fields are ignored, both the wrapped (`{"application": {…}}`) and
//! the flat shape are accepted, ids may arrive as strings or numbers, and the spellings the documentation
//! uses for the same field (`personId`, `personid`) are aliases.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// `POST …/idv/external`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitIdvRequest<'a> {
    pub external_reference: &'a str,
    pub session_id: &'a str,
    pub provider_id: &'a str,
    pub notification_url: &'a str,
}

/// The application fields any answer may carry, wherever they sit.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ApplicationFields {
    #[serde(
        rename = "applicationId",
        alias = "applicationID",
        alias = "applicationid",
        alias = "application_id",
        deserialize_with = "lenient_string"
    )]
    pub application_id: Option<String>,
    #[serde(
        rename = "personId",
        alias = "personID",
        alias = "personid",
        alias = "person_id",
        deserialize_with = "lenient_string"
    )]
    pub person_id: Option<String>,
    #[serde(
        rename = "status",
        alias = "applicationStatus",
        alias = "idvStatus",
        deserialize_with = "lenient_string"
    )]
    pub status: Option<String>,
    #[serde(
        rename = "baasClientId",
        alias = "baasClientID",
        alias = "baasclientid",
        alias = "baas_client_id",
        deserialize_with = "lenient_string"
    )]
    pub baas_client_id: Option<String>,
}

/// Any application answer: wrapped, flat, or a mix (the submit answer may wrap the application and keep
/// `personId` beside it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ApplicationAnswer {
    #[serde(deserialize_with = "lenient_object")]
    pub application: Option<ApplicationFields>,
    #[serde(flatten)]
    pub flat: ApplicationFields,
}

impl ApplicationAnswer {
    /// The wrapped fields, each falling back to its flat counterpart.
    pub fn merged(self) -> ApplicationFields {
        let flat = self.flat;
        match self.application {
            None => flat,
            Some(inner) => ApplicationFields {
                application_id: inner.application_id.or(flat.application_id),
                person_id: inner.person_id.or(flat.person_id),
                status: inner.status.or(flat.status),
                baas_client_id: inner.baas_client_id.or(flat.baas_client_id),
            },
        }
    }
}

/// `POST /auth/v1/oauth2/token` answer.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub expires_in: Option<Duration>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub refresh_token_expires_in: Option<Duration>,
}

/// The error body. Undocumented: this is the sandbox's shape, and anything else parses to nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorAnswer {
    #[serde(deserialize_with = "lenient_string")]
    pub code: Option<String>,
    /// OAuth errors (`invalid_grant`).
    #[serde(deserialize_with = "lenient_string")]
    pub error: Option<String>,
    #[serde(deserialize_with = "lenient_field_errors")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FieldError {
    #[serde(deserialize_with = "lenient_string")]
    pub field: Option<String>,
}

impl ErrorAnswer {
    pub fn parse(body: &[u8]) -> ErrorAnswer {
        // Only an object counts: serde would also read a struct from a JSON array, by position.
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value @ serde_json::Value::Object(_)) => {
                serde_json::from_value(value).unwrap_or_default()
            }
            _ => ErrorAnswer::default(),
        }
    }
}

/// A string, a number (ids sometimes arrive unquoted) or nothing; an empty string is nothing.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn lenient_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ApplicationFields>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Object(_) => serde_json::from_value(value).ok(),
        _ => None,
    })
}

/// Seconds as a number or a string of digits (the documentation's own example mixes both).
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let seconds = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    Ok(seconds
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e10)
        .map(Duration::from_secs_f64))
}

fn lenient_field_errors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FieldError>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> ApplicationFields {
        serde_json::from_str::<ApplicationAnswer>(json)
            .unwrap()
            .merged()
    }

    #[test]
    fn both_documented_submit_shapes() {
        let wrapped = answer(
            r#"{"application": {"applicationId": "a-1", "status": "IDV_TOKEN_GENERATED"}, "personId": "p-1"}"#,
        );
        let flat = answer(
            r#"{"applicationId": "a-1", "personId": "p-1", "status": "IDV_TOKEN_GENERATED"}"#,
        );
        assert_eq!(wrapped, flat);
        assert_eq!(flat.person_id.as_deref(), Some("p-1"));
    }

    #[test]
    fn tolerates_spellings_types_and_strangers() {
        let fields = answer(
            r#"{"application": {"applicationId": 42, "personid": "p", "status": "X", "baasClientId": null,
                "iban": "LT00", "nested": {"a": [1]}}, "extra": true}"#,
        );
        assert_eq!(fields.application_id.as_deref(), Some("42"));
        assert_eq!(fields.person_id.as_deref(), Some("p"));
        assert_eq!(fields.baas_client_id, None);
        // A non-object wrapper is ignored, the flat fields still count.
        let fields = answer(r#"{"application": "weird", "status": "IDV_APPROVED"}"#);
        assert_eq!(fields.status.as_deref(), Some("IDV_APPROVED"));
    }

    #[test]
    fn token_lifetimes_as_numbers_or_strings() {
        let t: TokenAnswer = serde_json::from_str(
            r#"{"token_type": "Bearer", "access_token": "a", "refresh_token": "r", "expires_in": "3600",
                "refresh_token_expires_in": 2592000, "scope": "onboarding-baas"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(
            t.refresh_token_expires_in,
            Some(Duration::from_secs(2_592_000))
        );
        let t: TokenAnswer = serde_json::from_str(
            r#"{"access_token": "a", "refresh_token": "r", "expires_in": -1}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in, None);
    }

    #[test]
    fn any_error_body_parses() {
        for body in [
            &b""[..],
            b"<html>oops</html>",
            b"null",
            b"[1,2]",
            b"{\"errors\": \"x\"}",
        ] {
            let e = ErrorAnswer::parse(body);
            assert!(
                e.code.is_none() && e.errors.is_empty(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let e = ErrorAnswer::parse(
            br#"{"code": "VALIDATION_ERROR", "errors": [{"field": "person.address.city", "message": "m"}, 7]}"#,
        );
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].field.as_deref(), Some("person.address.city"));
    }
}
