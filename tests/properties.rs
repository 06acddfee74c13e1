//! Hostile input, as property tests: the webhook body parser, the reading of ConnectPay's answers and the
//! proto → KYC conversion take bytes from outside the gateway. Whatever arrives, none of them may panic, a
//! rejection is `INVALID_ARGUMENT` with every violation named by a path under the field the caller sent, no
//! error quotes a value that was sent, and what is accepted comes through as sent.
//!
//! Each property runs `PROPTEST_CASES` cases when that is set (proptest reads it into its default
//! configuration), and a small number otherwise, so that `cargo test` stays quick; README.md ("Hostile
//! input") says how to run them longer. The fuzz targets in `fuzz/` cover the same three entry points.
//!
//! Failures are not persisted to a `proptest-regressions` file: a failing run prints the minimal input, and
//! each input found that way is kept below as a named, deterministic regression test, which says what it
//! guards against better than a file of seeds would.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use onboarding_gateway::{
    connectpay::{
        CallKind, UpstreamError, transformers,
        wire::{ApplicationAnswer, ApplicationFields, ErrorAnswer, TokenAnswer},
    },
    domain::{ApplicationId, Error, Reason, Status, error::ErrorKind, kyc::KycInput},
    grpc::pb,
};
use proptest::{prelude::*, test_runner::Config};
use prost::Message;
use prost_types::value::Kind;
use serde_json::{Map, Value, json};

// `webhook::parse` is private to the library, so its source is compiled here as it stands; it addresses its
// neighbours as `crate::…`, which these re-exports resolve to the library's own items.
#[path = "../src/webhook/parse.rs"]
mod parse;
mod connectpay {
    pub use onboarding_gateway::connectpay::{transformers, wire};
}
mod domain {
    pub use onboarding_gateway::domain::*;
}
mod service {
    pub use onboarding_gateway::service::Notification;
}

use parse::Parsed;

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 256;

fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------------------
// Shared generators and checks
// ---------------------------------------------------------------------------------------------------------

/// A value no fixed text contains, to be planted in what is sent and looked for in what comes back.
/// Looked for case-insensitively, as some values are upper-cased or snake-cased on their way.
fn marker() -> impl Strategy<Value = String> {
    "[a-z]{10}".prop_map(|s| format!("zq{s}"))
}

fn regex(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern)
        .expect("a valid pattern")
        .boxed()
}

/// Asserts that none of `markers` appears in the error: not in its message, its violations or its `Debug`.
fn assert_quotes_none(e: &Error, markers: &[String]) {
    let shown = format!("{e} {e:?}").to_lowercase();
    for m in markers {
        assert!(!shown.contains(m.as_str()), "{m:?} leaked into {shown}");
        for v in e.field_violations() {
            assert!(!v.description.to_lowercase().contains(m.as_str()));
            assert!(!v.field.to_lowercase().contains(m.as_str()));
        }
    }
}

