//! Pure conversions between the domain and ConnectPay's wire models. No I/O here, so every mapping can be
//! tested on its own.

use serde_json::{Map, Value, json};

use super::wire::ApplicationFields;
use crate::domain::{
    Error, FieldViolation, Observation, PersonalKyc, Status, application::ApplicationId,
    error::Reason,
};

/// Maps ConnectPay's status string onto the gateway's statuses. Case, `-`/`_`/space separators and the
/// two generations' spellings (`ACCOUNT_ISSUED`, `APPLICATION_APPROVED`) are all accepted; anything else is
/// `Other`, and the raw string travels beside it.
pub fn status_from_wire(raw: &str) -> Status {
    let key: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    match key.as_str() {
        "IDVTOKENGENERATED" => Status::IdvTokenGenerated,
        "IDVAPPROVED" => Status::IdvApproved,
        "IDVDECLINED" => Status::IdvDeclined,
        "IDVTOKENEXPIRED" => Status::IdvTokenExpired,
        "APPLICATIONCAPTURED" => Status::ApplicationCaptured,
        "COMPLIANCEREVIEW" => Status::ComplianceReview,
        "ACCOUNTISSUED" | "APPLICATIONAPPROVED" => Status::AccountIssued,
        "APPLICATIONDECLINED" => Status::ApplicationDeclined,
        _ => Status::Other,
    }
}

/// What an application answer says, or `None` when it carries no status at all.
pub fn observation(fields: &ApplicationFields) -> Option<Observation> {
    let raw = fields.status.as_deref()?.trim();
    Some(Observation {
        status: status_from_wire(raw),
        upstream_status: raw.to_owned(),
        person_id: fields.person_id.clone(),
        baas_client_id: fields.baas_client_id.clone(),
    })
}

/// The application id an answer names, if it is a plausible one.
pub fn application_id(fields: &ApplicationFields) -> Option<ApplicationId> {
    fields
        .application_id
        .as_deref()
        .and_then(ApplicationId::parse)
}

/// The keys of `person` the gateway fills itself; extra fields may not replace them.
const MODELLED_PERSON_KEYS: [&str; 5] = ["Id", "isUbo", "pep", "address", "accountPurposes"];

/// The body of the personal application (v2): the modelled fields, plus the caller's extra fields merged
/// into `person`.
pub fn kyc_body(person_id: &str, kyc: &PersonalKyc) -> Result<Value, Error> {
    let clashes: Vec<FieldViolation> = kyc
        .additional_fields
        .keys()
        .filter(|k| {
            MODELLED_PERSON_KEYS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(k))
        })
        .map(|k| {
            FieldViolation::new(
                format!("kyc.additional_fields.{k}"),
                "may not replace a field the API models; use the typed field",
            )
        })
        .collect();
    if !clashes.is_empty() {
        return Err(Error::invalid_fields(clashes));
    }
    let mut pep = Map::new();
    pep.insert("isPep".into(), Value::Bool(kyc.pep.is_pep));
    if let Some(position) = &kyc.pep.position {
        pep.insert("position".into(), Value::String(position.clone()));
    }
    let mut address = Map::new();
    address.insert("countryCode".into(), json!(kyc.address.country_code));
    address.insert("addressLine1".into(), json!(kyc.address.address_line1));
    if let Some(line2) = &kyc.address.address_line2 {
        address.insert("addressLine2".into(), json!(line2));
    }
    address.insert("city".into(), json!(kyc.address.city));
    address.insert("postcode".into(), json!(kyc.address.postcode));

    let mut person = kyc.additional_fields.clone();
    person.insert("Id".into(), json!(person_id));
    person.insert("isUbo".into(), Value::Bool(kyc.is_ubo));
    person.insert("pep".into(), Value::Object(pep));
    person.insert("address".into(), Value::Object(address));
    if !kyc.account_purposes.is_empty() {
        person.insert("accountPurposes".into(), json!(kyc.account_purposes));
    }
    Ok(json!({ "person": person }))
}

/// Translates a field path in ConnectPay's error (`person.address.addressLine1`) into the caller's request
/// (`kyc.address.address_line1`), so the caller can find the field it sent.
/// A path that names nothing the caller sent becomes `fallback`, and so does anything that is not a path
/// at all: names joined by `.` and `[index]` are, but text such as `person.address.city=Vilnius` would put
/// the rejected value into the caller's field violation.
pub fn request_field_path(wire_path: &str, fallback: &str) -> String {
    if !is_wire_path(wire_path) {
        return fallback.into();
    }
    let Some(rest) = wire_path
        .strip_prefix("person.")
        .or_else(|| wire_path.strip_prefix("person["))
    else {
        return match wire_path {
            "externalReference" => "external_reference".into(),
            "sessionId" => "session_id".into(),
            "providerId" => "provider_id".into(),
            _ => fallback.into(),
        };
    };
    let first = rest.split(['.', '[']).next().unwrap_or_default();
    if first == "Id" {
        // ConnectPay's person id comes from the application, not from the caller.
        return "application_id".into();
    }
    if MODELLED_PERSON_KEYS.contains(&first) {
        format!("kyc.{}", snake_case_path(rest))
    } else {
        format!("kyc.additional_fields.{rest}")
    }
}

