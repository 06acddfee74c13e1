//! Several replicas on one PostgreSQL database behave as one gateway: real PostgreSQL, two or three
//! gateway processes, the sandbox as its own process. Each test makes its own database and drops it. The
//! shared store's ordering under concurrent writers, without processes: `cluster_store.rs`.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{
    STORE_KEY, TestSandbox, application, by_id,
    checker::{StreamRecord, follow, is_terminal},
    next,
    postgres::TestDatabase,
    process::GatewayProcess,
    replicas::{FAST_POLLS, LONG, decode_token, flow, read_on},
    sandbox::AUTH_CODES,
    status_of, valid_kyc, watch,
};
use connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN;
use onboarding_gateway::grpc::pb::{self, ApplicationStatus as S, watch_applications_response};
use serde_json::json;

#[tokio::test]
async fn a_webhook_received_by_one_replica_reaches_watchers_on_the_others() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &[]).await;
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &[]).await;
    let c = GatewayProcess::start_replica(
        &sandbox,
        AUTH_CODES[2],
        &database.url,
        &[("WATCH__HEARTBEAT_INTERVAL", "200ms")],
    )
    .await;

    // A consumer of every change, on C, from now.
    let mut feed = c
        .client()
        .watch_applications(pb::WatchApplicationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The application is created through A, so ConnectPay notifies A; its watcher is on B.
    let app = common::submit(&mut a.client(), "client-cluster", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();
    let record = tokio::spawn({
        let client = b.client();
        let id = id.clone();
        async move { follow(vec![client], &id, LONG).await }
    });
    let until = tokio::time::Instant::now() + LONG;
    while status_of(&common::get(&mut b.client(), &id).await.unwrap()) != S::IdvApproved {
        assert!(tokio::time::Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::initiate(&mut c.client(), &id, valid_kyc())
        .await
        .unwrap();
    let record = record.await.unwrap();
    record.check();
    assert_eq!(record.statuses().last(), Some(&S::AccountIssued));

    // C's feed saw the same versions, in order.
    let mut versions = Vec::new();
    while versions.last() != Some(&S::AccountIssued) {
        let message = tokio::time::timeout(LONG, feed.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(watch_applications_response::Event::Change(app)) = message.event {
            assert_eq!(app.application_id, id);
            versions.push(pb::ApplicationStatus::try_from(app.status).unwrap());
        }
    }
    assert_eq!(versions, record.statuses());
    // Every replica's webhook address was used for its own submits only: A got the notifications.
    assert!(
        sandbox
            .webhook_log()
            .await
            .iter()
            .all(|d| d["answerBody"] == "OK")
    );
}

#[tokio::test]
async fn a_replica_killed_while_holding_inbox_leases_leaves_its_notifications_to_another() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let lease = [("WEBHOOK__LEASE", "2s")];
    let mut a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &lease).await;
    let app = common::submit(&mut a.client(), "client-lease", "session-hold")
        .await
        .unwrap();
    let id = app.application_id.clone();
    let gets_before = sandbox.requests("get_application").await.len();
    // A takes the notification and starts confirming it, but ConnectPay's answer is slow.
    sandbox
        .add_fault(json!({"endpoint": "get_application", "applicationId": id, "count": 1, "action": {"delay": {"ms": 5000}}}))
        .await;
    sandbox.set_status(&id, "IDV_APPROVED").await;
    let until = tokio::time::Instant::now() + LONG;
    while sandbox.requests("get_application").await.len() == gets_before {
        assert!(
            tokio::time::Instant::now() < until,
            "A never took the notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B starts while A holds the lease, then A dies.
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &lease).await;
    let mut stream = watch(&mut b.client(), by_id(&id), "").await.unwrap();
    let mut record = StreamRecord::default();
    record.take(next(&mut stream, LONG).await.unwrap());
    a.kill().await;

    let change = tokio::time::timeout(Duration::from_secs(20), stream.message()).await;
    let Ok(Ok(Some(change))) = change else {
        panic!(
            "B never confirmed A's notification: {change:?}\n{}\n=== A ===\n{}",
            b.logs(),
            a.logs()
        );
    };
    assert_eq!(
        status_of(application(&change)),
        S::IdvApproved,
        "B confirmed A's notification"
    );
    record.take(change);
    let more = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
    assert!(more.is_err(), "nothing twice: {more:?}");
    record.check();
}

#[tokio::test]
async fn every_order_of_duplicated_webhooks_over_two_replicas_ends_at_connectpays_state() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    // Only the test delivers notifications here.
    sandbox
        .control_put("webhooks", json!({"mode": "drop"}))
        .await;
    let a =
        GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &FAST_POLLS).await;
    let b =
        GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &FAST_POLLS).await;
    let http = reqwest::Client::new();
    let real = ["IDV_APPROVED", "COMPLIANCE_REVIEW", "ACCOUNT_ISSUED"];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];

    for (n, order) in orders.iter().enumerate() {
        let app = common::submit(
            &mut a.client(),
            &format!("client-order-{n}"),
            &format!("session-hold-{n}"),
        )
        .await
        .unwrap();
        let id = app.application_id.clone();
        let follower = tokio::spawn({
            let clients = vec![b.client(), a.client()];
            let id = id.clone();
            async move { follow(clients, &id, LONG).await }
        });
        for (step, &claimed) in order.iter().enumerate() {
            // ConnectPay moves on; the notification that arrives names some other step.
            sandbox.set_status(&id, real[step]).await;
            match step {
                // An answer held up while newer news lands...
                1 => {
                    sandbox
                        .add_fault(
                            json!({"endpoint": "get_application", "applicationId": id, "count": 1,
                                              "action": {"delay": {"ms": 400}}}),
                        )
                        .await
                }
                // ...and one that reports an older status after the newest was known.
                2 => {
                    sandbox
                        .add_fault(
                            json!({"endpoint": "get_application", "applicationId": id, "count": 1,
                                              "action": {"stale": {"status": "IDV_APPROVED"}}}),
                        )
                        .await
                }
                _ => {}
            }
            let body =
                json!({"application": {"applicationId": id, "status": real[claimed]}}).to_string();
            let timestamp = format!("2026-11-26T08:00:0{step}.000Z");
            for replica in [&a, &b] {
                let answer = http
                    .post(replica.webhook_url())
                    .header("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN)
                    .header("x-connectpay-timestamp", &timestamp)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.text().await.unwrap(), "OK");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let record = follower.await.unwrap();
        record.check();
        assert_eq!(
            record.statuses().last(),
            Some(&S::AccountIssued),
            "order {order:?}: {record:#?}"
        );
        assert_eq!(sandbox.application(&id).await["status"], "ACCOUNT_ISSUED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_replicas_under_continuous_flows_loses_nothing() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&["--time-scale", "20"]).await;
    let mut replicas = Vec::new();
    for code in &AUTH_CODES[..3] {
        replicas
            .push(GatewayProcess::start_replica(&sandbox, code, &database.url, &FAST_POLLS).await);
    }
    let clients: Vec<_> = replicas.iter().map(GatewayProcess::client).collect();
    let flows: Vec<_> = (0..30)
        .map(|n| {
            // Each flow starts on a different replica and moves on when one goes away.
            let mut clients = clients.clone();
            clients.rotate_left(n % 3);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100 * n as u64)).await;
                flow(clients, n, true).await
            })
        })
        .collect();
    for replica in &mut replicas {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let exit = replica.terminate().await;
        assert!(
            exit.success(),
            "a replica stops cleanly on SIGTERM: {exit}\n{}",
            replica.logs()
        );
        replica.launch(&FAST_POLLS).await;
    }
    let mut resumed = 0;
    for flow in flows {
        let (id, record) = flow.await.unwrap();
        let record = record.unwrap();
        record.check();
        resumed += record.resumed_from.len();
        assert!(is_terminal(*record.statuses().last().unwrap()), "{id}");
    }
    assert!(resumed > 0, "no watch was ever moved to another replica");
}