/// Any JSON, with the keys the parsers look for among the names it uses.
fn json_value() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "application",
        "applicationId",
        "applicationid",
        "personId",
        "person_id",
        "status",
        "applicationStatus",
        "baasClientId",
        "eventType",
        "eventId",
        "data",
        "code",
        "error",
        "errors",
        "field",
        "access_token",
        "refresh_token",
        "expires_in",
    ];
    let key = prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(DOCUMENTED_STATUSES)
            .prop_map(|(name, _)| Value::String(name.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        prop::sample::select(
            &[
                -0.0,
                0.5,
                9_007_199_254_740_992.0,
                9_007_199_254_740_994.0,
                1e300
            ][..]
        ),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// ConnectPay's statuses as its documentation spells them, and what each means to the gateway.
const DOCUMENTED_STATUSES: &[(&str, Status)] = &[
    ("IDV_TOKEN_GENERATED", Status::IdvTokenGenerated),
    ("IDV_APPROVED", Status::IdvApproved),
    ("IDV_DECLINED", Status::IdvDeclined),
    ("IDV_TOKEN_EXPIRED", Status::IdvTokenExpired),
    ("APPLICATION_CAPTURED", Status::ApplicationCaptured),
    ("COMPLIANCE_REVIEW", Status::ComplianceReview),
    ("ACCOUNT_ISSUED", Status::AccountIssued),
    ("APPLICATION_APPROVED", Status::AccountIssued),
    ("APPLICATION_DECLINED", Status::ApplicationDeclined),
];

/// A documented status in any casing, with `_`, `-`, a space or nothing between its words.
fn spelled_status() -> impl Strategy<Value = (String, Status)> {
    (
        prop::sample::select(DOCUMENTED_STATUSES),
        prop::collection::vec(
            (
                any::<bool>(),
                prop::sample::select(&["_", "-", " ", ""][..]),
            ),
            4,
        ),
    )
        .prop_map(|((name, status), choices)| {
            let spelled: Vec<String> = name
                .split('_')
                .zip(choices.iter().cycle())
                .map(|(word, (lower, _))| {
                    if *lower {
                        word.to_lowercase()
                    } else {
                        word.to_owned()
                    }
                })
                .collect();
            let mut out = String::new();
            for (i, word) in spelled.iter().enumerate() {
                if i > 0 {
                    out.push_str(choices[i % choices.len()].1);
                }
                out.push_str(word);
            }
            (out, status)
        })
}

// ---------------------------------------------------------------------------------------------------------
// ConnectPay's application answers (and notification bodies, which carry the same fields)
// ---------------------------------------------------------------------------------------------------------

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
fn id_value() -> impl Strategy<Value = Value> {
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
fn answer_object() -> impl Strategy<Value = Map<String, Value>> {
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
fn expected_fields(map: &Map<String, Value>) -> ApplicationFields {
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
fn two_spellings(map: &Map<String, Value>) -> bool {
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
fn plausible_id(raw: &str) -> bool {
    !raw.trim().is_empty() && raw.len() <= 128 && !raw.chars().any(char::is_control)
}

/// The documented status a raw string spells, if it spells one.
fn documented_status(raw: &str) -> Option<Status> {
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
fn read_answer(body: &[u8]) -> Option<ApplicationFields> {
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

// ---------------------------------------------------------------------------------------------------------
// ConnectPay's error bodies and token answers
// ---------------------------------------------------------------------------------------------------------

/// ConnectPay's field paths whose request field the caller can be told (the documented examples).
const KNOWN_WIRE_PATHS: &[(&str, &str)] = &[
    ("person.isUbo", "kyc.is_ubo"),
    ("person.pep.isPep", "kyc.pep.is_pep"),
    ("person.pep.position", "kyc.pep.position"),
    ("person.address.countryCode", "kyc.address.country_code"),
    ("person.address.addressLine1", "kyc.address.address_line1"),
    ("person.address.addressLine2", "kyc.address.address_line2"),
    ("person.address.city", "kyc.address.city"),
    ("person.address.postcode", "kyc.address.postcode"),
    ("person.accountPurposes[0]", "kyc.account_purposes[0]"),
    ("person.taxResidency", "kyc.additional_fields.taxResidency"),
    ("person.Id", "application_id"),
    ("externalReference", "external_reference"),
    ("sessionId", "session_id"),
    ("providerId", "provider_id"),
];

/// Request fields that are not under `kyc` (the IDV submission's, and the application's id).
const TOP_LEVEL_FIELDS: &[&str] = &[
    "application_id",
    "external_reference",
    "session_id",
    "provider_id",
];

/// One entry of a `400`'s `errors`, the request path it must become (if ConnectPay named a known one), and
/// the markers it carries.
fn error_item() -> impl Strategy<Value = (Value, Option<&'static str>, Vec<String>)> {
    prop_oneof![
        3 => (prop::sample::select(KNOWN_WIRE_PATHS), marker(), marker()).prop_map(|((wire, request), m1, m2)| (
            json!({"field": wire, "message": format!("{m1} is not valid"), "rejectedValue": m2}),
            Some(request),
            vec![m1, m2],
        )),
        // A "path" with the offending value after it, as a sloppy error body might write it.
        2 => (
            prop::sample::select(KNOWN_WIRE_PATHS),
            prop::sample::select(&[" ", ": ", "=", " '", "\"", "\n", ",", " (", "\t"][..]),
            marker(),
        ).prop_map(|((wire, _), sep, m)| (json!({"field": format!("{wire}{sep}{m}")}), None, vec![m])),
        1 => regex("person\\.[a-z][A-Za-z0-9]{0,12}(\\.[a-z][A-Za-z]{0,8}|\\[[0-9]\\])?")
            .prop_map(|path| (json!({"field": path}), None, vec![])),
        1 => any::<String>().prop_map(|path| (json!({"field": path}), None, vec![])),
        1 => json_value().prop_map(|v| (v, None, vec![])),
    ]
}

fn error_body() -> impl Strategy<Value = (String, Vec<&'static str>, Vec<String>)> {
    (
        prop::collection::vec(error_item(), 0..5),
        marker(),
        prop_oneof![Just(None), json_value().prop_map(Some)],
    )
        .prop_map(|(items, m, weird_errors)| {
            let mut known = Vec::new();
            let mut markers = vec![m.clone()];
            let mut errors = Vec::new();
            for (item, request, planted) in items {
                errors.push(item);
                known.extend(request);
                markers.extend(planted);
            }
            let errors = match weird_errors {
                // `errors` that is not a list names nothing.
                Some(weird) if !weird.is_array() => {
                    known.clear();
                    weird
                }
                _ => Value::Array(errors),
            };
            let body = json!({"code": "VALIDATION_ERROR", "message": format!("{m} rejected"), "errors": errors});
            (body.to_string(), known, markers)
        })
}

/// A `400` as the client turns it into the caller's error, for a submit blamed on `fallback`.
fn rejection(body: &[u8], fallback: &str) -> Error {
    UpstreamError::from_answer(400, None, body).into_domain(CallKind::Submit, fallback)
}

fn check_rejection(e: &Error, fallback: &str) {
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(e.reason, Reason::UpstreamRejectedFields);
    let violations = e.field_violations();
    assert!(!violations.is_empty());
    for (i, v) in violations.iter().enumerate() {
        assert!(!v.field.is_empty() && !v.description.is_empty(), "{v:?}");
        assert!(
            v.field == fallback
                || v.field.starts_with("kyc.")
                || TOP_LEVEL_FIELDS.contains(&v.field.as_str()),
            "{:?}",
            v.field
        );
        assert!(
            violations[..i].iter().all(|w| w.field != v.field),
            "{:?} twice",
            v.field
        );
    }
}

/// A token lifetime as ConnectPay might write it: seconds as a number or a string, or nonsense.
fn lifetime() -> impl Strategy<Value = (Option<Value>, Option<f64>)> {
    prop_oneof![
        (0u64..1_000_000_000).prop_map(|s| (Some(json!(s)), Some(s as f64))),
        (0u64..1_000_000_000).prop_map(|s| (Some(json!(s.to_string())), Some(s as f64))),
        (0u32..1_000_000)
            .prop_map(|s| (Some(json!(f64::from(s) + 0.25)), Some(f64::from(s) + 0.25))),
        (i64::MIN..0).prop_map(|s| (Some(json!(s)), None)),
        (i64::MIN..0).prop_map(|s| (Some(json!(s.to_string())), None)),
        // Beyond any plausible lifetime, up to what would overflow a clock (or a `Duration`).
        prop::sample::select(&[1e12, 1e19, 1.8e19, 1e300, f64::MAX][..])
            .prop_map(|s| (Some(json!(s)), None)),
        prop::sample::select(
            &[
                "1e400",
                "NaN",
                "inf",
                "-inf",
                "1e300",
                "18446744073709551616",
                "0x10",
                ""
            ][..]
        )
        .prop_map(|s| (Some(json!(s)), None)),
        json_value().prop_map(|v| (Some(v), None)),
        Just((None, None)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rejections_of_arbitrary_bytes_name_request_fields(body in bytes()) {
        let _ = ErrorAnswer::parse(&body);
        for fallback in ["kyc", "session_id"] {
            check_rejection(&rejection(&body, fallback), fallback);
        }
    }

    #[test]
    fn rejections_of_arbitrary_json_name_request_fields(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        let parsed = ErrorAnswer::parse(&body);
        if !value.is_object() {
            prop_assert!(parsed.code.is_none() && parsed.error.is_none() && parsed.errors.is_empty());
        }
        for fallback in ["kyc", "session_id"] {
            check_rejection(&rejection(&body, fallback), fallback);
        }
    }

    #[test]
    fn rejections_name_fields_by_path_and_quote_nothing((body, known, markers) in error_body()) {
        let e = rejection(body.as_bytes(), "kyc");
        check_rejection(&e, "kyc");
        let fields: BTreeSet<&str> = e.field_violations().iter().map(|v| v.field.as_str()).collect();
        for request in known {
            prop_assert!(fields.contains(request), "{request} missing from {fields:?}");
        }
        assert_quotes_none(&e, &markers);
    }

    #[test]
    fn token_lifetimes_are_read_or_ignored_never_overflow(
        (access, expected_access) in lifetime(),
        (refresh, expected_refresh) in lifetime(),
        access_token in marker(),
    ) {
        let mut body = json!({"access_token": access_token, "refresh_token": "r", "token_type": "Bearer"});
        if let Some(access) = access {
            body["expires_in"] = access;
        }
        if let Some(refresh) = refresh {
            body["refresh_token_expires_in"] = refresh;
        }
        let answer: TokenAnswer = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        for (got, expected) in [
            (answer.expires_in, expected_access),
            (answer.refresh_token_expires_in, expected_refresh),
        ] {
            if let Some(seconds) = expected {
                prop_assert_eq!(got, Some(Duration::from_secs_f64(seconds)));
            }
            if let Some(ttl) = got {
                prop_assert!(SystemTime::now().checked_add(ttl).is_some(), "{ttl:?}");
            }
        }
    }

    #[test]
    fn token_answers_of_arbitrary_bytes_never_panic(body in bytes()) {
        if let Ok(answer) = serde_json::from_slice::<TokenAnswer>(&body) {
            for ttl in [answer.expires_in, answer.refresh_token_expires_in].into_iter().flatten() {
                prop_assert!(SystemTime::now().checked_add(ttl).is_some());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Webhook bodies
// ---------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------
// Proto → KYC
// ---------------------------------------------------------------------------------------------------------

/// The characters a PEP position may not contain, as the API documents them (`kyc.proto`).
const FORBIDDEN_IN_POSITION: &str = "~!@#$%^*()_+={}[]|:;\",<>/?";

/// Officially assigned ISO 3166-1 alpha-2 codes (a sample), and codes that are not.
const COUNTRIES: &[&str] = &[
    "LT", "LV", "EE", "PL", "DE", "FR", "GB", "IE", "US", "CA", "ES", "PT", "IT", "NL", "BE", "SE",
    "FI", "NO", "DK", "CH", "AT", "CZ", "UA", "JP", "AU", "NZ", "BR", "ZA", "SG", "AE",
];
const NOT_COUNTRIES: &[&str] = &[
    "XX", "ZZ", "AA", "EU", "UK", "QZ", "LTU", "L", "L1", "ŁT", "1T",
];

/// The modelled keys of ConnectPay's `person`, which extra fields may not replace (in any casing).
const MODELLED_PERSON_KEYS: &[&str] = &["Id", "isUbo", "pep", "address", "accountPurposes"];

/// Text for a field of `min..=max` characters: fitting, carrying a marker, too short, too long, empty,
/// blank, or arbitrary (control characters included).
fn text(min: usize, max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        3 => regex(&format!("\\PC{{{min},{max}}}")),
        2 => (marker(), regex(&format!("[a-z .'-]{{0,{}}}", max.saturating_sub(12)))).prop_map(|(m, rest)| format!("{m}{rest}")),
        1 => regex(&format!("\\PC{{0,{}}}", min.saturating_sub(1))),
        1 => (marker(), regex(&format!("\\PC{{{},{}}}", max.saturating_sub(11), max + 20))).prop_map(|(m, rest)| format!("{m}{rest}")),
        1 => regex("[ \\t\\n]{1,4}"),
        1 => any::<String>(),
    ]
    .boxed()
}

fn fits(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.chars().count())
}

fn position() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => regex("[a-zA-Z ąčęėįšųūžĄŠ.'&-]{1,100}"),
        2 => (marker(), regex("( [a-z]{1,10}){0,3}")).prop_map(|(m, rest)| format!("{m}{rest}")),
        1 => (marker(), 0u8..10).prop_map(|(m, d)| format!("{m} {d}")),
        1 => (marker(), prop::sample::select(FORBIDDEN_IN_POSITION.chars().collect::<Vec<_>>())).prop_map(|(m, c)| format!("{m}{c}")),
        1 => (marker(), 89usize..120).prop_map(|(m, n)| format!("{m}{}", "a".repeat(n))),
        1 => any::<String>(),
    ]
    .boxed()
}

fn position_fits(value: &str) -> bool {
    fits(value, 1, 100)
        && !value
            .chars()
            .any(|c| c.is_ascii_digit() || FORBIDDEN_IN_POSITION.contains(c))
}

fn country_code() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (prop::sample::select(COUNTRIES), any::<(bool, bool)>()).prop_map(|(code, (a, b))| {
            code.chars()
                .zip([a, b])
                .map(|(c, lower)| if lower { c.to_ascii_lowercase() } else { c })
                .collect()
        }),
        1 => prop::sample::select(NOT_COUNTRIES).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => marker(),
        1 => any::<String>().prop_filter("not two letters", |s| !(s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()))),
    ]
    .boxed()
}

fn struct_key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => regex("[a-z][a-zA-Z]{0,7}"),
        1 => prop::sample::select(MODELLED_PERSON_KEYS).prop_map(str::to_owned),
        1 => prop::sample::select(&["isubo", "ISUBO", "Pep", "ADDRESS", "id", "accountpurposes"][..]).prop_map(str::to_owned),
        1 => regex("[ \\t\\n\u{3000}]{0,3}"),
        1 => any::<String>().prop_filter("no marker", |k| !k.to_lowercase().contains("zq")),
    ]
    .boxed()
}

/// A `google.protobuf.Value`, nested, with a non-finite number now and then if `non_finite`.
fn pb_value(non_finite: bool) -> BoxedStrategy<prost_types::Value> {
    let number = if non_finite {
        prop_oneof![
            6 => finite(),
            1 => prop::sample::select(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN][..]),
        ]
        .boxed()
    } else {
        finite().boxed()
    };
    let leaf = prop_oneof![
        Just(None),
        Just(Some(Kind::NullValue(0))),
        any::<bool>().prop_map(|b| Some(Kind::BoolValue(b))),
        number.prop_map(|n| Some(Kind::NumberValue(n))),
        marker().prop_map(|s| Some(Kind::StringValue(s))),
        any::<String>().prop_map(|s| Some(Kind::StringValue(s))),
    ]
    .prop_map(|kind| prost_types::Value { kind });
    leaf.prop_recursive(5, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|values| Some(Kind::ListValue(prost_types::ListValue { values }))),
            prop::collection::btree_map(struct_key(), inner, 0..4)
                .prop_map(|fields| Some(Kind::StructValue(prost_types::Struct { fields }))),
        ]
        .prop_map(|kind| prost_types::Value { kind })
    })
    .boxed()
}

fn pb_struct(non_finite: bool) -> BoxedStrategy<prost_types::Struct> {
    prop::collection::btree_map(struct_key(), pb_value(non_finite), 0..5)
        .prop_map(|fields| prost_types::Struct { fields })
        .boxed()
}

/// Any `PersonalKyc`: every field present or not, fitting the rules or not.
fn any_kyc() -> impl Strategy<Value = pb::PersonalKyc> {
    let pep = prop::option::weighted(
        0.9,
        (prop::option::weighted(0.9, any::<bool>()), position()),
    )
    .prop_map(|pep| pep.map(|(is_pep, position)| pb::Pep { is_pep, position }));
    let address = prop::option::weighted(
        0.9,
        (
            country_code(),
            text(3, 100),
            prop_oneof![Just(String::new()), text(3, 100)],
            text(3, 100),
            text(1, 20),
        ),
    )
    .prop_map(|a| {
        a.map(
            |(country_code, address_line1, address_line2, city, postcode)| pb::Address {
                country_code,
                address_line1,
                address_line2,
                city,
                postcode,
            },
        )
    });
    (
        prop::option::weighted(0.9, any::<bool>()),
        pep,
        address,
        prop::collection::vec(text(1, 100), 0..4),
        prop::option::weighted(0.5, any::<bool>().prop_flat_map(pb_struct)),
    )
        .prop_map(
            |(is_ubo, pep, address, account_purposes, additional_fields)| pb::PersonalKyc {
                is_ubo,
                pep,
                address,
                account_purposes,
                additional_fields,
            },
        )
}

/// A `PersonalKyc` that fits every documented rule (its extra fields may still clash with modelled ones).
fn valid_kyc() -> impl Strategy<Value = pb::PersonalKyc> {
    let fitting = |min: usize, max: usize| {
        prop_oneof![
            regex(&format!("\\PC{{{min},{max}}}")),
            (marker(), regex(&format!("[a-z .'-]{{0,{}}}", max - 12)))
                .prop_map(|(m, rest)| format!("{m}{rest}")),
        ]
        .prop_filter("fits", move |s| fits(s, min, max))
    };
    let position = prop_oneof![regex("[a-zA-Z ąčęėįšųūžĄŠ.'&-]{1,100}"), marker(),];
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of(position),
        country_code().prop_filter("a country", |c| {
            COUNTRIES.contains(&c.to_ascii_uppercase().as_str())
        }),
        (
            fitting(3, 100),
            prop::option::of(fitting(3, 100)),
            fitting(3, 100),
            fitting(1, 20),
        ),
        prop::collection::vec(fitting(1, 100), 0..4),
        prop::option::of(pb_struct(false)),
    )
        .prop_map(
            |(
                is_ubo,
                is_pep,
                position,
                country_code,
                (line1, line2, city, postcode),
                purposes,
                extra,
            )| {
                // A PEP must state the position; anyone may.
                let position = position
                    .or(is_pep.then(|| "Minister".to_owned()))
                    .unwrap_or_default();
                let extra = extra.map(|mut s| {
                    s.fields.retain(|k, _| !k.trim().is_empty());
                    s
                });
                pb::PersonalKyc {
                    is_ubo: Some(is_ubo),
                    pep: Some(pb::Pep {
                        is_pep: Some(is_pep),
                        position,
                    }),
                    address: Some(pb::Address {
                        country_code,
                        address_line1: line1,
                        address_line2: line2.unwrap_or_default(),
                        city,
                        postcode,
                    }),
                    account_purposes: purposes,
                    additional_fields: extra,
                }
            },
        )
}

