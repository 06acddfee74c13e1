//! A notification body of arbitrary bytes, as the webhook receiver hands it to the parser.
//!
//! Fails on a panic, and on a result that breaks what the rest of the gateway relies on: a notification
//! names an application or a person, identifiers are bounded, the claimed status is the mapping of the
//! raw one, and an unknown event type is logged only in its short printable form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use onboarding_gateway::{connectpay::transformers::status_from_wire, domain::ApplicationId};

// `webhook::parse` is private to the library, so its source is compiled here as it stands; it addresses its
// neighbours as `crate::…`, which these re-exports resolve to the library's own items.
#[path = "../../src/webhook/parse.rs"]
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

use parse::{Parsed, parse};

fuzz_target!(|body: &[u8]| {
    match parse(body) {
        Parsed::Notification(n) => {
            assert!(n.application_id.is_some() || n.person_id.is_some());
            if let Some(id) = &n.application_id {
                // A notification's id is one the GET path could have named.
                assert_eq!(ApplicationId::parse(id.as_str()).as_ref(), Some(id));
            }
            if let Some(event_id) = &n.event_id {
                assert!(event_id.chars().count() <= 128);
            }
            if let Some(claimed) = &n.claimed {
                assert!(!claimed.upstream_status.trim().is_empty());
                assert_eq!(claimed.status, status_from_wire(&claimed.upstream_status));
                assert_eq!(claimed.person_id, n.person_id);
            }
        }
        Parsed::UnknownEvent(shown) => {
            assert!(shown.chars().count() <= 64);
            assert!(shown.chars().all(|c| c.is_ascii_graphic()));
        }
        Parsed::Unreadable => {}
    }
});
