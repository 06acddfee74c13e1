//! Every failure reaches callers as a precise, retry-safe status: the error table row by row, deadlines,
//! the circuit breaker and the retry budget, and admission control. Where requests go: `outbound.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{
    TestGateway, TestSandbox, get, initiate, poll_until, reason_and_fields, sandbox::AUTH_CODES,
    status_of, submit, valid_kyc,
};
use onboarding_gateway::{
    config::Config,
    grpc::pb::{self, ApplicationStatus as S},
};
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// What a caller sees of an error.
#[derive(Debug, PartialEq)]
struct Seen {
    code: Code,
    reason: String,
    fields: Vec<String>,
    retry_delay: Option<Duration>,
    precondition: bool,
}

fn seen(status: &Status) -> Seen {
    let details = status.get_error_details();
    let (reason, fields) = reason_and_fields(status);
    Seen {
        code: status.code(),
        reason,
        fields,
        retry_delay: details.retry_info().and_then(|r| r.retry_delay),
        precondition: details.precondition_failure().is_some(),
    }
}

fn expect(code: Code, reason: &str) -> Seen {
    Seen {
        code,
        reason: reason.into(),
        fields: vec![],
        retry_delay: None,
        precondition: false,
    }
}

/// A gateway with one application in IDV_APPROVED, for each row to break in its own way.
async fn approved(adjust: impl FnOnce(&mut Config)) -> (TestSandbox, TestGateway, String) {
    let sandbox = TestSandbox::process(&[]).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.connectpay.retry.initial_backoff = Duration::from_millis(10);
        adjust(c);
    })
    .await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-errors", "session-ok")
        .await
        .unwrap();
    poll_until(&mut client, &app.application_id, |a| {
        status_of(a) == S::IdvApproved
    })
    .await;
    // ConnectPay's webhook about the approval is confirmed by a GET of the gateway's own, whenever it
    // arrives. Let that finish first, so that the faults and counts of each test (one-shot faults, the
    // breaker's failures, the retry budget) meet the test's calls alone.
    gateway.webhook_confirmed(&sandbox, "IDV_APPROVED").await;
    (sandbox, gateway, app.application_id)
}

async fn fault(
    sandbox: &TestSandbox,
    endpoint: &str,
    id: &str,
    count: u32,
    action: serde_json::Value,
) {
    sandbox
        .add_fault(
            json!({"endpoint": endpoint, "applicationId": id, "count": count, "action": action}),
        )
        .await;
}