/// Far longer than any path ConnectPay has.
const MAX_WIRE_PATH: usize = 200;

fn is_wire_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_WIRE_PATH
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
}

fn snake_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    let mut prev_lower = false;
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// ConnectPay's field errors as the caller's field violations (the paths only: ConnectPay's messages might
/// quote what was sent).
pub fn rejected_fields(wire_fields: impl IntoIterator<Item = String>, fallback: &str) -> Error {
    let mut violations: Vec<FieldViolation> = Vec::new();
    for path in wire_fields {
        let field = request_field_path(&path, fallback);
        if !violations.iter().any(|v| v.field == field) {
            violations.push(FieldViolation::new(field, "rejected by ConnectPay"));
        }
    }
    if violations.is_empty() {
        violations.push(FieldViolation::new(fallback, "rejected by ConnectPay"));
    }
    Error::invalid_fields(violations).with_reason(Reason::UpstreamRejectedFields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kyc::{AddressInput, KycInput, PepInput};

    #[test]
    fn every_documented_spelling_maps() {
        for (raw, status) in [
            ("IDV_TOKEN_GENERATED", Status::IdvTokenGenerated),
            ("idv_approved", Status::IdvApproved),
            ("IdvDeclined", Status::IdvDeclined),
            ("IDV-TOKEN-EXPIRED", Status::IdvTokenExpired),
            ("APPLICATION_CAPTURED", Status::ApplicationCaptured),
            ("COMPLIANCE_REVIEW", Status::ComplianceReview),
            ("ACCOUNT_ISSUED", Status::AccountIssued),
            ("APPLICATION_APPROVED", Status::AccountIssued),
            ("Application Declined", Status::ApplicationDeclined),
            ("DOCUMENTS_REQUESTED", Status::Other),
            ("", Status::Other),
        ] {
            assert_eq!(status_from_wire(raw), status, "{raw}");
        }
    }

    fn kyc(extra: Map<String, Value>) -> PersonalKyc {
        KycInput {
            is_ubo: Some(true),
            pep: Some(PepInput {
                is_pep: Some(true),
                position: "Minister".into(),
            }),
            address: Some(AddressInput {
                country_code: "lt".into(),
                address_line1: "Gedimino pr. 1".into(),
                address_line2: String::new(),
                city: "Vilnius".into(),
                postcode: "01103".into(),
            }),
            account_purposes: vec!["SALARY".into()],
            additional_fields: extra,
        }
        .validate("kyc")
        .unwrap()
    }

    #[test]
    fn kyc_body_has_the_documented_shape_and_the_extra_fields() {
        let mut extra = Map::new();
        extra.insert("taxResidency".into(), json!([{"countryCode": "LT"}]));
        let body = kyc_body("p-1", &kyc(extra)).unwrap();
        assert_eq!(
            body,
            json!({"person": {
                "Id": "p-1", "isUbo": true,
                "pep": {"isPep": true, "position": "Minister"},
                "address": {"countryCode": "LT", "addressLine1": "Gedimino pr. 1", "city": "Vilnius", "postcode": "01103"},
                "accountPurposes": ["SALARY"],
                "taxResidency": [{"countryCode": "LT"}]
            }})
        );
    }

    #[test]
    fn extra_fields_may_not_replace_modelled_ones() {
        let mut extra = Map::new();
        extra.insert("isubo".into(), json!(false));
        let e = kyc_body("p-1", &kyc(extra)).unwrap_err();
        assert_eq!(e.field_violations()[0].field, "kyc.additional_fields.isubo");
    }

    #[test]
    fn wire_paths_become_request_paths() {
        for (wire, request) in [
            ("person.address.city", "kyc.address.city"),
            ("person.address.addressLine1", "kyc.address.address_line1"),
            ("person.isUbo", "kyc.is_ubo"),
            ("person.pep.isPep", "kyc.pep.is_pep"),
            ("person.accountPurposes[1]", "kyc.account_purposes[1]"),
            ("person.Id", "application_id"),
            ("person.taxResidency", "kyc.additional_fields.taxResidency"),
            ("sessionId", "session_id"),
            ("something", "kyc"),
        ] {
            assert_eq!(request_field_path(wire, "kyc"), request, "{wire}");
        }
    }
}
