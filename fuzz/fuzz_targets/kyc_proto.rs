//! Arbitrary bytes as an `InitiateOnboardingRequest` (and as a bare `PersonalKyc`), decoded the way tonic
//! decodes them, then converted and validated the way `InitiateOnboarding` does, and — when accepted —
//! turned into ConnectPay's body.
//!
//! Fails on a panic; on a rejection that is not `INVALID_ARGUMENT` with at least one violation, each under
//! `kyc.` with a non-empty description of printable ASCII (the gateway's fixed texts are, so anything else
//! came from the request); and on an accepted address whose country code is not the upper-cased input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use onboarding_gateway::{
    connectpay::transformers::kyc_body,
    domain::{Error, error::ErrorKind, kyc::KycInput},
    grpc::pb,
};
use prost::Message;

fuzz_target!(|bytes: &[u8]| {
    if let Some(kyc) = pb::InitiateOnboardingRequest::decode(bytes)
        .ok()
        .and_then(|request| request.kyc)
    {
        check(kyc);
    }
    if let Ok(kyc) = pb::PersonalKyc::decode(bytes) {
        check(kyc);
    }
});

fn check(kyc: pb::PersonalKyc) {
    let country_code = kyc
        .address
        .as_ref()
        .map(|a| a.country_code.to_ascii_uppercase());
    match KycInput::try_from(kyc).and_then(|input| input.validate("kyc")) {
        Err(e) => rejection(&e),
        Ok(kyc) => {
            assert_eq!(Some(&kyc.address.country_code), country_code.as_ref());
            match kyc_body("p-1", &kyc) {
                Ok(body) => assert_eq!(
                    body["person"]["address"]["countryCode"].as_str(),
                    Some(kyc.address.country_code.as_str())
                ),
                Err(e) => rejection(&e),
            }
            let _ = kyc.canonical_bytes();
        }
    }
}

fn rejection(e: &Error) {
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let violations = e.field_violations();
    assert!(!violations.is_empty());
    assert!(printable_ascii(&e.to_string()), "{e}");
    for v in violations {
        assert!(v.field.starts_with("kyc."), "{:?}", v.field);
        // The fixed texts are printable ASCII: anything else in a description came from the request.
        assert!(
            !v.description.is_empty() && printable_ascii(&v.description),
            "{:?}",
            v.description
        );
    }
}

fn printable_ascii(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}