#[tokio::test]
async fn every_row_of_the_error_table() {
    // The breaker would open during this run of failures; it has a test of its own.
    let (sandbox, gateway, id) = approved(|c| c.connectpay.breaker.failure_threshold = 0).await;
    let mut client = gateway.client();
    let count = |endpoint: &'static str| {
        let sandbox = &sandbox;
        async move { sandbox.requests(endpoint).await.len() }
    };
    let field_errors = r#"{"code": "VALIDATION_ERROR", "message": "city 'Xx' too short", "errors": [{"field": "person.address.city", "message": "length"}]}"#;

    // ConnectPay 400 with field errors: INVALID_ARGUMENT, the caller's field path, never ConnectPay's text.
    fault(
        &sandbox,
        "initiate_application",
        &id,
        1,
        json!({"fail": {"status": 400, "body": field_errors}}),
    )
    .await;
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(
        seen(&e),
        Seen {
            fields: vec!["kyc.address.city".into()],
            ..expect(Code::InvalidArgument, "UPSTREAM_REJECTED_FIELDS")
        }
    );
    assert!(!e.message().contains("Xx"));
    fault(
        &sandbox,
        "get_application",
        &id,
        1,
        json!({"fail": {"status": 400, "body": field_errors}}),
    )
    .await;
    let e = get(&mut client, &id).await.unwrap_err();
    assert_eq!(
        (e.code(), reason_and_fields(&e).0.as_str()),
        (Code::InvalidArgument, "UPSTREAM_REJECTED_FIELDS")
    );

    // ConnectPay 409: FAILED_PRECONDITION with the precondition that failed.
    for endpoint in ["get_application", "initiate_application"] {
        fault(&sandbox, endpoint, &id, 1, json!({"fail": {"status": 409}})).await;
    }
    let e = get(&mut client, &id).await.unwrap_err();
    assert_eq!(
        seen(&e),
        Seen {
            precondition: true,
            ..expect(Code::FailedPrecondition, "WRONG_APPLICATION_STATE")
        }
    );
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(
        seen(&e),
        Seen {
            precondition: true,
            ..expect(Code::FailedPrecondition, "WRONG_APPLICATION_STATE")
        }
    );

    // ConnectPay 401: the pair is renewed and the call tried once more; refused again, INTERNAL.
    let refreshes = || async {
        sandbox.stats().await["token"]["refreshToken"]
            .as_u64()
            .unwrap()
    };
    let before = refreshes().await;
    fault(
        &sandbox,
        "get_application",
        &id,
        1,
        json!({"fail": {"status": 401}}),
    )
    .await;
    get(&mut client, &id).await.expect("one renewal fixes it");
    fault(
        &sandbox,
        "get_application",
        &id,
        2,
        json!({"fail": {"status": 401}}),
    )
    .await;
    let e = get(&mut client, &id).await.unwrap_err();
    assert_eq!(seen(&e), expect(Code::Internal, "UPSTREAM_AUTH_FAILED"));
    assert_eq!(
        refreshes().await,
        before + 2,
        "one renewal per refused call"
    );

    // ConnectPay 404: NOT_FOUND. (In the IDV stage an application 404 is asked again of the IDV status
    // endpoint, so both must say it.)
    for endpoint in ["get_application", "get_idv", "initiate_application"] {
        let scope = if endpoint == "get_idv" {
            serde_json::Value::Null
        } else {
            json!(id)
        };
        sandbox
            .add_fault(json!({"endpoint": endpoint, "applicationId": scope, "count": 1, "action": {"fail": {"status": 404}}}))
            .await;
    }
    assert_eq!(
        seen(&get(&mut client, &id).await.unwrap_err()),
        expect(Code::NotFound, "UPSTREAM_NOT_FOUND")
    );
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(seen(&e), expect(Code::NotFound, "UPSTREAM_NOT_FOUND"));

    // ConnectPay 429: a read is retried, then UNAVAILABLE; a submit is not, RESOURCE_EXHAUSTED. Both carry
    // ConnectPay's Retry-After.
    let gets = count("get_application").await;
    fault(
        &sandbox,
        "get_application",
        &id,
        3,
        json!({"fail": {"status": 429, "retryAfter": 0}}),
    )
    .await;
    let e = get(&mut client, &id).await.unwrap_err();
    assert_eq!(
        seen(&e),
        Seen {
            retry_delay: Some(Duration::ZERO),
            ..expect(Code::Unavailable, "UPSTREAM_RATE_LIMITED")
        }
    );
    assert_eq!(count("get_application").await - gets, 3, "three attempts");
    let submits = count("initiate_application").await;
    fault(
        &sandbox,
        "initiate_application",
        &id,
        1,
        json!({"fail": {"status": 429, "retryAfter": 7}}),
    )
    .await;
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(
        seen(&e),
        Seen {
            retry_delay: Some(Duration::from_secs(7)),
            ..expect(Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED")
        }
    );
    assert_eq!(count("initiate_application").await - submits, 1);

    // ConnectPay 5xx: a read is retried, then UNAVAILABLE; a submit that may have arrived is UNKNOWN —
    // never UNAVAILABLE, which clients retry by themselves.
    let gets = count("get_application").await;
    fault(
        &sandbox,
        "get_application",
        &id,
        3,
        json!({"fail": {"status": 503}}),
    )
    .await;
    assert_eq!(
        seen(&get(&mut client, &id).await.unwrap_err()),
        expect(Code::Unavailable, "UPSTREAM_UNAVAILABLE")
    );
    assert_eq!(count("get_application").await - gets, 3);
    for status in [500, 502, 503] {
        fault(
            &sandbox,
            "initiate_application",
            &id,
            1,
            json!({"fail": {"status": status}}),
        )
        .await;
        let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
        assert_eq!(
            seen(&e),
            expect(Code::Unknown, "UPSTREAM_OUTCOME_UNKNOWN"),
            "{status}"
        );
    }
    let submits = count("initiate_application").await;
    // The connection breaks after ConnectPay took the KYC data: the outcome is unknown, and it was sent once.
    fault(
        &sandbox,
        "initiate_application",
        &id,
        1,
        json!({"reset": {}}),
    )
    .await;
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(seen(&e), expect(Code::Unknown, "UPSTREAM_OUTCOME_UNKNOWN"));
    assert_eq!(
        count("initiate_application").await - submits,
        1,
        "a submit is never sent twice"
    );
}

