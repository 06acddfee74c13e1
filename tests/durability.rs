//! Nothing lost across crashes: the gateway as a separate process, killed with SIGKILL at the worst
//! moments, restarted on the same database; the sandbox as a separate process too.

mod common;

use std::time::Duration;

use common::{
    TestSandbox, application, by_id,
    checker::{StreamRecord, follow, with_retries},
    initiate, next,
    process::GatewayProcess,
    sandbox::AUTH_CODES,
    status_of, submit, valid_kyc, watch,
};
use connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN;
use onboarding_gateway::grpc::pb::{self, ApplicationStatus as S};
use rand::Rng;
use serde_json::json;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

/// Rows in the inbox, read straight from the database file.
async fn inbox_rows(gateway: &GatewayProcess) -> i64 {
    let url = format!("sqlite://{}?mode=ro", gateway.database().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let count = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Every byte the store wrote: the database and its write-ahead log.
#[tokio::test]
async fn a_notification_acknowledged_before_a_crash_reaches_the_watcher_exactly_once_after_restart()
{
    let sandbox = TestSandbox::process(&[]).await;
    // No workers: notifications are recorded and acknowledged, but wait in the inbox.
    let mut gateway =
        GatewayProcess::start(&sandbox, AUTH_CODES[0], &[("WEBHOOK__WORKERS", "0")]).await;
    let mut client = gateway.client();
    let session = "durable-session-marker-7a1f";
    let app = submit(&mut client, "client-crash", session).await.unwrap();
    let id = app.application_id.clone();
    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    let snapshot = next(&mut stream, LONG).await.unwrap();

    // ConnectPay decides and notifies; the gateway answers OK.
    let until = tokio::time::Instant::now() + LONG;
    while !sandbox
        .webhook_log()
        .await
        .iter()
        .any(|d| d["status"] == "IDV_APPROVED" && d["answerBody"] == "OK")
    {
        assert!(
            tokio::time::Instant::now() < until,
            "no acknowledged webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inbox_rows(&gateway).await, 1, "recorded, not yet processed");
    assert!(
        !common::contains_bytes(&common::database_bytes(&gateway.database()), session),
        "the IDV session id is never stored in clear"
    );

    gateway.kill().await;
    gateway.launch(&[]).await;

    let mut record = StreamRecord::default();
    record.take(snapshot);
    let token = record.resuming();
    let mut resumed = watch(&mut gateway.client(), by_id(&id), &token)
        .await
        .unwrap();
    let change = next(&mut resumed, LONG).await.unwrap();
    assert_eq!(status_of(application(&change)), S::IdvApproved);
    record.take(change);
    // Exactly once: nothing more arrives.
    let more = tokio::time::timeout(Duration::from_millis(500), resumed.message()).await;
    assert!(more.is_err(), "a second message: {more:?}");
    record.check();
    assert_eq!(inbox_rows(&gateway).await, 0);
}

/// A burst of deliveries is recorded in shared commits: every one the gateway acknowledged is on disk
/// when it is killed right after, each notification once however many times it was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_acknowledged_notifications_survives_a_crash_each_recorded_once() {
    let sandbox = TestSandbox::process(&[]).await;
    // No workers: what is recorded stays in the inbox.
    let mut gateway =
        GatewayProcess::start(&sandbox, AUTH_CODES[0], &[("WEBHOOK__WORKERS", "0")]).await;
    const NOTIFICATIONS: usize = 300;
    let http = reqwest::Client::new();
    let deliveries = (0..NOTIFICATIONS).flat_map(|n| {
        let body = json!({"application": {
            "applicationId": format!("burst-{n}"),
            "status": "IDV_APPROVED",
        }})
        .to_string();
        // Every notification delivered twice, at the same moment.
        [body.clone(), body]
    });
    let answers = futures::future::join_all(deliveries.map(|body| {
        let request = http
            .post(gateway.webhook_url())
            .header("x-connectpay-webhook-token", DEFAULT_WEBHOOK_TOKEN)
            .header("content-type", "application/json")
            .body(body);
        async move { request.send().await.unwrap().text().await.unwrap() }
    }))
    .await;
    assert!(answers.iter().all(|answer| answer == "OK"), "{answers:?}");

    gateway.kill().await;
    assert_eq!(inbox_rows(&gateway).await, NOTIFICATIONS as i64);
}

/// One application's whole flow through a gateway that may restart at any moment.
async fn flow(
    gateway_client: pb::onboarding_client::OnboardingClient<tonic::transport::Channel>,
    n: usize,
) -> (String, StreamRecord) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let app = with_retries(LONG, |_| {
        let mut client = gateway_client.clone();
        let request_id = request_id.clone();
        async move {
            client
                .submit_idv_session(pb::SubmitIdvSessionRequest {
                    external_reference: format!("chaos-{n}"),
                    session_id: format!("chaos-session-{n}"),
                    provider_id: "ONDATO".into(),
                    request_id,
                })
                .await
                .map(|r| r.into_inner().application.unwrap())
        }
    })
    .await
    .expect("the submit eventually succeeds");
    let id = app.application_id.clone();
    let follower = {
        let (client, id) = (gateway_client.clone(), id.clone());
        tokio::spawn(async move { follow(vec![client], &id, LONG).await })
    };
    // Wait for the IDV decision through reads, then hand over the KYC data.
    let until = tokio::time::Instant::now() + LONG;
    loop {
        let read = with_retries(LONG, |_| {
            let mut client = gateway_client.clone();
            let id = id.clone();
            async move { common::get(&mut client, &id).await }
        })
        .await
        .unwrap();
        if status_of(&read) == S::IdvApproved {
            break;
        }
        assert!(tokio::time::Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut kyc = valid_kyc();
    if n.is_multiple_of(3) {
        kyc.address.as_mut().unwrap().city = "Decline".into();
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    with_retries(LONG, |_| {
        let mut client = gateway_client.clone();
        let (id, kyc, request_id) = (id.clone(), kyc.clone(), request_id.clone());
        async move {
            client
                .initiate_onboarding(pb::InitiateOnboardingRequest {
                    application_id: id,
                    request_id,
                    kyc: Some(kyc),
                })
                .await
                .map(|r| r.into_inner().application.unwrap())
        }
    })
    .await
    .expect("the KYC submit eventually succeeds");
    (id, follower.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_during_fifty_flows_every_application_ends_right_and_every_stream_is_whole()
 {
    // ConnectPay's webhook retries come after a quarter of a second instead of five.
    let sandbox = TestSandbox::process(&["--time-scale", "20"]).await;
    let mut gateway = GatewayProcess::start(
        &sandbox,
        AUTH_CODES[0],
        &[
            ("POLL__IDV_INTERVAL", "1s"),
            ("POLL__REVIEW_INTERVAL", "1s"),
            ("POLL__MAX_INTERVAL", "4s"),
            ("POLL__MAX_REQUESTS_PER_SECOND", "50"),
        ],
    )
    .await;
    let client = gateway.client();
    // Flows start over two seconds, so that kills land in every phase of them.
    let flows: Vec<_> = (0..50)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 * n as u64)).await;
                flow(client, n).await
            })
        })
        .collect();

    let mut rng = rand::rng();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..700))).await;
        gateway.kill().await;
        gateway.launch(&[]).await;
    }

    let mut resumptions = 0;
    for flow in flows {
        let (id, record) = flow.await.unwrap();
        record.check();
        resumptions += record.resumed_from.len();
        let final_status = *record.statuses().last().unwrap();
        let upstream = sandbox.application(&id).await;
        let expected = match upstream["status"].as_str().unwrap() {
            "ACCOUNT_ISSUED" | "APPLICATION_APPROVED" => S::AccountIssued,
            "APPLICATION_DECLINED" => S::ApplicationDeclined,
            other => panic!("the sandbox ended {id} at {other}"),
        };
        assert_eq!(
            final_status,
            expected,
            "{id}: {record:#?}\n{}",
            gateway.logs()
        );
    }
    // The kills did land mid-flow: streams were broken and resumed.
    eprintln!("{resumptions} stream resumptions across the kills");
    assert!(resumptions > 0, "no stream was ever interrupted");
}

