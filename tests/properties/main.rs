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
//! each input found that way is kept in `regressions.rs` as a named, deterministic regression test, which
//! says what it guards against better than a file of seeds would.
//!
//! One file per entry point: `answers.rs` (ConnectPay's application answers), `errors.rs` (its error bodies
//! and token answers), `webhook_bodies.rs`, `kyc.rs` (proto → KYC); this file holds what they share.

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

mod answers;
mod errors;
mod kyc;
mod regressions;
mod webhook_bodies;

// What more than one section uses, for each to take with `use super::*`.
use answers::{
    answer_object, documented_status, expected_fields, id_value, plausible_id, read_answer,
    two_spellings,
};
use errors::{check_rejection, rejection};
use kyc::{check_kyc_rejection, convert, decode_and_convert};