#[tokio::test]
async fn timeouts_after_sending_and_connectpay_out_of_reach() {
    let (sandbox, gateway, id) =
        approved(|c| c.connectpay.timeouts.request = Duration::from_millis(400)).await;
    let mut client = gateway.client();
    // No answer within the gateway's own timeout: a read is retried, then UNAVAILABLE; a submit is UNKNOWN.
    fault(&sandbox, "get_application", &id, 3, json!({"hang": {}})).await;
    assert_eq!(
        seen(&get(&mut client, &id).await.unwrap_err()),
        expect(Code::Unavailable, "UPSTREAM_TIMEOUT")
    );
    fault(
        &sandbox,
        "initiate_application",
        &id,
        1,
        json!({"hang": {}}),
    )
    .await;
    let e = initiate(&mut client, &id, valid_kyc()).await.unwrap_err();
    assert_eq!(seen(&e), expect(Code::Unknown, "UPSTREAM_OUTCOME_UNKNOWN"));
    // No answer within the caller's deadline: DEADLINE_EXCEEDED, for a read and for a submit.
    fault(&sandbox, "get_application", &id, 1, json!({"hang": {}})).await;
    let mut request = tonic::Request::new(pb::GetApplicationRequest {
        key: Some(pb::get_application_request::Key::ApplicationId(id.clone())),
    });
    request.set_timeout(Duration::from_millis(250));
    assert_eq!(
        client.get_application(request).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    sandbox
        .add_fault(json!({"endpoint": "submit_idv", "count": 1, "action": {"hang": {}}}))
        .await;
    let mut request = tonic::Request::new(pb::SubmitIdvSessionRequest {
        external_reference: "client-deadline".into(),
        session_id: "session-deadline".into(),
        provider_id: "ONDATO".into(),
        request_id: String::new(),
    });
    request.set_timeout(Duration::from_millis(250));
    assert_eq!(
        client.submit_idv_session(request).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );

    // ConnectPay cannot be reached at all: nothing was sent, so UNAVAILABLE even for a submit.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = TestGateway::start_adjusted(&sandbox, AUTH_CODES[1], "", |c| {
        c.connectpay.base_url = format!("http://{closed}");
        c.connectpay.retry.initial_backoff = Duration::from_millis(10);
    })
    .await;
    let e = submit(&mut unreachable.client(), "client-unreachable", "session-x")
        .await
        .unwrap_err();
    assert_eq!(seen(&e), expect(Code::Unavailable, "UPSTREAM_UNAVAILABLE"));
}