#[tokio::test]
async fn with_every_webhook_dropped_the_poller_still_brings_every_application_to_its_end() {
    let sandbox = TestSandbox::process(&[]).await;
    sandbox
        .control_put("webhooks", json!({"mode": "drop"}))
        .await;
    let gateway = GatewayProcess::start(
        &sandbox,
        AUTH_CODES[0],
        &[
            ("POLL__IDV_INTERVAL", "300ms"),
            ("POLL__REVIEW_INTERVAL", "300ms"),
            ("POLL__MAX_INTERVAL", "1s"),
            ("POLL__MAX_REQUESTS_PER_SECOND", "50"),
        ],
    )
    .await;
    let flows: Vec<_> = (0..10)
        .map(|n| tokio::spawn(flow(gateway.client(), n)))
        .collect();
    for flow in flows {
        let (_, record) = flow.await.unwrap();
        record.check();
        assert!(common::checker::is_terminal(
            *record.statuses().last().unwrap()
        ));
    }
    let deliveries = sandbox.webhook_log().await;
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d["error"] == "dropped"),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn a_watcher_resumes_after_a_restart_exactly_where_it_stopped_until_retention_expires_its_token()
 {
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = GatewayProcess::start(&sandbox, AUTH_CODES[0], &[]).await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-resume", "session-ok")
        .await
        .unwrap();
    let id = app.application_id.clone();

    let mut record = StreamRecord::default();
    let mut stream = watch(&mut client, by_id(&id), "").await.unwrap();
    record.take(next(&mut stream, LONG).await.unwrap());
    record.take(next(&mut stream, LONG).await.unwrap());
    assert_eq!(record.statuses(), [S::IdvTokenGenerated, S::IdvApproved]);
    drop(stream);

    gateway.kill().await;
    gateway.launch(&[]).await;
    let mut client = gateway.client();
    let mut kyc = valid_kyc();
    kyc.address.as_mut().unwrap().city = "Review".into();
    initiate(&mut client, &id, kyc).await.unwrap();
    sandbox.set_status(&id, "ACCOUNT_ISSUED").await;

    let token = record.resuming();
    let mut resumed = watch(&mut client, by_id(&id), &token).await.unwrap();
    while let Some(message) = tokio::time::timeout(LONG, resumed.message())
        .await
        .unwrap()
        .unwrap()
    {
        record.take(message);
    }
    record.check();
    assert_eq!(
        record.statuses(),
        [
            S::IdvTokenGenerated,
            S::IdvApproved,
            S::ComplianceReview,
            S::AccountIssued
        ]
    );

    // A short retention deletes the history: the first token has expired, loudly.
    gateway.kill().await;
    gateway
        .launch(&[
            ("RETENTION__EVENTS", "1s"),
            ("RETENTION__CLEANUP_INTERVAL", "200ms"),
        ])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut client = gateway.client();
    let expired = watch(&mut client, by_id(&id), &record.resumed_from[0])
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert_eq!(
        common::reason_and_fields(&expired).0,
        "RESUME_TOKEN_EXPIRED"
    );
    // A new watch still works: the current state, and the end.
    let mut fresh = watch(&mut client, by_id(&id), "").await.unwrap();
    let snapshot = next(&mut fresh, LONG).await.unwrap();
    assert_eq!(status_of(application(&snapshot)), S::AccountIssued);
    assert!(next(&mut fresh, LONG).await.is_none());
}

