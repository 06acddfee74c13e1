//! FLOW.md end to end on one gateway: ConnectPay's webhooks, confirmed by its GETs, reach the watchers of
//! `WatchApplication` in order, once each, whatever the delivery does.

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, application, by_id, by_reference, check_stream, get, initiate, next,
    read_to_end, reason_and_fields, sandbox::AUTH_CODES, status_of, submit, valid_kyc, watch,
};
use onboarding_gateway::grpc::pb::{ApplicationStatus as S, watch_application_response::Event};
use serde_json::json;
use tonic::Code;

const SOON: Duration = Duration::from_secs(10);

/// Waits until the sandbox itself reports `status` for the application.
async fn sandbox_reaches(sandbox: &TestSandbox, id: &str, status: &str) {
    let until = tokio::time::Instant::now() + SOON;
    while sandbox.application(id).await["status"] != status {
        assert!(
            tokio::time::Instant::now() < until,
            "the sandbox never reached {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_watch_follows_the_whole_flow_from_webhooks_alone() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let app = submit(&mut client, "client-watch", "session-ok")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    let snapshot = next(&mut stream, SOON).await.unwrap();
    assert!(matches!(snapshot.event, Some(Event::Snapshot(_))));
    assert_eq!(status_of(application(&snapshot)), S::IdvTokenGenerated);
    let approved = next(&mut stream, SOON).await.unwrap();
    assert_eq!(
        status_of(application(&approved)),
        S::IdvApproved,
        "from the IDV webhook"
    );

    initiate(&mut client, &app.application_id, valid_kyc())
        .await
        .unwrap();
    let mut messages = vec![snapshot, approved];
    messages.extend(read_to_end(&mut stream, SOON).await);
    let statuses = check_stream(&messages, false);
    assert_eq!(
        statuses,
        [
            S::IdvTokenGenerated,
            S::IdvApproved,
            S::ComplianceReview,
            S::AccountIssued
        ]
    );
    assert!(
        !application(messages.last().unwrap())
            .baas_client_id
            .is_empty()
    );
    // Every webhook was confirmed with ConnectPay's GET before it was published.
    let deliveries = sandbox.webhook_log().await;
    assert!(deliveries.len() >= 2, "{deliveries:?}");
    assert!(
        deliveries
            .iter()
            .all(|d| d["answerStatus"] == 200 && d["answerBody"] == "OK"),
        "{deliveries:?}"
    );
    assert!(!sandbox.requests("get_application").await.is_empty());
}

#[tokio::test]
async fn the_newer_generation_with_event_bodies_gives_the_same_stream() {
    let sandbox = TestSandbox::process(&["--generation", "newer"]).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let app = submit(&mut client, "client-watch-newer", "session-ok")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_reference("client-watch-newer"), "")
        .await
        .unwrap();
    let mut messages = vec![next(&mut stream, SOON).await.unwrap()];
    let approved = next(&mut stream, SOON).await.unwrap();
    assert_eq!(status_of(application(&approved)), S::IdvApproved);
    messages.push(approved);
    // The IDV event named only the person: the IDV status GET confirmed it.
    assert!(!sandbox.requests("get_idv").await.is_empty());

    initiate(&mut client, &app.application_id, valid_kyc())
        .await
        .unwrap();
    messages.extend(read_to_end(&mut stream, SOON).await);
    let statuses = check_stream(&messages, false);
    assert_eq!(
        &statuses[..3],
        [S::IdvTokenGenerated, S::IdvApproved, S::ApplicationCaptured]
    );
    assert_eq!(statuses.last(), Some(&S::AccountIssued));
    assert_eq!(
        application(messages.last().unwrap()).upstream_status,
        "APPLICATION_APPROVED"
    );
}

#[tokio::test]
async fn a_decline_ends_the_stream_and_a_watch_by_reference_follows_the_next_application() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();

    let first = submit(&mut client, "client-again", "session-decline")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_reference("client-again"), "")
        .await
        .unwrap();
    let statuses = check_stream(&read_to_end(&mut stream, SOON).await, false);
    assert_eq!(statuses, [S::IdvTokenGenerated, S::IdvDeclined]);

    let second = submit(&mut client, "client-again", "session-ok")
        .await
        .unwrap();
    assert_ne!(second.application_id, first.application_id);
    let mut stream = watch(&mut client, by_reference("client-again"), "")
        .await
        .unwrap();
    let snapshot = next(&mut stream, SOON).await.unwrap();
    assert_eq!(application(&snapshot).application_id, second.application_id);
    let approved = next(&mut stream, SOON).await.unwrap();
    assert_eq!(status_of(application(&approved)), S::IdvApproved);

    // A watch of an application that already ended: its snapshot, then the end.
    let mut ended = watch(&mut client, by_id(&first.application_id), "")
        .await
        .unwrap();
    let statuses = check_stream(&read_to_end(&mut ended, SOON).await, false);
    assert_eq!(statuses, [S::IdvDeclined]);
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_reach_the_watcher_once_each_in_order() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    sandbox
        .control_put(
            "webhooks",
            json!({"mode": "deliver", "duplicate": 2, "reorder": true}),
        )
        .await;

    let app = submit(&mut client, "client-shuffled", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    // The IDV approval webhook is held back; ConnectPay has approved all the same.
    sandbox_reaches(&sandbox, &id, "IDV_APPROVED").await;
    initiate(&mut client, &id, valid_kyc()).await.unwrap();
    let statuses = check_stream(&read_to_end(&mut stream, SOON).await, false);
    assert_eq!(
        statuses,
        [S::IdvTokenGenerated, S::ComplianceReview, S::AccountIssued]
    );

    // The approval arrived first, the older news after it, each three times; every one answered OK.
    let until = tokio::time::Instant::now() + SOON;
    let mut deliveries = sandbox.webhook_log().await;
    while deliveries.len() < 9 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        deliveries = sandbox.webhook_log().await;
    }
    let order: Vec<_> = deliveries
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order.first().map(String::as_str),
        Some("ACCOUNT_ISSUED"),
        "{order:?}"
    );
    assert_eq!(deliveries.len(), 9, "{order:?}");
    assert!(deliveries.iter().all(|d| d["answerBody"] == "OK"));
    tokio::time::sleep(Duration::from_millis(200)).await; // a confirmation still running, if any
    // Stale and repeated news costs no GET: at most one for the approval and one more if a duplicate
    // arrived while it ran.
    let confirmations = sandbox.requests("get_application").await.len();
    assert!(
        (1..=2).contains(&confirmations),
        "{confirmations} GETs for one piece of news"
    );
}

