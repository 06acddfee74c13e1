//! An IDV session handed over by a caller, and the rules it must meet before it goes to ConnectPay.

use secrecy::{ExposeSecret, SecretString};

use super::error::{Error, FieldViolation};

/// The longest external reference or idempotency key accepted; ids, not documents.
pub const MAX_REFERENCE_LEN: usize = 128;
/// IDV providers' session tokens can be long (JWTs), but not unbounded.
pub const MAX_SESSION_ID_LEN: usize = 4096;

#[derive(Debug)]
pub struct IdvSubmission {
    pub external_reference: String,
    /// The IDV provider's session id or token: a secret, never logged or stored in clear.
    pub session_id: SecretString,
    pub provider_id: String,
    pub request_id: Option<String>,
}

impl IdvSubmission {
    /// Checks every field; `providers` are the IDV providers the deployment is configured for.
    pub fn new(
        external_reference: String,
        session_id: SecretString,
        provider_id: String,
        request_id: String,
        providers: &[String],
    ) -> Result<Self, Error> {
        let mut violations = Vec::new();
        if let Some(problem) = id_problem(&external_reference, MAX_REFERENCE_LEN) {
            violations.push(FieldViolation::new("external_reference", problem));
        }
        let session = session_id.expose_secret();
        if session.trim().is_empty() {
            violations.push(FieldViolation::new("session_id", "is required"));
        } else if session.len() > MAX_SESSION_ID_LEN || session.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                "session_id",
                format!("must be at most {MAX_SESSION_ID_LEN} printable characters"),
            ));
        }
        if provider_id.is_empty() {
            violations.push(FieldViolation::new("provider_id", "is required"));
        } else if !providers.contains(&provider_id) {
            violations.push(FieldViolation::new(
                "provider_id",
                format!("must be one of: {}", providers.join(", ")),
            ));
        }
        let request_id = (!request_id.is_empty()).then_some(request_id);
        if let Some(problem) = request_id
            .as_deref()
            .and_then(|id| id_problem(id, MAX_REFERENCE_LEN))
        {
            violations.push(FieldViolation::new("request_id", problem));
        }
        if !violations.is_empty() {
            return Err(Error::invalid_fields(violations));
        }
        Ok(IdvSubmission {
            external_reference,
            session_id,
            provider_id,
            request_id,
        })
    }
}

/// What is wrong with an identifier-like string, if anything.
pub fn id_problem(value: &str, max: usize) -> Option<String> {
    if value.trim().is_empty() {
        Some("is required".into())
    } else if value.chars().count() > max || value.chars().any(char::is_control) {
        Some(format!("must be at most {max} printable characters"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(ext: &str, session: &str, provider: &str, request: &str) -> Vec<String> {
        match IdvSubmission::new(
            ext.into(),
            SecretString::from(session),
            provider.into(),
            request.into(),
            &["ONDATO".to_string()],
        ) {
            Ok(_) => vec![],
            Err(e) => e
                .field_violations()
                .iter()
                .map(|v| v.field.clone())
                .collect(),
        }
    }

    #[test]
    fn rules() {
        assert!(submit("client-42", "s", "ONDATO", "").is_empty());
        assert_eq!(submit("", "s", "ONDATO", ""), ["external_reference"]);
        assert_eq!(
            submit(&"x".repeat(129), "s", "ONDATO", ""),
            ["external_reference"]
        );
        assert_eq!(submit("c", " ", "ONDATO", ""), ["session_id"]);
        assert_eq!(submit("c", "s", "ondato", ""), ["provider_id"]);
        assert_eq!(submit("c", "s", "", "a\nb"), ["provider_id", "request_id"]);
    }

    #[test]
    fn the_session_id_is_never_printed() {
        let s = IdvSubmission::new(
            "c".into(),
            SecretString::from("very-secret-session"),
            "ONDATO".into(),
            String::new(),
            &["ONDATO".to_string()],
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("very-secret-session"));
    }
}
