//! A ConnectPay answer body of arbitrary bytes, read the way the client reads each kind of answer: an
//! application answer (`serde_json` into `ApplicationAnswer`, merged, then the observation and the id), a
//! `400` error body (its field paths become the caller's field violations), and the OAuth token answer.
//!
//! Fails on a panic, and on a result that breaks what callers rely on: an observation's status is the
//! mapping of its trimmed raw string, an id is a plausible one, a rejection is `INVALID_ARGUMENT` with
//! at least one violation whose path names a request field, and token lifetimes can be added to a clock.

#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use onboarding_gateway::{
    connectpay::{
        CallKind, UpstreamError, transformers,
        wire::{ApplicationAnswer, TokenAnswer},
    },
    domain::{Reason, error::ErrorKind},
};

fuzz_target!(|body: &[u8]| {
    // The application answer, as `ConnectPayClient` reads it.
    if let Ok(answer) = serde_json::from_slice::<ApplicationAnswer>(body) {
        let fields = answer.merged();
        for value in [
            &fields.application_id,
            &fields.person_id,
            &fields.status,
            &fields.baas_client_id,
        ]
        .into_iter()
        .flatten()
        {
            assert!(!value.trim().is_empty());
        }
        if let Some(id) = transformers::application_id(&fields) {
            assert_eq!(Some(id.as_str()), fields.application_id.as_deref());
            assert!(id.as_str().len() <= 128 && !id.as_str().chars().any(char::is_control));
        }
        match transformers::observation(&fields) {
            None => assert!(fields.status.is_none()),
            Some(o) => {
                assert_eq!(
                    Some(o.upstream_status.as_str()),
                    fields.status.as_deref().map(str::trim)
                );
                assert_eq!(o.status, transformers::status_from_wire(&o.upstream_status));
            }
        }
    }

    // A `400`: ConnectPay's field paths become the caller's field violations.
    for (kind, fallback) in [(CallKind::Submit, "kyc"), (CallKind::Submit, "session_id")] {
        let e = UpstreamError::from_answer(400, None, body).into_domain(kind, fallback);
        assert_eq!(
            (e.kind, e.reason),
            (ErrorKind::InvalidArgument, Reason::UpstreamRejectedFields)
        );
        let violations = e.field_violations();
        assert!(!violations.is_empty());
        for (i, v) in violations.iter().enumerate() {
            assert!(!v.description.is_empty());
            assert!(
                v.field == fallback
                    || v.field.starts_with("kyc.")
                    || [
                        "application_id",
                        "external_reference",
                        "session_id",
                        "provider_id"
                    ]
                    .contains(&v.field.as_str()),
                "{:?}",
                v.field
            );
            // Field paths only: nothing ConnectPay wrote beyond a path's characters reaches the caller.
            assert!(
                !v.field.chars().any(|c| c.is_control() || c.is_whitespace()),
                "{:?}",
                v.field
            );
            assert!(violations[..i].iter().all(|w| w.field != v.field));
        }
    }

    // The token answer: any lifetime it yields can be added to the clock without overflowing.
    if let Ok(token) = serde_json::from_slice::<TokenAnswer>(body) {
        for ttl in [token.expires_in, token.refresh_token_expires_in]
            .into_iter()
            .flatten()
        {
            assert!(SystemTime::now().checked_add(ttl).is_some());
        }
    }
});
