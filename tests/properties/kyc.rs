//! Proto → KYC.

use super::*;

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
pub(super) fn convert(
    kyc: pb::PersonalKyc,
) -> Result<onboarding_gateway::domain::PersonalKyc, Error> {
    KycInput::try_from(kyc).and_then(|input| input.validate("kyc"))
}

/// What holds of any refusal of KYC data.
pub(super) fn check_kyc_rejection(e: &Error) {
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
pub(super) fn decode_and_convert(bytes: &[u8]) {
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
