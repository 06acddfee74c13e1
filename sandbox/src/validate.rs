//! Request-body rules: the IDV submission's required fields and the documented v2 constraints
//! of the KYC data (REFERENCE.md §2.5.2). Every failing field gets its own entry.

use serde_json::Value;

use crate::error::FieldError;

/// A valid IDV submission.
pub(crate) struct SubmitIdv {
    pub(crate) external_reference: String,
    pub(crate) session_id: String,
    pub(crate) provider_id: String,
    pub(crate) notification_url: String,
}

pub(crate) fn submit_idv(body: &Value, providers: &[String]) -> Result<SubmitIdv, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut field = |name: &str| -> String {
        match body.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) => {
                errors.push(FieldError::new(name, "must not be empty"));
                String::new()
            }
            None | Some(Value::Null) => {
                errors.push(FieldError::new(name, "is required"));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::new(name, "must be a string"));
                String::new()
            }
        }
    };
    let request = SubmitIdv {
        external_reference: field("externalReference"),
        session_id: field("sessionId"),
        provider_id: field("providerId"),
        notification_url: field("notificationUrl"),
    };
    if !request.provider_id.is_empty() && !providers.contains(&request.provider_id) {
        errors.push(FieldError::new(
            "providerId",
            format!("must be one of: {}", providers.join(", ")),
        ));
    }
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(errors)
    }
}

/// `person.Id`, if it is a string.
pub(crate) fn person_id(body: &Value) -> Option<&str> {
    body.pointer("/person/Id")?.as_str()
}

/// `person.address.city`, or `""`.
pub(crate) fn city(body: &Value) -> &str {
    body.pointer("/person/address/city")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Characters the v2 documentation forbids in `pep.position`.
const FORBIDDEN: &str = "~!@#$%^*()_+={}[]|:;\",<>/?";

/// The v2 constraints of the KYC body; empty when it is valid.
pub(crate) fn kyc_v2(body: &Value) -> Vec<FieldError> {
    let mut check = Checker {
        body,
        errors: Vec::new(),
    };
    check.text("person.Id", Presence::Required, 1, 36);
    check.boolean("person.isUbo");
    let is_pep = check.boolean("person.pep.isPep");
    let position_presence = if is_pep == Some(true) {
        Presence::Required
    } else {
        Presence::Optional
    };
    if let Some(position) = check.text("person.pep.position", position_presence, 1, 100) {
        if position.chars().any(|c| c.is_ascii_digit()) {
            check.fail("person.pep.position", "must not contain digits");
        } else if position.chars().any(|c| FORBIDDEN.contains(c)) {
            check.fail(
                "person.pep.position",
                format!("must not contain any of {FORBIDDEN}"),
            );
        }
    }
    if let Some(code) = check.text(
        "person.address.countryCode",
        Presence::Required,
        0,
        usize::MAX,
    ) && (code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()))
    {
        check.fail(
            "person.address.countryCode",
            "must be two letters A-Z (ISO 3166-1 alpha-2)",
        );
    }
    check.text("person.address.addressLine1", Presence::Required, 3, 100);
    check.text("person.address.addressLine2", Presence::Optional, 3, 100);
    check.text("person.address.city", Presence::Required, 3, 100);
    check.text("person.address.postcode", Presence::Required, 1, 20);
    check.errors
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    /// Absent and `null` are both fine.
    Optional,
}

struct Checker<'a> {
    body: &'a Value,
    errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    fn get(&self, field: &str) -> Option<&'a Value> {
        let pointer = format!("/{}", field.replace('.', "/"));
        self.body.pointer(&pointer).filter(|v| !v.is_null())
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A string of `min..=max` characters; returns it when present and of the right type.
    fn text(&mut self, field: &str, presence: Presence, min: usize, max: usize) -> Option<&'a str> {
        match self.get(field) {
            None => {
                if presence == Presence::Required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                let length = s.chars().count();
                if length < min || length > max {
                    self.fail(field, format!("length must be between {min} and {max}"));
                }
                Some(s)
            }
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = self.get(field).and_then(Value::as_bool);
        if value.is_none() {
            self.fail(field, "is required and must be a boolean");
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn valid() -> Value {
        json!({"person": {"Id": "9b2f0000-0000-0000-0000-000000000000", "isUbo": true,
                          "pep": {"isPep": false},
                          "address": {"countryCode": "LT", "addressLine1": "Gedimino pr. 1",
                                      "city": "Vilnius", "postcode": "01103"},
                          "taxResidency": "LT"}})
    }

    #[test]
    fn accepts_the_documented_example() {
        assert_eq!(kyc_v2(&valid()), []);
    }

    #[test]
    fn reports_every_failing_field() {
        let body = json!({"person": {"Id": "", "isUbo": "yes", "pep": {"isPep": true},
                                     "address": {"countryCode": "lt", "addressLine1": "ab",
                                                 "addressLine2": "x", "city": 7,
                                                 "postcode": "123456789012345678901"}}});
        assert_eq!(
            fields(&kyc_v2(&body)),
            [
                "person.Id",
                "person.isUbo",
                "person.pep.position",
                "person.address.countryCode",
                "person.address.addressLine1",
                "person.address.addressLine2",
                "person.address.city",
                "person.address.postcode",
            ]
        );
        assert_eq!(fields(&kyc_v2(&json!({}))).len(), 7);
    }

    #[test]
    fn pep_position_rules() {
        let mut body = valid();
        body["person"]["pep"] = json!({"isPep": true, "position": "Minister of Finance"});
        assert_eq!(kyc_v2(&body), []);
        for bad in ["Minister 2", "Minister/Deputy", ""] {
            body["person"]["pep"]["position"] = json!(bad);
            assert_eq!(fields(&kyc_v2(&body)), ["person.pep.position"], "{bad}");
        }
        body["person"]["pep"] = json!({"isPep": false, "position": null});
        assert_eq!(kyc_v2(&body), []);
    }

    #[test]
    fn submit_idv_requires_four_strings_and_a_known_provider() {
        let providers = ["ONDATO".to_owned()];
        let errors = submit_idv(
            &json!({"externalReference": "", "sessionId": 5, "providerId": "OTHER"}),
            &providers,
        )
        .err()
        .unwrap();
        assert_eq!(
            fields(&errors),
            [
                "externalReference",
                "sessionId",
                "notificationUrl",
                "providerId"
            ]
        );
        let ok = submit_idv(
            &json!({"externalReference": "r", "sessionId": "s", "providerId": "ONDATO",
                    "notificationUrl": "http://x/"}),
            &providers,
        );
        assert!(ok.is_ok());
    }
}