/// The violations the documented rules predict for `kyc`, by path, leaving the extra fields' numbers aside.
fn expected_violations(kyc: &pb::PersonalKyc) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fail = |path: &str| {
        out.insert(format!("kyc.{path}"));
    };
    if kyc.is_ubo.is_none() {
        fail("is_ubo");
    }
    match &kyc.pep {
        None => fail("pep"),
        Some(pep) => {
            if pep.is_pep.is_none() {
                fail("pep.is_pep");
            }
            let required = pep.is_pep == Some(true);
            if (pep.position.is_empty() && required)
                || (!pep.position.is_empty() && !position_fits(&pep.position))
            {
                fail("pep.position");
            }
        }
    }
    match &kyc.address {
        None => fail("address"),
        Some(a) => {
            if !COUNTRIES.contains(&a.country_code.to_ascii_uppercase().as_str()) {
                fail("address.country_code");
            }
            if !fits(&a.address_line1, 3, 100) {
                fail("address.address_line1");
            }
            if !a.address_line2.is_empty() && !fits(&a.address_line2, 3, 100) {
                fail("address.address_line2");
            }
            if !fits(&a.city, 3, 100) {
                fail("address.city");
            }
            if !fits(&a.postcode, 1, 20) {
                fail("address.postcode");
            }
        }
    }
    for (i, purpose) in kyc.account_purposes.iter().enumerate() {
        if !fits(purpose, 1, 100) {
            fail(&format!("account_purposes[{i}]"));
        }
    }
    if kyc
        .additional_fields
        .as_ref()
        .is_some_and(|s| s.fields.keys().any(|k| k.trim().is_empty()))
    {
        fail("additional_fields");
    }
    out
}

