//! ConnectPay's notification bodies: `{"application": {…}}`, or `{"eventType", "eventId", "data": {…}}`, in
//! any casing of the event type. Only identifiers and the claimed status are kept; the body itself is not.

use serde_json::Value;

use crate::{
    connectpay::{transformers, wire::ApplicationAnswer},
    domain::Observation,
    service::Notification,
};

#[derive(Debug)]
pub enum Parsed {
    Notification(Notification),
    /// An event type this gateway does not handle (ConnectPay sends many families to one endpoint).
    UnknownEvent(String),
    /// Not a notification the gateway can read; nothing is done with it.
    Unreadable,
}

/// The onboarding event types and the status each announces when the body carries none. Doc expiry is a
/// hint without a claim: only ConnectPay's GET can say what it means for the application.
fn announced_status(event_type: &str) -> Option<Option<&'static str>> {
    Some(match event_type.to_ascii_lowercase().as_str() {
        "baaspersonidv.approved" => Some("IDV_APPROVED"),
        "baaspersonidv.declined" => Some("IDV_DECLINED"),
        "baasperson.docexpiry" => None,
        "baasapplication.compliancereview" => Some("COMPLIANCE_REVIEW"),
        "baasapplication.applicationapproved" => Some("APPLICATION_APPROVED"),
        "baasapplication.applicationdeclined" => Some("APPLICATION_DECLINED"),
        _ => return None,
    })
}

pub fn parse(body: &[u8]) -> Parsed {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return Parsed::Unreadable;
    };
    let event_type = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("eventType"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    let event_id = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("eventId"))
        .and_then(|(_, v)| v.as_str())
        .map(|id| id.chars().take(128).collect::<String>());
    let (fields, announced) = match event_type {
        Some(event_type) => {
            let Some(announced) = announced_status(&event_type) else {
                // Logged by the caller; kept short and printable.
                let shown: String = event_type
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect();
                return Parsed::UnknownEvent(shown);
            };
            let data = object.remove("data").unwrap_or(Value::Null);
            (serde_json::from_value::<ApplicationAnswer>(data), announced)
        }
        None => (
            serde_json::from_value::<ApplicationAnswer>(Value::Object(object)),
            None,
        ),
    };
    let Ok(fields) = fields.map(ApplicationAnswer::merged) else {
        return Parsed::Unreadable;
    };
    let application_id = transformers::application_id(&fields);
    if application_id.is_none() && fields.person_id.is_none() {
        return Parsed::Unreadable;
    }
    let raw_status = fields.status.as_deref().or(announced);
    let claimed = raw_status.map(|raw| Observation {
        status: transformers::status_from_wire(raw),
        upstream_status: raw.to_owned(),
        person_id: fields.person_id.clone(),
        baas_client_id: fields.baas_client_id.clone(),
    });
    Parsed::Notification(Notification {
        application_id,
        person_id: fields.person_id,
        claimed,
        sent_at: None,
        event_id,
        trace_context: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    fn notification(body: &str) -> Notification {
        match parse(body.as_bytes()) {
            Parsed::Notification(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_application_shape() {
        let n = notification(
            r#"{"application": {"applicationId": "a-1", "status": "ACCOUNT_ISSUED", "baasClientId": "b-1"}}"#,
        );
        assert_eq!(n.application_id.unwrap().as_str(), "a-1");
        let claimed = n.claimed.unwrap();
        assert_eq!(
            (claimed.status, claimed.baas_client_id.as_deref()),
            (Status::AccountIssued, Some("b-1"))
        );
    }

    #[test]
    fn the_event_shape_in_any_casing() {
        let n = notification(
            r#"{"eventType": "BAASAPPLICATION.applicationapproved", "eventId": "e",
                "data": {"applicationId": "a-1", "personId": "p-1", "status": "APPLICATION_APPROVED"}}"#,
        );
        assert_eq!(n.claimed.unwrap().status, Status::AccountIssued);
        // IDV events may name only the person, and the status may come from the event type alone.
        let n =
            notification(r#"{"eventType": "BaaSPersonIdv.Approved", "data": {"personId": "p-1"}}"#);
        assert!(n.application_id.is_none());
        assert_eq!(n.person_id.as_deref(), Some("p-1"));
        assert_eq!(n.claimed.unwrap().status, Status::IdvApproved);
        let n =
            notification(r#"{"eventType": "BaaSPerson.DocExpiry", "data": {"personId": "p-1"}}"#);
        assert!(n.claimed.is_none());
    }

    #[test]
    fn strangers_and_garbage() {
        assert!(matches!(
            parse(br#"{"eventType": "OutgoingPayment.Completed", "data": {}}"#),
            Parsed::UnknownEvent(t) if t == "OutgoingPayment.Completed"
        ));
        for body in [
            &b""[..],
            b"OK",
            b"[]",
            b"{}",
            b"{\"application\": {}}",
            b"{\"eventType\": \"BaaSPersonIdv.Approved\"}",
        ] {
            assert!(
                matches!(parse(body), Parsed::Unreadable),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