#[tokio::test]
async fn replicas_forcing_refreshes_at_once_spend_each_refresh_token_exactly_once() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &[]).await;
    // B finds A's pair in the store and never uses its own authCode.
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &[]).await;
    let app = common::submit(&mut a.client(), "client-refresh", "session-hold")
        .await
        .unwrap();
    common::get(&mut b.client(), &app.application_id)
        .await
        .unwrap();
    let before = sandbox.stats().await["token"]["refreshToken"]
        .as_u64()
        .unwrap();

    const ROUNDS: u64 = 15;
    for _ in 0..ROUNDS {
        // ConnectPay stops accepting every access token; both replicas find out at the same moment.
        sandbox.control_post("tokens/expire-access").await;
        let calls: Vec<_> = [a.client(), b.client(), a.client(), b.client()]
            .into_iter()
            .map(|mut client| {
                let id = app.application_id.clone();
                tokio::spawn(async move { common::get(&mut client, &id).await })
            })
            .collect();
        for call in calls {
            call.await
                .unwrap()
                .expect("each call succeeds after one renewal");
        }
    }
    let stats = sandbox.stats().await;
    assert_eq!(
        stats["token"]["refreshToken"].as_u64().unwrap() - before,
        ROUNDS,
        "one refresh per rotation: {stats}"
    );
    assert_eq!(stats["token"]["invalidGrant"], 0, "{stats}");
    assert_eq!(stats["token"]["authorizationCode"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_consumer_resumes_on_another_replica_after_500_flows_and_gets_every_change_once_in_order()
 {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::in_process(|c| {
        c.idv_delay_ms = 20;
        c.review_delay_ms = 40;
    })
    .await;
    let heartbeat = [("WATCH__HEARTBEAT_INTERVAL", "200ms")];
    let a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &heartbeat).await;
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &heartbeat).await;

    // The consumer connects to A, learns its position from a heartbeat, and goes away.
    let mut feed = a
        .client()
        .watch_applications(pb::WatchApplicationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(LONG, feed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        first.event,
        Some(watch_applications_response::Event::Heartbeat(_))
    ));
    drop(feed);

    let clients = vec![a.client(), b.client()];
    let semaphore = Arc::new(tokio::sync::Semaphore::new(25));
    let flows: Vec<_> = (0..500)
        .map(|n| {
            let (clients, semaphore) = (clients.clone(), semaphore.clone());
            tokio::spawn(async move {
                let _slot = semaphore.acquire().await.unwrap();
                flow(clients, n, false).await.0
            })
        })
        .collect();
    let mut ids = Vec::new();
    for flow in flows {
        ids.push(flow.await.unwrap());
    }
    let mut expected: HashMap<String, u64> = HashMap::new();
    for id in &ids {
        expected.insert(id.clone(), read_on(&clients, id).await.version);
    }

    // It resumes on B with its token: every version of every application, each once, in log order.
    let mut feed = b
        .client()
        .watch_applications(pb::WatchApplicationsRequest {
            resume_token: first.resume_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let total: u64 = expected.values().sum();
    let mut last_version: HashMap<String, u64> = HashMap::new();
    let mut position = decode_token(&first.resume_token);
    let mut received = 0;
    while received < total {
        let message = tokio::time::timeout(LONG, feed.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let seq = decode_token(&message.resume_token);
        let Some(watch_applications_response::Event::Change(app)) = message.event else {
            assert_eq!(
                seq, position,
                "a heartbeat's token is the position of the last change"
            );
            continue;
        };
        assert!(seq > position, "log order");
        position = seq;
        let previous = last_version
            .insert(app.application_id.clone(), app.version)
            .unwrap_or(0);
        assert_eq!(
            app.version,
            previous + 1,
            "each version once, in order: {}",
            app.application_id
        );
        received += 1;
    }
    assert_eq!(last_version, expected);
}

#[tokio::test]
async fn migrations_run_as_their_own_step_when_replicas_do_not_run_them() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let env = [
        ("STORE__URL", database.url.as_str()),
        ("STORE__MIGRATE_AT_START", "false"),
    ];
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
            .args(args)
            .env_clear()
            .envs(
                env.iter()
                    .map(|(k, v)| (format!("ONBOARDING_GATEWAY_{k}"), *v)),
            )
            .env("ONBOARDING_GATEWAY_STORE__KEY", STORE_KEY)
            .env("ONBOARDING_GATEWAY_AUTH__ALLOW_UNAUTHENTICATED", "true")
            .env(
                "ONBOARDING_GATEWAY_CONNECTPAY__BASE_URL",
                sandbox.base_url(),
            )
            .env("ONBOARDING_GATEWAY_CONNECTPAY__CLIENT_ID", "x")
            .env("ONBOARDING_GATEWAY_CONNECTPAY__CLIENT_SECRET", "x")
            .env(
                "ONBOARDING_GATEWAY_CONNECTPAY__NOTIFICATION_URL",
                "http://127.0.0.1:9/webhooks/connectpay",
            )
            .env("ONBOARDING_GATEWAY_CONNECTPAY__ALLOW_INSECURE_HTTP", "true")
            .env(
                "ONBOARDING_GATEWAY_WEBHOOK__TOKENS",
                format!("[\"{DEFAULT_WEBHOOK_TOKEN}\"]"),
            )
            .output()
            .unwrap()
    };
    // Without the migrations, a replica that is told not to run them cannot use the store.
    let status = run(&["oauth", "status"]);
    assert!(
        !status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let migrated = run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&migrated.stdout).trim(),
        "migrations applied"
    );
    let again = run(&["migrate"]);
    assert!(again.status.success(), "migrating twice is harmless");
    let status = run(&["oauth", "status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let replica = GatewayProcess::start_replica(
        &sandbox,
        AUTH_CODES[0],
        &database.url,
        &[("STORE__MIGRATE_AT_START", "false")],
    )
    .await;
    common::submit(&mut replica.client(), "client-migrated", "session-hold")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_same_request_id_sent_to_two_replicas_at_once_reaches_connectpay_once() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &[]).await;
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &[]).await;
    // ConnectPay is slow, so both attempts are in flight together.
    sandbox
        .add_fault(json!({"endpoint": "submit_idv", "count": 1, "action": {"delay": {"ms": 500}}}))
        .await;
    let request = pb::SubmitIdvSessionRequest {
        external_reference: "client-twice".into(),
        session_id: "session-twice".into(),
        provider_id: "ONDATO".into(),
        request_id: "the-same-key".into(),
    };
    let (mut ca, mut cb) = (a.client(), b.client());
    let (ra, rb) = tokio::join!(
        ca.submit_idv_session(request.clone()),
        cb.submit_idv_session(request.clone())
    );
    let outcomes = [ra, rb];
    let succeeded: Vec<_> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
    let told_to_retry = outcomes
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.code() == tonic::Code::Aborted))
        .count();
    assert_eq!((succeeded.len(), told_to_retry), (1, 1), "{outcomes:?}");
    assert_eq!(
        sandbox.requests("submit_idv").await.len(),
        1,
        "exactly one upstream call"
    );
    // The loser's retry gets the winner's outcome.
    let first = succeeded[0].get_ref().application.clone().unwrap();
    let retried = b
        .client()
        .submit_idv_session(request)
        .await
        .unwrap()
        .into_inner()
        .application
        .unwrap();
    assert_eq!(retried, first);
}
