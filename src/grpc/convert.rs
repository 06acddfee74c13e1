//! Proto ⇄ domain conversions at the gRPC boundary.

use std::time::{Duration, SystemTime};

use prost_types::{Timestamp, value::Kind};
use serde_json::{Map, Number, Value};
use tonic::metadata::MetadataMap;

use super::pb;
use crate::{
    domain::{
        Application, ApplicationId, Deadline, Error, FieldViolation, Status,
        kyc::{AddressInput, KycInput, PepInput},
    },
    service::{ApplicationKey, WatchEvent, WatchItem},
};

impl From<Status> for pb::ApplicationStatus {
    fn from(status: Status) -> Self {
        use pb::ApplicationStatus as P;
        match status {
            Status::IdvTokenGenerated => P::IdvTokenGenerated,
            Status::IdvApproved => P::IdvApproved,
            Status::IdvDeclined => P::IdvDeclined,
            Status::IdvTokenExpired => P::IdvTokenExpired,
            Status::ApplicationCaptured => P::ApplicationCaptured,
            Status::ComplianceReview => P::ComplianceReview,
            Status::AccountIssued => P::AccountIssued,
            Status::ApplicationDeclined => P::ApplicationDeclined,
            Status::Other => P::Other,
        }
    }
}

impl From<&Application> for pb::Application {
    fn from(app: &Application) -> Self {
        pb::Application {
            application_id: app.id.to_string(),
            external_reference: app.external_reference.clone(),
            person_id: app.person_id.clone().unwrap_or_default(),
            status: pb::ApplicationStatus::from(app.status).into(),
            upstream_status: app.upstream_status.clone(),
            baas_client_id: app.baas_client_id.clone().unwrap_or_default(),
            version: app.version,
            update_time: Some(timestamp(app.update_time)),
            create_time: Some(timestamp(app.create_time)),
        }
    }
}

pub fn timestamp(time: SystemTime) -> Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// The application id of a request, or a field violation naming `field`.
pub fn application_id(raw: &str, field: &str) -> Result<ApplicationId, Error> {
    if raw.is_empty() {
        return Err(Error::invalid_field(field, "is required"));
    }
    ApplicationId::parse(raw).ok_or_else(|| {
        Error::invalid_field(
            field,
            format!(
                "must be at most {} printable characters",
                ApplicationId::MAX_LEN
            ),
        )
    })
}

/// The `oneof key` shared by the read and watch requests.
fn application_key(id: Option<String>, reference: Option<String>) -> Result<ApplicationKey, Error> {
    match (id, reference) {
        (Some(id), _) => Ok(ApplicationKey::Id(application_id(&id, "application_id")?)),
        (None, Some(reference)) => {
            if let Some(problem) = crate::domain::submission::id_problem(
                &reference,
                crate::domain::submission::MAX_REFERENCE_LEN,
            ) {
                return Err(Error::invalid_field("external_reference", problem));
            }
            Ok(ApplicationKey::ExternalReference(reference))
        }
        (None, None) => Err(Error::invalid_field(
            "key",
            "one of application_id or external_reference is required",
        )),
    }
}

impl TryFrom<Option<pb::get_application_request::Key>> for ApplicationKey {
    type Error = Error;

    fn try_from(key: Option<pb::get_application_request::Key>) -> Result<Self, Error> {
        use pb::get_application_request::Key;
        match key {
            Some(Key::ApplicationId(id)) => application_key(Some(id), None),
            Some(Key::ExternalReference(reference)) => application_key(None, Some(reference)),
            None => application_key(None, None),
        }
    }
}

impl TryFrom<Option<pb::watch_application_request::Key>> for ApplicationKey {
    type Error = Error;

    fn try_from(key: Option<pb::watch_application_request::Key>) -> Result<Self, Error> {
        use pb::watch_application_request::Key;
        match key {
            Some(Key::ApplicationId(id)) => application_key(Some(id), None),
            Some(Key::ExternalReference(reference)) => application_key(None, Some(reference)),
            None => application_key(None, None),
        }
    }
}