/// The paths of the non-finite numbers among the extra fields.
fn non_finite_paths(kyc: &pb::PersonalKyc) -> BTreeSet<String> {
    fn walk(value: &prost_types::Value, path: String, out: &mut BTreeSet<String>) {
        match &value.kind {
            Some(Kind::NumberValue(n)) if !n.is_finite() => {
                out.insert(path);
            }
            Some(Kind::StructValue(s)) => {
                for (k, v) in &s.fields {
                    walk(v, format!("{path}.{k}"), out);
                }
            }
            Some(Kind::ListValue(l)) => {
                for (i, v) in l.values.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for (k, v) in kyc.additional_fields.iter().flat_map(|s| &s.fields) {
        walk(v, format!("kyc.additional_fields.{k}"), &mut out);
    }
    out
}

/// Every marker planted in `kyc`'s values (never in its field names).
fn kyc_markers(kyc: &pb::PersonalKyc) -> Vec<String> {
    fn walk(value: &prost_types::Value, out: &mut Vec<String>) {
        match &value.kind {
            Some(Kind::StringValue(s)) => out.push(s.clone()),
            Some(Kind::StructValue(s)) => s.fields.values().for_each(|v| walk(v, out)),
            Some(Kind::ListValue(l)) => l.values.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut values: Vec<String> = kyc.account_purposes.clone();
    if let Some(pep) = &kyc.pep {
        values.push(pep.position.clone());
    }
    if let Some(a) = &kyc.address {
        values.extend(
            [
                &a.country_code,
                &a.address_line1,
                &a.address_line2,
                &a.city,
                &a.postcode,
            ]
            .map(String::clone),
        );
    }
    for v in kyc.additional_fields.iter().flat_map(|s| s.fields.values()) {
        walk(v, &mut values);
    }
    let mut markers = Vec::new();
    for value in values {
        let lower = value.to_lowercase();
        let mut rest = lower.as_str();
        while let Some(at) = rest.find("zq") {
            let candidate: String = rest[at..].chars().take(12).collect();
            if candidate.len() == 12 && candidate[2..].chars().all(|c| c.is_ascii_lowercase()) {
                markers.push(candidate);
            }
            rest = &rest[at + 2..];
        }
    }
    markers
}

/// Whether a JSON value is what the extra field was: same structure, same strings, the same numbers (whole
/// ones up to 2^53 as JSON integers).
fn same(json: &Value, value: &prost_types::Value) -> bool {
    match (&value.kind, json) {
        (None | Some(Kind::NullValue(_)), Value::Null) => true,
        (Some(Kind::BoolValue(b)), Value::Bool(j)) => b == j,
        (Some(Kind::StringValue(s)), Value::String(j)) => s == j,
        (Some(Kind::NumberValue(n)), Value::Number(j)) => {
            let whole = n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0;
            j.as_f64() == Some(*n) && (!whole || j.is_i64())
        }
        (Some(Kind::StructValue(s)), Value::Object(m)) => same_fields(m, s),
        (Some(Kind::ListValue(l)), Value::Array(a)) => {
            l.values.len() == a.len() && l.values.iter().zip(a).all(|(v, j)| same(j, v))
        }
        _ => false,
    }
}

fn same_fields(json: &Map<String, Value>, s: &prost_types::Struct) -> bool {
    json.len() == s.fields.len()
        && s.fields
            .iter()
            .all(|(k, v)| json.get(k).is_some_and(|j| same(j, v)))
}

/// Converts and validates as `InitiateOnboarding` does.
fn convert(kyc: pb::PersonalKyc) -> Result<onboarding_gateway::domain::PersonalKyc, Error> {
    KycInput::try_from(kyc).and_then(|input| input.validate("kyc"))
}

/// What holds of any refusal of KYC data.
fn check_kyc_rejection(e: &Error) {
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(e.reason, Reason::InvalidFields);
    assert!(!e.field_violations().is_empty());
    for v in e.field_violations() {
        assert!(v.field.starts_with("kyc."), "{:?}", v.field);
        assert!(!v.description.is_empty());
    }
}

fn request_bytes(kyc: pb::PersonalKyc) -> Vec<u8> {
    pb::InitiateOnboardingRequest {
        application_id: "a-1".into(),
        request_id: String::new(),
        kyc: Some(kyc),
    }
    .encode_to_vec()
}

/// `InitiateOnboarding`'s reading of a request's bytes, up to the validated KYC data.
fn decode_and_convert(bytes: &[u8]) {
    let kyc = pb::InitiateOnboardingRequest::decode(bytes)
        .ok()
        .and_then(|request| request.kyc);
    if let Some(Err(e)) = kyc.map(convert) {
        check_kyc_rejection(&e);
    }
}

/// `{"a": {"a": … leaf …}}`, `depth` objects deep, as a `Struct`.
fn nested(depth: usize, leaf: f64) -> prost_types::Struct {
    let mut value = prost_types::Value {
        kind: Some(Kind::NumberValue(leaf)),
    };
    for _ in 0..depth - 1 {
        value = prost_types::Value {
            kind: Some(Kind::StructValue(prost_types::Struct {
                fields: BTreeMap::from([("a".to_owned(), value)]),
            })),
        };
    }
    prost_types::Struct {
        fields: BTreeMap::from([("a".to_owned(), value)]),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any KYC data: refused exactly for the documented rules it breaks, by path, quoting no value.
    #[test]
    fn kyc_is_refused_exactly_for_the_rules_it_breaks(kyc in any_kyc()) {
        let expected = expected_violations(&kyc);
        let non_finite = non_finite_paths(&kyc);
        let markers = kyc_markers(&kyc);
        match convert(kyc) {
            Ok(_) => prop_assert!(expected.is_empty() && non_finite.is_empty(), "accepted despite {expected:?} {non_finite:?}"),
            Err(e) => {
                check_kyc_rejection(&e);
                assert_quotes_none(&e, &markers);
                let got: BTreeSet<String> = e.field_violations().iter().map(|v| v.field.clone()).collect();
                if non_finite.is_empty() {
                    prop_assert_eq!(got, expected);
                } else {
                    // A number JSON cannot hold stops the conversion at once, naming that number.
                    prop_assert_eq!(e.field_violations().len(), 1);
                    prop_assert!(non_finite.contains(&e.field_violations()[0].field), "{:?} not in {non_finite:?}", e.field_violations());
                }
            }
        }
    }

    /// Valid KYC data is accepted as sent (the country code upper-cased), and ConnectPay's body carries it,
    /// unless an extra field would replace a modelled one.
    #[test]
    fn valid_kyc_is_accepted_and_sent_as_given(kyc in valid_kyc()) {
        let markers = kyc_markers(&kyc);
        let accepted = convert(kyc.clone()).expect("valid KYC data is accepted");
        let (pep, address) = (kyc.pep.as_ref().unwrap(), kyc.address.as_ref().unwrap());
        prop_assert_eq!(Some(accepted.is_ubo), kyc.is_ubo);
        prop_assert_eq!(Some(accepted.pep.is_pep), pep.is_pep);
        prop_assert_eq!(accepted.pep.position.clone().unwrap_or_default(), pep.position.clone());
        prop_assert_eq!(&accepted.address.country_code, &address.country_code.to_uppercase());
        prop_assert_eq!(&accepted.address.address_line1, &address.address_line1);
        prop_assert_eq!(accepted.address.address_line2.clone().unwrap_or_default(), address.address_line2.clone());
        prop_assert_eq!(&accepted.address.city, &address.city);
        prop_assert_eq!(&accepted.address.postcode, &address.postcode);
        prop_assert_eq!(&accepted.account_purposes, &kyc.account_purposes);
        let extra = kyc.additional_fields.clone().unwrap_or_default();
        prop_assert!(same_fields(&accepted.additional_fields, &extra));

        let clashes: BTreeSet<String> = extra
            .fields
            .keys()
            .filter(|k| MODELLED_PERSON_KEYS.iter().any(|m| m.eq_ignore_ascii_case(k)))
            .map(|k| format!("kyc.additional_fields.{k}"))
            .collect();
        match transformers::kyc_body("p-1", &accepted) {
            Err(e) => {
                check_kyc_rejection(&e);
                assert_quotes_none(&e, &markers);
                let got: BTreeSet<String> = e.field_violations().iter().map(|v| v.field.clone()).collect();
                prop_assert_eq!(got, clashes);
            }
            Ok(body) => {
                prop_assert!(clashes.is_empty(), "{clashes:?} replaced modelled fields");
                let person = body["person"].as_object().unwrap();
                prop_assert_eq!(&person["Id"], &json!("p-1"));
                prop_assert_eq!(&person["isUbo"], &json!(kyc.is_ubo.unwrap()));
                prop_assert_eq!(&person["pep"]["isPep"], &json!(pep.is_pep.unwrap()));
                prop_assert_eq!(&person["address"]["countryCode"], &json!(address.country_code.to_uppercase()));
                prop_assert_eq!(&person["address"]["city"], &json!(address.city));
                for (k, v) in &extra.fields {
                    prop_assert!(person.get(k).is_some_and(|j| same(j, v)), "{k:?}");
                }
            }
        }
    }

    #[test]
    fn requests_of_arbitrary_bytes_are_decoded_or_refused(bytes in bytes()) {
        decode_and_convert(&bytes);
    }

    /// A real request with bytes overwritten and cut off: it reaches the conversion far more often than
    /// random bytes do.
    #[test]
    fn damaged_requests_are_decoded_or_refused(
        kyc in any_kyc(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = request_bytes(kyc);
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let keep = cut.index(bytes.len() + 1);
        decode_and_convert(&bytes[..keep]);
        decode_and_convert(&bytes);
    }

    /// Nested extra fields survive the wire and the conversion at any depth the decoder accepts, and a
    /// non-finite number deep inside is named by its full path.
    #[test]
    fn nested_extra_fields_keep_their_depth(depth in 1usize..64, leaf in prop_oneof![finite(), Just(f64::NAN), Just(f64::INFINITY)]) {
        let kyc = pb::PersonalKyc {
            additional_fields: Some(nested(depth, leaf)),
            ..pb::PersonalKyc::default()
        };
        let request = match pb::InitiateOnboardingRequest::decode(request_bytes(kyc).as_slice()) {
            Ok(request) => request,
            Err(e) => {
                // prost stops at 100 nested messages, two of them per level here.
                prop_assert!(depth > 20 && e.to_string().contains("recursion limit"), "depth {depth}: {e}");
                return Ok(());
            }
        };
        let e = convert(request.kyc.unwrap()).unwrap_err();
        check_kyc_rejection(&e);
        let path = format!("kyc.additional_fields{}", ".a".repeat(depth));
        if leaf.is_finite() {
            prop_assert!(e.field_violations().iter().all(|v| !v.field.starts_with("kyc.additional_fields")));
        } else {
            prop_assert_eq!(e.field_violations().iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), vec![path.as_str()]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic cases: hostile extremes, and every input a property or fuzz target once found
// ---------------------------------------------------------------------------------------------------------

/// Nesting far beyond any real body: every parser refuses it (serde_json and prost stop at a fixed depth)
/// instead of overflowing the stack.
#[test]
fn absurd_nesting_is_refused_not_overflowed() {
    const DEPTH: usize = 100_000;
    for (open, close) in [("[", "]"), ("{\"application\":", "}")] {
        let mut body = open.repeat(DEPTH);
        body.push_str("null");
        body.push_str(&close.repeat(DEPTH));
        assert!(matches!(parse::parse(body.as_bytes()), Parsed::Unreadable));
        assert!(read_answer(body.as_bytes()).is_none());
        check_rejection(&rejection(body.as_bytes(), "kyc"), "kyc");
        assert!(serde_json::from_slice::<TokenAnswer>(body.as_bytes()).is_err());
    }

    // A `Struct` nested ten times deeper than prost's limit of 100 messages, written out by hand (encoding
    // it with prost would itself recurse): each level is a `Value` holding a `Struct` holding one map entry
    // `"a"`.
    fn delimited(field: u8, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![field << 3 | 2];
        let mut len = inner.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(inner);
        out
    }
    let mut value = vec![0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]; // Value.number_value = 1.0
    for _ in 0..1_000 {
        let entry = [delimited(1, b"a"), delimited(2, &value)].concat(); // Struct.fields entry
        value = delimited(5, &delimited(1, &entry)); // Value.struct_value
    }
    let structure = delimited(1, &[delimited(1, b"a"), delimited(2, &value)].concat());
    let request = delimited(3, &delimited(5, &structure)); // InitiateOnboardingRequest.kyc.additional_fields
    assert!(pb::InitiateOnboardingRequest::decode(request.as_slice()).is_err());
    decode_and_convert(&request);
}

/// Found by `rejections_name_fields_by_path_and_quote_nothing`: an error entry whose `field` held a path
/// with the rejected value after it became the violation `kyc.pep.is_pep=zqtezqrkktbw`, quoting the value
/// to the caller. Text that is not a path now names the fallback field instead.
#[test]
fn regression_a_field_with_the_value_after_its_path_is_not_quoted() {
    let body =
        br#"{"code":"VALIDATION_ERROR","errors":[{"field":"person.pep.isPep=zqtezqrkktbw"}]}"#;
    let e = rejection(body, "kyc");
    check_rejection(&e, "kyc");
    assert_eq!(
        e.field_violations()
            .iter()
            .map(|v| v.field.as_str())
            .collect::<Vec<_>>(),
        ["kyc"]
    );
    assert_quotes_none(&e, &["zqtezqrkktbw".to_owned()]);
}

/// Found by `notifications_in_the_event_shape_say_what_they_carry`: `data` naming the application id under
/// two spellings (`applicationId` and `applicationid`) is ambiguous, and refused as unreadable rather than
/// read as either one.
#[test]
fn regression_a_field_spelled_twice_in_data_is_refused() {
    let body = br#"{"eventType":"baaspersonidv.approved","data":{"applicationId":0,"applicationid":null}}"#;
    assert!(matches!(parse::parse(body), Parsed::Unreadable));
    // The same body with one spelling is read.
    let body = br#"{"eventType":"baaspersonidv.approved","data":{"applicationId":0}}"#;
    assert!(matches!(parse::parse(body), Parsed::Notification(n) if n.application_id.is_some()));
}

/// The fuzz targets' seed inputs (`fuzz/seeds/`) are what they stand for: a valid and an invalid request, and
/// readable notifications and answers, so that fuzzing starts from inputs that reach deep into each parser.
#[test]
fn the_fuzz_seeds_reach_the_parsers() {
    let valid = include_bytes!("../fuzz/seeds/kyc_proto/valid_request.bin");
    let request = pb::InitiateOnboardingRequest::decode(&valid[..]).unwrap();
    let kyc = convert(request.kyc.unwrap()).unwrap();
    assert_eq!(kyc.address.country_code, "LT");
    assert!(transformers::kyc_body("p-1", &kyc).is_ok());

    let invalid = include_bytes!("../fuzz/seeds/kyc_proto/invalid_request.bin");
    let request = pb::InitiateOnboardingRequest::decode(&invalid[..]).unwrap();
    let e = convert(request.kyc.unwrap()).unwrap_err();
    check_kyc_rejection(&e);
    // The non-finite number stops the conversion first.
    assert_eq!(e.field_violations()[0].field, "kyc.additional_fields.");
    let mut kyc = pb::InitiateOnboardingRequest::decode(&invalid[..])
        .unwrap()
        .kyc
        .unwrap();
    kyc.additional_fields = None;
    let e = convert(kyc).unwrap_err();
    assert!(e.field_violations().len() >= 8, "{e:?}");

    for body in [
        &include_bytes!("../fuzz/seeds/webhook_body/application.json")[..],
        include_bytes!("../fuzz/seeds/webhook_body/event.json"),
        include_bytes!("../fuzz/seeds/webhook_body/idv_event.json"),
    ] {
        assert!(matches!(parse::parse(body), Parsed::Notification(_)));
    }
    assert!(matches!(
        parse::parse(include_bytes!(
            "../fuzz/seeds/webhook_body/other_event.json"
        )),
        Parsed::UnknownEvent(_)
    ));

    for body in [
        &include_bytes!("../fuzz/seeds/connectpay_response/submit_wrapped.json")[..],
        include_bytes!("../fuzz/seeds/connectpay_response/get_flat.json"),
    ] {
        let fields = read_answer(body).unwrap();
        assert!(transformers::application_id(&fields).is_some());
        assert!(transformers::observation(&fields).is_some());
    }
    let e = rejection(
        include_bytes!("../fuzz/seeds/connectpay_response/validation_error.json"),
        "kyc",
    );
    let fields: Vec<&str> = e
        .field_violations()
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "kyc.address.city",
            "kyc.additional_fields.taxResidency[0].countryCode"
        ]
    );
    let token: TokenAnswer = serde_json::from_slice(include_bytes!(
        "../fuzz/seeds/connectpay_response/token.json"
    ))
    .unwrap();
    assert_eq!(token.expires_in, Some(Duration::from_secs(3600)));
}
