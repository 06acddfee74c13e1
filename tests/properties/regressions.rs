//! Deterministic cases: hostile extremes, and every input a property or fuzz target once found.

use super::*;

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
    let valid = include_bytes!("../../fuzz/seeds/kyc_proto/valid_request.bin");
    let request = pb::InitiateOnboardingRequest::decode(&valid[..]).unwrap();
    let kyc = convert(request.kyc.unwrap()).unwrap();
    assert_eq!(kyc.address.country_code, "LT");
    assert!(transformers::kyc_body("p-1", &kyc).is_ok());

    let invalid = include_bytes!("../../fuzz/seeds/kyc_proto/invalid_request.bin");
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
        &include_bytes!("../../fuzz/seeds/webhook_body/application.json")[..],
        include_bytes!("../../fuzz/seeds/webhook_body/event.json"),
        include_bytes!("../../fuzz/seeds/webhook_body/idv_event.json"),
    ] {
        assert!(matches!(parse::parse(body), Parsed::Notification(_)));
    }
    assert!(matches!(
        parse::parse(include_bytes!(
            "../../fuzz/seeds/webhook_body/other_event.json"
        )),
        Parsed::UnknownEvent(_)
    ));

    for body in [
        &include_bytes!("../../fuzz/seeds/connectpay_response/submit_wrapped.json")[..],
        include_bytes!("../../fuzz/seeds/connectpay_response/get_flat.json"),
    ] {
        let fields = read_answer(body).unwrap();
        assert!(transformers::application_id(&fields).is_some());
        assert!(transformers::observation(&fields).is_some());
    }
    let e = rejection(
        include_bytes!("../../fuzz/seeds/connectpay_response/validation_error.json"),
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
        "../../fuzz/seeds/connectpay_response/token.json"
    ))
    .unwrap();
    assert_eq!(token.expires_in, Some(Duration::from_secs(3600)));
}