#[tokio::test]
async fn a_300ms_deadline_against_a_2s_connectpay_ends_in_time_and_abandons_the_upstream_request() {
    let (sandbox, gateway, id) = approved(|_| {}).await;
    let mut client = gateway.client();
    fault(
        &sandbox,
        "get_application",
        &id,
        1,
        json!({"delay": {"ms": 2000}}),
    )
    .await;
    let before = sandbox.requests("get_application").await.len();
    let mut request = tonic::Request::new(pb::GetApplicationRequest {
        key: Some(pb::get_application_request::Key::ApplicationId(id.clone())),
    });
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = client.get_application(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert!(took < Duration::from_millis(400), "answered after {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests = sandbox.requests("get_application").await;
    let slow = &requests[before];
    assert_eq!(
        slow["abandoned"], true,
        "the gateway gave up on the upstream request: {slow}"
    );
}

#[tokio::test]
async fn the_breaker_opens_on_an_outage_fails_fast_probes_and_closes_on_recovery() {
    let (sandbox, gateway, id) = approved(|c| {
        c.connectpay.breaker.failure_threshold = 5;
        c.connectpay.breaker.open_for = Duration::from_millis(800);
        c.connectpay.retry.max_attempts = 1;
    })
    .await;
    let mut client = gateway.client();
    let gets = || async { sandbox.requests("get_application").await.len() };
    let before = gets().await;
    sandbox
        .control_put(
            "fault-rates",
            json!({"rate500": 0.0, "rate503": 1.0, "rate429": 0.0, "latencyMs": 0}),
        )
        .await;
    for n in 0..20 {
        let e = get(&mut client, &id).await.unwrap_err();
        let expected = if n < 5 {
            "UPSTREAM_UNAVAILABLE"
        } else {
            "UPSTREAM_CIRCUIT_OPEN"
        };
        assert_eq!(
            (e.code(), reason_and_fields(&e).0.as_str()),
            (Code::Unavailable, expected),
            "call {n}"
        );
        if n >= 5 {
            assert!(
                seen(&e).retry_delay.is_some(),
                "fails fast with a retry delay"
            );
        }
    }
    assert_eq!(
        gets().await - before,
        5,
        "only the calls before it opened reached ConnectPay"
    );

    // Still down: one probe, which fails, and it opens again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        reason_and_fields(&get(&mut client, &id).await.unwrap_err()).0,
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(
        reason_and_fields(&get(&mut client, &id).await.unwrap_err()).0,
        "UPSTREAM_CIRCUIT_OPEN"
    );
    assert_eq!(gets().await - before, 6, "the probe");

    // Back: the next probe succeeds and the breaker closes.
    sandbox
        .control_put(
            "fault-rates",
            json!({"rate500": 0.0, "rate503": 0.0, "rate429": 0.0, "latencyMs": 0}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..5 {
        get(&mut client, &id).await.expect("closed again");
    }
}

#[tokio::test]
async fn the_retry_budget_holds_retries_to_their_share_during_an_outage() {
    let (sandbox, gateway, id) = approved(|c| {
        c.connectpay.breaker.failure_threshold = 0;
        c.connectpay.retry.max_attempts = 5;
        c.connectpay.retry.initial_backoff = Duration::from_millis(1);
        c.connectpay.retry.max_backoff = Duration::from_millis(2);
        c.connectpay.retry.budget_percent = 10;
        c.connectpay.retry.budget_min_per_second = 1;
    })
    .await;
    let mut client = gateway.client();
    let before = sandbox.requests("get_application").await.len();
    sandbox
        .control_put(
            "fault-rates",
            json!({"rate500": 0.0, "rate503": 1.0, "rate429": 0.0, "latencyMs": 0}),
        )
        .await;
    const CALLS: usize = 50;
    for _ in 0..CALLS {
        assert_eq!(
            get(&mut client, &id).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    let sent = sandbox.requests("get_application").await.len() - before;
    // Without a budget: 5 attempts each, 250. With it: the calls, 10 % more, and the per-second reserve.
    let retries = sent - CALLS;
    assert!(
        retries <= CALLS / 10 + 12,
        "{retries} retries for {CALLS} calls"
    );
    assert!(retries > 0, "some retries were allowed");
}

#[tokio::test]
async fn calls_beyond_capacity_are_shed_and_callers_beyond_their_rate_are_told_to_wait() {
    let (sandbox, gateway, id) = approved(|c| c.grpc.max_in_flight = 2).await;
    fault(
        &sandbox,
        "get_application",
        &id,
        3,
        json!({"delay": {"ms": 600}}),
    )
    .await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (mut client, id) = (gateway.client(), id.clone());
            tokio::spawn(async move { get(&mut client, &id).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Health is never shed.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "readiness".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        health.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let mut shed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    seen(&e),
                    Seen {
                        retry_delay: Some(Duration::from_millis(500)),
                        ..expect(Code::Unavailable, "OVERLOADED")
                    }
                );
                shed += 1;
            }
        }
    }
    assert_eq!(shed, 3, "two in flight, three shed");

    let limited = TestGateway::start_adjusted(&sandbox, AUTH_CODES[1], "", |c| {
        c.grpc.rate_limit_per_caller = 2;
        c.grpc.rate_limit_burst = 2;
    })
    .await;
    let mut client = limited.client();
    let probe = pb::GetApplicationRequest {
        key: Some(pb::get_application_request::Key::ApplicationId(
            "none".into(),
        )),
    };
    for _ in 0..2 {
        assert_eq!(
            client
                .get_application(probe.clone())
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
    }
    let e = client.get_application(probe).await.unwrap_err();
    let s = seen(&e);
    assert_eq!(
        (s.code, s.reason.as_str()),
        (Code::ResourceExhausted, "RATE_LIMITED")
    );
    assert!(
        s.retry_delay
            .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(1)),
        "{s:?}"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused_before_anything_else() {
    let (sandbox, gateway, id) = approved(|c| c.grpc.max_message_bytes = 2048).await;
    let mut kyc = valid_kyc();
    kyc.additional_fields = Some(prost_types::Struct {
        fields: [(
            "notes".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("x".repeat(4096))),
            },
        )]
        .into(),
    });
    let e = initiate(&mut gateway.client(), &id, kyc).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(sandbox.requests("initiate_application").await.is_empty());
}