#[tokio::test]
async fn a_stale_answer_from_connectpay_never_moves_an_application_back() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-stale", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    next(&mut stream, SOON).await.unwrap();
    next(&mut stream, SOON).await.unwrap(); // IDV_APPROVED
    let mut kyc = valid_kyc();
    kyc.address.as_mut().unwrap().city = "Review".into(); // stays in review until told otherwise
    initiate(&mut client, &id, kyc).await.unwrap();
    assert_eq!(
        status_of(application(&next(&mut stream, SOON).await.unwrap())),
        S::ComplianceReview
    );

    // ConnectPay answers the next reads with an older status.
    sandbox
        .add_fault(
            json!({"endpoint": "get_application", "applicationId": id, "count": 2,
                          "action": {"stale": {"status": "IDV_APPROVED"}}}),
        )
        .await;
    let read = get(&mut client, &id).await.unwrap();
    assert_eq!(status_of(&read), S::ComplianceReview);
    assert_eq!(read.version, 3);
    sandbox.set_status(&id, "ACCOUNT_ISSUED").await; // its webhook's GET is the second stale answer
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(&get(&mut client, &id).await.unwrap()),
        S::AccountIssued
    );
    let rest = check_stream(&read_to_end(&mut stream, SOON).await, true);
    assert_eq!(rest, [S::AccountIssued], "nothing older was ever published");
}

#[tokio::test]
async fn a_resumed_watch_replays_exactly_what_came_after_its_token_and_heartbeats_carry_one() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(
        &sandbox,
        AUTH_CODES[0],
        "[watch]\nheartbeat_interval = \"200ms\"",
    )
    .await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-resume", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();

    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    let snapshot = next(&mut stream, SOON).await.unwrap();
    // The approval, however long it takes on a loaded machine (heartbeats may come first).
    let mut approved = snapshot.clone();
    while matches!(approved.event, Some(Event::Heartbeat(_)))
        || status_of(application(&approved)) != S::IdvApproved
    {
        approved = next(&mut stream, SOON).await.unwrap();
    }
    // Idle: a heartbeat, carrying the position of the last message.
    let heartbeat = next(&mut stream, SOON).await.unwrap();
    assert!(
        matches!(heartbeat.event, Some(Event::Heartbeat(_))),
        "after {snapshot:?} and {approved:?}, not a heartbeat: {heartbeat:?}"
    );
    assert_eq!(heartbeat.resume_token, approved.resume_token);
    drop(stream);

    let mut kyc = valid_kyc();
    kyc.address.as_mut().unwrap().city = "Review".into();
    initiate(&mut client, &id, kyc).await.unwrap();
    sandbox.set_status(&id, "ACCOUNT_ISSUED").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // From the snapshot's token: everything after it, and no snapshot.
    let mut resumed = watch(&mut client, by_id(&id), &snapshot.resume_token)
        .await
        .unwrap();
    let replayed = read_to_end(&mut resumed, SOON).await;
    assert_eq!(
        check_stream(&replayed, true),
        [S::IdvApproved, S::ComplianceReview, S::AccountIssued]
    );
    // From the last token of the ended stream: nothing, and the end.
    let mut done = watch(
        &mut client,
        by_id(&id),
        &replayed.last().unwrap().resume_token,
    )
    .await
    .unwrap();
    assert!(read_to_end(&mut done, SOON).await.is_empty());

    let refused = watch(&mut client, by_id(&id), "not-a-token")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(reason_and_fields(&refused).1, ["resume_token"]);
    let unknown = watch(&mut client, by_id("no-such-application"), "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn a_consumer_that_reads_nothing_for_a_while_then_drains_gets_every_event_in_order() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-sleepy", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    // The whole flow happens while the consumer reads nothing.
    sandbox_reaches(&sandbox, &id, "IDV_APPROVED").await;
    initiate(&mut client, &id, valid_kyc()).await.unwrap();
    sandbox_reaches(&sandbox, &id, "ACCOUNT_ISSUED").await;
    common::poll_until(&mut client, &id, |a| status_of(a) == S::AccountIssued).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let messages = read_to_end(&mut stream, SOON).await;
    let statuses = check_stream(&messages, false);
    assert_eq!(statuses.first(), Some(&S::IdvTokenGenerated));
    assert_eq!(statuses.last(), Some(&S::AccountIssued));
    // Versions 1..=n, each once: every version the gateway recorded.
    assert_eq!(
        application(messages.last().unwrap()).version,
        messages.len() as u64
    );
}
