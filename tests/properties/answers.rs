//! ConnectPay's application answers (and notification bodies, which carry the same fields).

use super::*;

const APPLICATION_ID_KEYS: &[&str] = &[
    "applicationId",
    "applicationID",
    "applicationid",
    "application_id",
];
const PERSON_ID_KEYS: &[&str] = &["personId", "personID", "personid", "person_id"];
const STATUS_KEYS: &[&str] = &["status", "applicationStatus", "idvStatus"];
const BAAS_CLIENT_ID_KEYS: &[&str] = &[
    "baasClientId",
    "baasClientID",
    "baasclientid",
    "baas_client_id",
];

/// A value ConnectPay might put in an identifier field: an id, a number, too long, with a control
/// character, blank, or of another JSON type altogether.
pub(super) fn id_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => regex("[A-Za-z0-9-]{1,40}").prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) + 0.5)),
        1 => regex("[a-f0-9]{129,200}").prop_map(Value::String),
        1 => regex("[a-z]{1,8}[\\x00-\\x1f\\x7f][a-z]{1,8}").prop_map(Value::String),
        1 => regex("[ \\t\\n]{0,4}").prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!([1, "a"])),
        1 => Just(json!({"id": "a-1"})),
    ]
}

/// A value for the status field: a documented status in any spelling, padded, or anything else.
fn status_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => spelled_status().prop_map(|(s, _)| Value::String(s)),
        1 => (spelled_status(), regex("[ \\t]{1,3}")).prop_map(|((s, _), pad)| Value::String(format!("{pad}{s}{pad}"))),
        1 => any::<String>().prop_map(Value::String),
        1 => id_value(),
    ]
}

/// The application fields of one object, each under one of its documented spellings, or absent.
fn fields_object() -> impl Strategy<Value = Map<String, Value>> {
    let field = |keys: &'static [&'static str], value: BoxedStrategy<Value>| {
        prop::option::weighted(0.8, (prop::sample::select(keys), value))
    };
    (
        field(APPLICATION_ID_KEYS, id_value().boxed()),
        field(PERSON_ID_KEYS, id_value().boxed()),
        field(STATUS_KEYS, status_value().boxed()),
        field(BAAS_CLIENT_ID_KEYS, id_value().boxed()),
        prop::collection::btree_map(regex("x_[a-z]{1,6}"), json_value(), 0..3),
    )
        .prop_map(|(a, p, s, b, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            for (key, value) in [a, p, s, b].into_iter().flatten() {
                map.insert(key.to_owned(), value);
            }
            map
        })
}

/// An answer: flat, wrapped in `application` (with fields beside the wrapper), or with a wrapper that is
/// not an object.
pub(super) fn answer_object() -> impl Strategy<Value = Map<String, Value>> {
    prop_oneof![
        fields_object(),
        (fields_object(), fields_object()).prop_map(|(inner, mut outer)| {
            outer.insert("application".into(), Value::Object(inner));
            outer
        }),
        (json_value(), fields_object()).prop_map(|(wrapper, mut outer)| {
            if !wrapper.is_object() {
                outer.insert("application".into(), wrapper);
            }
            outer
        }),
    ]
}

/// The documented reading of one field: a non-blank string as it is, a number as its JSON text, else nothing.
fn lenient(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    match keys.iter().find_map(|k| map.get(*k))? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        // As read back from the body's text (which need not give back the very same double).
        Value::Number(n) => Some(
            serde_json::from_str::<serde_json::Number>(&n.to_string())
                .unwrap()
                .to_string(),
        ),
        _ => None,
    }
}

/// What an answer says, by the documented rules: each wrapped field, else its flat counterpart.
pub(super) fn expected_fields(map: &Map<String, Value>) -> ApplicationFields {
    let flat = |keys| lenient(map, keys);
    let inner = |keys| match map.get("application") {
        // A wrapper naming one field twice is ignored as a whole (the flat fields still count).
        Some(Value::Object(inner)) if !two_spellings(inner) => lenient(inner, keys),
        _ => None,
    };
    ApplicationFields {
        application_id: inner(APPLICATION_ID_KEYS).or_else(|| flat(APPLICATION_ID_KEYS)),
        person_id: inner(PERSON_ID_KEYS).or_else(|| flat(PERSON_ID_KEYS)),
        status: inner(STATUS_KEYS).or_else(|| flat(STATUS_KEYS)),
        baas_client_id: inner(BAAS_CLIENT_ID_KEYS).or_else(|| flat(BAAS_CLIENT_ID_KEYS)),
    }
}

