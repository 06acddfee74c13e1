//! Webhook bodies.

use super::*;

/// ConnectPay's onboarding event types, and the status each announces when the body names none.
const EVENT_TYPES: &[(&str, Option<Status>)] = &[
    ("BaaSPersonIdv.Approved", Some(Status::IdvApproved)),
    ("BaaSPersonIdv.Declined", Some(Status::IdvDeclined)),
    ("BaaSPerson.DocExpiry", None),
    (
        "BaaSApplication.ComplianceReview",
        Some(Status::ComplianceReview),
    ),
    (
        "BaaSApplication.ApplicationApproved",
        Some(Status::AccountIssued),
    ),
    (
        "BaaSApplication.ApplicationDeclined",
        Some(Status::ApplicationDeclined),
    ),
];

/// What holds of any parse result.
fn check_parsed(parsed: &Parsed) {
    match parsed {
        Parsed::Notification(n) => {
            assert!(n.application_id.is_some() || n.person_id.is_some());
            if let Some(id) = &n.application_id {
                assert!(plausible_id(id.as_str()), "{id:?}");
            }
            if let Some(event_id) = &n.event_id {
                assert!(event_id.chars().count() <= 128);
            }
            if let Some(claimed) = &n.claimed {
                assert!(!claimed.upstream_status.trim().is_empty());
                assert_eq!(
                    claimed.status,
                    transformers::status_from_wire(&claimed.upstream_status)
                );
                assert_eq!(claimed.person_id, n.person_id);
            }
        }
        Parsed::UnknownEvent(shown) => {
            assert!(shown.chars().count() <= 64, "{shown:?}");
            assert!(shown.chars().all(|c| c.is_ascii_graphic()), "{shown:?}");
        }
        Parsed::Unreadable => {}
    }
}

/// A notification body in the event shape: a documented event type in any casing (or another one, or a
/// type that is not a string), an optional event id, and `data` holding an answer (or not an object).
fn event_body() -> impl Strategy<Value = (Map<String, Value>, Value, Option<Option<Status>>)> {
    let event_type = prop_oneof![
        4 => (prop::sample::select(EVENT_TYPES), prop::collection::vec(any::<bool>(), 40)).prop_map(|((name, status), upper)| {
            let cased: String = name
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            (Value::String(cased), Some(status))
        }),
        1 => any::<String>().prop_map(|s| (Value::String(s), None)),
        1 => regex("[A-Za-z]{1,20}\\.[A-Za-z]{1,20}").prop_map(|s| (Value::String(s), None)),
        1 => id_value().prop_filter("not a string", |v| !v.is_string()).prop_map(|v| (v, None)),
    ];
    let event_id = prop_oneof![
        Just(None),
        any::<String>().prop_map(|s| Some(Value::String(s))),
        regex("[a-z0-9-]{100,200}").prop_map(|s| Some(Value::String(s))),
        id_value().prop_map(Some),
    ];
    let data = prop_oneof![
        4 => answer_object().prop_map(Value::Object),
        1 => json_value(),
    ];
    (event_type, event_id, data).prop_map(|((event_type, announced), event_id, data)| {
        let mut body = Map::new();
        body.insert("eventType".into(), event_type.clone());
        if let Some(id) = event_id {
            body.insert("eventId".into(), id);
        }
        body.insert("data".into(), data.clone());
        (body, data, announced)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn notifications_of_arbitrary_bytes_are_read_or_refused(body in bytes()) {
        check_parsed(&parse::parse(&body));
    }

    #[test]
    fn notifications_of_arbitrary_json_are_read_or_refused(value in json_value()) {
        let parsed = parse::parse(&serde_json::to_vec(&value).unwrap());
        check_parsed(&parsed);
        if !value.is_object() {
            prop_assert!(matches!(parsed, Parsed::Unreadable));
        }
    }

    /// The application shape: the notification says what the same body would say as a GET answer.
    #[test]
    fn notifications_in_the_application_shape_say_what_they_carry(object in answer_object()) {
        let body = serde_json::to_vec(&object).unwrap();
        let parsed = parse::parse(&body);
        check_parsed(&parsed);
        let fields = expected_fields(&object);
        let application_id = fields.application_id.clone().filter(|id| plausible_id(id));
        match parsed {
            Parsed::Notification(n) => {
                prop_assert_eq!(n.application_id.as_ref().map(|id| id.as_str().to_owned()), application_id);
                prop_assert_eq!(&n.person_id, &fields.person_id);
                prop_assert_eq!(n.event_id, None);
                let observed = transformers::observation(&read_answer(&body).unwrap());
                prop_assert_eq!(n.claimed.as_ref().map(|c| c.status), observed.as_ref().map(|o| o.status));
                prop_assert_eq!(
                    n.claimed.as_ref().map(|c| c.upstream_status.trim()),
                    observed.as_ref().map(|o| o.upstream_status.as_str())
                );
            }
            other => {
                prop_assert!(application_id.is_none() && fields.person_id.is_none(), "{other:?}");
                prop_assert!(matches!(other, Parsed::Unreadable));
            }
        }
    }

    #[test]
    fn notifications_in_the_event_shape_say_what_they_carry((body, data, announced) in event_body()) {
        let parsed = parse::parse(&serde_json::to_vec(&body).unwrap());
        check_parsed(&parsed);
        let Some(Value::String(event_type)) = body.get("eventType") else {
            // Without a readable event type, the body is read as an application answer: it names nothing.
            prop_assert!(matches!(parsed, Parsed::Unreadable), "{parsed:?}");
            return Ok(());
        };
        let Some(announced) = announced.filter(|_| EVENT_TYPES.iter().any(|(t, _)| t.eq_ignore_ascii_case(event_type))) else {
            let shown: String = event_type.chars().filter(char::is_ascii_graphic).take(64).collect();
            let is_unknown = matches!(&parsed, Parsed::UnknownEvent(s) if *s == shown);
            prop_assert!(is_unknown, "{parsed:?}");
            return Ok(());
        };
        let Value::Object(data) = data else {
            prop_assert!(matches!(parsed, Parsed::Unreadable), "{parsed:?}");
            return Ok(());
        };
        if two_spellings(&data) {
            // One field named twice is ambiguous: the whole `data` is refused, as an answer would be.
            prop_assert!(matches!(parsed, Parsed::Unreadable), "{parsed:?}");
            return Ok(());
        }
        let fields = expected_fields(&data);
        let application_id = fields.application_id.clone().filter(|id| plausible_id(id));
        let Parsed::Notification(n) = parsed else {
            prop_assert!(application_id.is_none() && fields.person_id.is_none(), "{parsed:?}");
            return Ok(());
        };
        prop_assert_eq!(n.application_id.as_ref().map(|id| id.as_str().to_owned()), application_id);
        prop_assert_eq!(&n.person_id, &fields.person_id);
        let expected_event_id = match body.get("eventId") {
            Some(Value::String(id)) => Some(id.chars().take(128).collect::<String>()),
            _ => None,
        };
        prop_assert_eq!(&n.event_id, &expected_event_id);
        match (&fields.status, &n.claimed) {
            (Some(raw), Some(claimed)) => {
                prop_assert_eq!(claimed.upstream_status.trim(), raw.trim());
                if let Some(status) = documented_status(raw) {
                    prop_assert_eq!(claimed.status, status);
                }
            }
            (None, claimed) => prop_assert_eq!(claimed.as_ref().map(|c| c.status), announced),
            (Some(_), None) => prop_assert!(false, "the body's status was dropped"),
        }
    }
}
