//! Many watchers at once: 1,000 streams over 100 applications, each flow driven to its end. Every watcher
//! receives every change, and a watcher that goes away leaves nothing behind.

mod common;

use std::time::Duration;

use common::{
    TestGateway, TestSandbox, application, by_id, check_stream, initiate, next, read_to_end,
    sandbox::AUTH_CODES, submit, valid_kyc, watch,
};
use onboarding_gateway::grpc::pb::{ApplicationStatus as S, onboarding_client::OnboardingClient};
use tonic::transport::{Channel, Endpoint};

const APPLICATIONS: usize = 100;
const WATCHERS_PER_APPLICATION: usize = 10;
const CONNECTIONS: usize = 10;

async fn connections(gateway: &TestGateway) -> Vec<OnboardingClient<Channel>> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Endpoint::from_shared(format!("http://{}", gateway.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        clients.push(OnboardingClient::new(channel));
    }
    clients
}

/// Submits held applications (the sandbox decides nothing until told) and returns their ids.
async fn held_applications(gateway: &TestGateway, prefix: &str) -> Vec<String> {
    let mut client = gateway.client();
    let mut ids = Vec::new();
    for i in 0..APPLICATIONS {
        let app = submit(
            &mut client,
            &format!("{prefix}-{i}"),
            &format!("session-hold-{i}"),
        )
        .await
        .unwrap();
        ids.push(app.application_id);
    }
    ids
}

async fn open_streams(gateway: &TestGateway) -> usize {
    gateway.gateway().service().watchers().open_streams()
}

fn watched_applications(gateway: &TestGateway) -> usize {
    gateway
        .gateway()
        .service()
        .watchers()
        .watched_applications()
}

async fn wait_for_streams(gateway: &TestGateway, wanted: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_streams(gateway).await != wanted {
        assert!(
            tokio::time::Instant::now() < until,
            "{} open streams, expected {wanted}",
            open_streams(gateway).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_get_every_change_and_leave_nothing_behind() {
    let sandbox = TestSandbox::in_process(|c| c.review_delay_ms = 200).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let clients = connections(&gateway).await;
    let ids = held_applications(&gateway, "scale").await;

    let mut watchers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for w in 0..WATCHERS_PER_APPLICATION {
            let mut client = clients[(i * WATCHERS_PER_APPLICATION + w) % CONNECTIONS].clone();
            let mut stream = watch(&mut client, by_id(id), "").await.unwrap();
            let snapshot = next(&mut stream, Duration::from_secs(10)).await.unwrap();
            watchers.push((
                id.clone(),
                tokio::spawn(async move {
                    let mut messages = vec![snapshot];
                    messages.extend(read_to_end(&mut stream, Duration::from_secs(60)).await);
                    messages
                }),
            ));
        }
    }
    wait_for_streams(&gateway, APPLICATIONS * WATCHERS_PER_APPLICATION).await;

    // ConnectPay approves every IDV (its webhooks drive the streams), then the KYC data goes in.
    for id in &ids {
        sandbox.set_status(id, "IDV_APPROVED").await;
    }
    let mut client = gateway.client();
    for id in &ids {
        initiate(&mut client, id, valid_kyc()).await.unwrap();
    }

    let mut per_application: std::collections::HashMap<String, Vec<Vec<u64>>> = Default::default();
    for (id, watcher) in watchers {
        let messages = watcher.await.unwrap();
        let statuses = check_stream(&messages, false);
        assert_eq!(statuses.first(), Some(&S::IdvTokenGenerated));
        assert_eq!(statuses.last(), Some(&S::AccountIssued));
        let versions = messages.iter().map(|m| application(m).version).collect();
        per_application.entry(id).or_default().push(versions);
    }
    for (id, seen) in &per_application {
        assert_eq!(seen.len(), WATCHERS_PER_APPLICATION);
        assert!(
            seen.iter().all(|v| v == &seen[0]),
            "{id}: watchers disagree: {seen:?}"
        );
    }
    wait_for_streams(&gateway, 0).await;
    assert_eq!(watched_applications(&gateway), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_vanish_abruptly_are_freed_at_once() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let ids = held_applications(&gateway, "vanish").await;
    let clients = connections(&gateway).await;
    let mut streams = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for w in 0..WATCHERS_PER_APPLICATION {
            let mut client = clients[(i * WATCHERS_PER_APPLICATION + w) % CONNECTIONS].clone();
            streams.push(watch(&mut client, by_id(id), "").await.unwrap());
        }
    }
    wait_for_streams(&gateway, APPLICATIONS * WATCHERS_PER_APPLICATION).await;
    assert_eq!(watched_applications(&gateway), APPLICATIONS);

    // The callers disappear without a word: their connections close under the streams.
    drop(streams);
    drop(clients);
    wait_for_streams(&gateway, 0).await;
    assert_eq!(watched_applications(&gateway), 0);
}