#[tokio::test]
async fn the_oauth_pair_survives_a_restart_without_a_new_auth_code() {
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = GatewayProcess::start(&sandbox, AUTH_CODES[0], &[]).await;
    let app = submit(
        &mut gateway.client(),
        "client-oauth-restart",
        "session-hold",
    )
    .await
    .unwrap();
    gateway.kill().await;
    // The configured authCode is spent: only the stored pair can work now.
    gateway.launch(&[]).await;
    common::get(&mut gateway.client(), &app.application_id)
        .await
        .expect("the stored pair works");
    let stats = sandbox.stats().await;
    assert_eq!(stats["token"]["authorizationCode"], 1, "{stats}");
    assert_eq!(stats["token"]["invalidGrant"], 0, "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
}

/// Runs an operator command against the gateway's configuration, with `stdin` on standard input.
fn operator(gateway: &GatewayProcess, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
        .arg("--config")
        .arg(gateway.config_path())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_operator_bootstraps_the_oauth_pair_from_an_auth_code_on_standard_input() {
    let sandbox = TestSandbox::process(&[]).await;
    // No authCode in the configuration: the pair comes from the operator.
    let mut gateway = GatewayProcess::prepare(&sandbox, "");
    let (code, out, _) = operator(&gateway, &["oauth", "status"], "");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no OAuth pair stored"), "{out}");

    let auth_code = sandbox.mint_auth_code().await;
    let (code, out, err) = operator(&gateway, &["oauth", "bootstrap"], &format!("{auth_code}\n"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the refresh token lasts 29d 23h")
            || out.contains("the refresh token lasts 30d"),
        "{out}"
    );
    assert!(
        !out.contains(&auth_code) && !err.contains(&auth_code),
        "the code is never echoed"
    );
    // Once a pair is held, an authCode is refused rather than replayed over it.
    let another = sandbox.mint_auth_code().await;
    let (code, _, err) = operator(&gateway, &["oauth", "bootstrap"], &format!("{another}\n"));
    assert_eq!(code, 3, "{err}");
    let (code, out, _) = operator(&gateway, &["oauth", "status"], "");
    assert_eq!(code, 0);
    assert!(out.contains("refresh token expires in"), "{out}");

    gateway.launch(&[]).await;
    submit(&mut gateway.client(), "client-bootstrap", "session-hold")
        .await
        .expect("the stored pair works");
    let stats = sandbox.stats().await;
    assert_eq!(stats["token"]["authorizationCode"], 1, "{stats}");
}

/// One gateway serves a SQLite database: a second `serve` on the same file (two pods on one volume)
/// refuses to start, before migrating or taking over anything, while operator commands still work beside
/// the first; once the first is killed, the operating system has released its lock and a new one starts.
#[tokio::test]
async fn a_second_gateway_on_the_same_sqlite_database_refuses_to_start() {
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = GatewayProcess::start(&sandbox, AUTH_CODES[0], &[]).await;
    let app = submit(&mut gateway.client(), "client-lock", "session-hold")
        .await
        .unwrap();

    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
        .arg("--config")
        .arg(gateway.config_path())
        .arg("serve")
        .env_remove("RUST_LOG")
        .env("ONBOARDING_GATEWAY_GRPC__LISTEN", "127.0.0.1:0")
        .env("ONBOARDING_GATEWAY_WEBHOOK__LISTEN", "127.0.0.1:0")
        .env("ONBOARDING_GATEWAY_ADMIN__LISTEN", "127.0.0.1:0")
        .kill_on_drop(true)
        .output();
    let second = tokio::time::timeout(std::time::Duration::from_secs(20), second)
        .await
        .expect("the second gateway stops at once")
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another gateway"), "{stderr}");

    let (code, stdout, stderr) = operator(&gateway, &["inbox"], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    common::get(&mut gateway.client(), &app.application_id)
        .await
        .expect("the first gateway serves on");

    gateway.kill().await;
    gateway.launch(&[]).await;
    common::get(&mut gateway.client(), &app.application_id)
        .await
        .expect("a new gateway took over the released database");
}