impl From<WatchItem> for pb::WatchApplicationResponse {
    fn from(item: WatchItem) -> Self {
        use pb::watch_application_response::Event;
        let event = match item.event {
            WatchEvent::Snapshot(app) => Event::Snapshot((&app).into()),
            WatchEvent::Change(app) => Event::Change((&app).into()),
            WatchEvent::Heartbeat(time) => Event::Heartbeat(pb::Heartbeat {
                time: Some(timestamp(time)),
            }),
        };
        pb::WatchApplicationResponse {
            event: Some(event),
            resume_token: item.token.encode(),
        }
    }
}

impl From<WatchItem> for pb::WatchApplicationsResponse {
    fn from(item: WatchItem) -> Self {
        use pb::watch_applications_response::Event;
        let event = match item.event {
            // The stream of every application has no snapshot; a change is a change.
            WatchEvent::Snapshot(app) | WatchEvent::Change(app) => Event::Change((&app).into()),
            WatchEvent::Heartbeat(time) => Event::Heartbeat(pb::Heartbeat {
                time: Some(timestamp(time)),
            }),
        };
        pb::WatchApplicationsResponse {
            event: Some(event),
            resume_token: item.token.encode(),
        }
    }
}

impl TryFrom<pb::PersonalKyc> for KycInput {
    type Error = Error;

    fn try_from(kyc: pb::PersonalKyc) -> Result<Self, Error> {
        let additional_fields = match kyc.additional_fields {
            None => Map::new(),
            Some(fields) => struct_to_json(fields, "kyc.additional_fields")?,
        };
        Ok(KycInput {
            is_ubo: kyc.is_ubo,
            pep: kyc.pep.map(|pep| PepInput {
                is_pep: pep.is_pep,
                position: pep.position,
            }),
            address: kyc.address.map(|a| AddressInput {
                country_code: a.country_code,
                address_line1: a.address_line1,
                address_line2: a.address_line2,
                city: a.city,
                postcode: a.postcode,
            }),
            account_purposes: kyc.account_purposes,
            additional_fields,
        })
    }
}

fn struct_to_json(s: prost_types::Struct, path: &str) -> Result<Map<String, Value>, Error> {
    s.fields
        .into_iter()
        .map(|(key, value)| {
            let field_path = format!("{path}.{key}");
            Ok((key, value_to_json(value, &field_path)?))
        })
        .collect()
}

fn value_to_json(value: prost_types::Value, path: &str) -> Result<Value, Error> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => number(n)
            .map(Value::Number)
            .ok_or_else(|| Error::invalid_field(path, "must be a finite number"))?,
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s, path)?),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `Struct` numbers are doubles; whole ones go upstream as JSON integers, as a person would write them.
fn number(n: f64) -> Option<Number> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: beyond it a double no longer holds every integer
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Some(Number::from(n as i64))
    } else {
        Number::from_f64(n)
    }
}

/// The caller's deadline, from the `grpc-timeout` header every gRPC client sends when one is set.
pub fn deadline(metadata: &MetadataMap) -> Deadline {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(Deadline::after)
        .unwrap_or(Deadline::NONE)
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// A violation for a request field the caller must set.
pub fn required(field: &str) -> Error {
    Error::invalid_fields(vec![FieldViolation::new(field, "is required")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "10", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn struct_values_become_json() {
        let mut fields = BTreeMap::new();
        let v = |kind| prost_types::Value { kind: Some(kind) };
        fields.insert("count".to_string(), v(Kind::NumberValue(3.0)));
        fields.insert("ratio".to_string(), v(Kind::NumberValue(0.5)));
        fields.insert(
            "list".to_string(),
            v(Kind::ListValue(prost_types::ListValue {
                values: vec![v(Kind::StringValue("a".into())), v(Kind::BoolValue(true))],
            })),
        );
        let json = struct_to_json(prost_types::Struct { fields }, "kyc.additional_fields").unwrap();
        assert_eq!(
            Value::Object(json),
            serde_json::json!({"count": 3, "ratio": 0.5, "list": ["a", true]})
        );
    }

    #[test]
    fn non_finite_numbers_are_refused_by_path() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "x".to_string(),
            prost_types::Value {
                kind: Some(Kind::NumberValue(f64::NAN)),
            },
        );
        let e =
            struct_to_json(prost_types::Struct { fields }, "kyc.additional_fields").unwrap_err();
        assert_eq!(e.field_violations()[0].field, "kyc.additional_fields.x");
    }
}
