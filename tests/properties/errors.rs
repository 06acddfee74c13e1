//! ConnectPay's error bodies and token answers.

use super::*;

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
pub(super) fn rejection(body: &[u8], fallback: &str) -> Error {
    UpstreamError::from_answer(400, None, body).into_domain(CallKind::Submit, fallback)
}

pub(super) fn check_rejection(e: &Error, fallback: &str) {
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