/// Whether an object names one field twice, under two of its spellings: serde refuses such an object as a
/// duplicate field (the whole answer when it is the top level, only the wrapper when it is `application`).
pub(super) fn two_spellings(map: &Map<String, Value>) -> bool {
    [
        APPLICATION_ID_KEYS,
        PERSON_ID_KEYS,
        STATUS_KEYS,
        BAAS_CLIENT_ID_KEYS,
    ]
    .iter()
    .any(|keys| keys.iter().filter(|k| map.contains_key(**k)).count() > 1)
}

/// A plausible application id: not blank, at most 128 bytes, no control characters.
pub(super) fn plausible_id(raw: &str) -> bool {
    !raw.trim().is_empty() && raw.len() <= 128 && !raw.chars().any(char::is_control)
}

/// The documented status a raw string spells, if it spells one.
pub(super) fn documented_status(raw: &str) -> Option<Status> {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    let raw = key(raw.trim());
    DOCUMENTED_STATUSES
        .iter()
        .find(|(name, _)| key(name) == raw)
        .map(|(_, status)| *status)
}

/// The client's reading of an application answer (`ConnectPayClient::application_call`, then `reported`).
pub(super) fn read_answer(body: &[u8]) -> Option<ApplicationFields> {
    serde_json::from_slice::<ApplicationAnswer>(body)
        .ok()
        .map(ApplicationAnswer::merged)
}

/// What holds of any answer the client could read.
fn check_read_answer(fields: &ApplicationFields) {
    for value in [
        &fields.application_id,
        &fields.person_id,
        &fields.status,
        &fields.baas_client_id,
    ]
    .into_iter()
    .flatten()
    {
        assert!(!value.trim().is_empty(), "{value:?}");
    }
    let id = transformers::application_id(fields);
    assert_eq!(
        id.as_ref().map(ApplicationId::as_str),
        fields
            .application_id
            .as_deref()
            .filter(|raw| plausible_id(raw))
    );
    match transformers::observation(fields) {
        None => assert_eq!(fields.status, None),
        Some(o) => {
            assert_eq!(
                Some(o.upstream_status.as_str()),
                fields.status.as_deref().map(str::trim)
            );
            assert_eq!(o.status, transformers::status_from_wire(&o.upstream_status));
            if let Some(status) = documented_status(&o.upstream_status) {
                assert_eq!(o.status, status, "{:?}", o.upstream_status);
            }
            assert_eq!(o.person_id, fields.person_id);
            assert_eq!(o.baas_client_id, fields.baas_client_id);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn answers_of_arbitrary_bytes_are_read_or_refused(body in bytes()) {
        if let Some(fields) = read_answer(&body) {
            check_read_answer(&fields);
        }
    }

    #[test]
    fn answers_of_arbitrary_json_are_read_or_refused(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        match read_answer(&body) {
            Some(fields) => {
                check_read_answer(&fields);
                prop_assert!(value.is_object(), "only an object is an answer");
            }
            None => prop_assert!(
                value.as_object().is_none_or(two_spellings),
                "every object is an answer: {value}"
            ),
        }
    }

    #[test]
    fn answers_of_any_shape_say_what_they_carry(object in answer_object()) {
        let body = serde_json::to_vec(&object).unwrap();
        let fields = read_answer(&body).expect("an object is an answer");
        prop_assert_eq!(&fields, &expected_fields(&object));
        check_read_answer(&fields);
    }

    #[test]
    fn documented_statuses_map_in_any_spelling((raw, status) in spelled_status(), junk in "[A-Za-z0-9]{1,4}") {
        prop_assert_eq!(transformers::status_from_wire(&raw), status);
        // A longer word is another status, not one of these.
        prop_assert_eq!(transformers::status_from_wire(&format!("{raw}{junk}")), Status::Other);
        prop_assert_eq!(transformers::status_from_wire(&format!("{junk}_{raw}")), Status::Other);
    }
}
