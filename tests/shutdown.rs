//! A rollout is invisible except for resumable stream ends: SIGTERM during 200 concurrent calls and 500
//! open watches. Readiness turns off first; calls in flight finish, and every call either succeeds or
//! fails with a code a client may retry; every watch ends with UNAVAILABLE and resumes on the other
//! replica without a gap; the process exits within its grace period.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TestSandbox, by_id, checker::StreamRecord, next, postgres::TestDatabase,
    process::GatewayProcess, sandbox::AUTH_CODES, watch,
};
use onboarding_gateway::grpc::pb::{
    self, ApplicationStatus as S, onboarding_client::OnboardingClient,
};
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const LONG: Duration = Duration::from_secs(60);

async fn connection(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Who produced a failed call's status: the gateway (with its ErrorInfo) or the client's transport.
#[derive(Debug)]
enum Failure {
    FromGateway(Code, String),
    Transport(Code),
    /// Sent on a connection the gateway was closing, after its last `GOAWAY`: never processed, safe to
    /// retry (tonic reports it as `INTERNAL`, "h2 protocol error").
    NeverProcessed,
}

fn failure(status: &tonic::Status) -> Failure {
    use tonic_types::StatusExt;
    match status.get_error_details().error_info() {
        Some(info) => Failure::FromGateway(status.code(), info.reason.clone()),
        None if common::checker::refused_by_goaway(status) => Failure::NeverProcessed,
        None => Failure::Transport(status.code()),
    }
}

async fn health(channel: Channel, service: &str) -> Option<ServingStatus> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_losing_or_double_submitting_anything() {
    let database = TestDatabase::create().await;
    let sandbox = TestSandbox::process(&[]).await;
    let drain = [
        ("SHUTDOWN__DRAIN_DELAY", "1s"),
        ("SHUTDOWN__GRACE_PERIOD", "8s"),
    ];
    let mut a = GatewayProcess::start_replica(&sandbox, AUTH_CODES[0], &database.url, &drain).await;
    let b = GatewayProcess::start_replica(&sandbox, AUTH_CODES[1], &database.url, &drain).await;

    // 100 applications, created through B (so ConnectPay notifies B), held in the IDV stage.
    let created = futures::future::join_all((0..100).map(|n| {
        let mut client = b.client();
        async move {
            let app = common::submit(
                &mut client,
                &format!("drain-{n}"),
                &format!("session-hold-{n}"),
            )
            .await;
            app.unwrap().application_id
        }
    }))
    .await;
    let ids: Vec<String> = created;
    // 500 watches on A, over 10 connections.
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(connection(a.grpc).await);
    }
    let mut watches = Vec::new();
    for (n, id) in ids.iter().cycle().take(500).enumerate() {
        let mut client = OnboardingClient::new(channels[n % 10].clone());
        let mut stream = watch(&mut client, by_id(id), "").await.unwrap();
        let mut record = StreamRecord::default();
        record.take(next(&mut stream, LONG).await.unwrap());
        watches.push((id.clone(), record, stream));
    }

    // 200 callers keep calling A: reads, and keyed submits.
    let stop_calling = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..200)
        .map(|n| {
            let (channel, id, stop) = (
                channels[n % 10].clone(),
                ids[n % 100].clone(),
                stop_calling.clone(),
            );
            tokio::spawn(async move {
                let mut client = OnboardingClient::new(channel);
                let mut outcomes = Vec::new();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let read = common::get(&mut client, &id).await.map(drop);
                    outcomes.push(("read", read.err().map(|e| failure(&e))));
                    let submit = client
                        .submit_idv_session(pb::SubmitIdvSessionRequest {
                            external_reference: format!("drain-caller-{n}-{round}"),
                            session_id: format!("session-hold-caller-{n}-{round}"),
                            provider_id: "ONDATO".into(),
                            request_id: format!("key-{n}-{round}"),
                        })
                        .await
                        .map(drop);
                    outcomes.push(("submit", submit.err().map(|e| failure(&e))));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let probe = connection(a.grpc).await;
    let signalled = Instant::now();
    let terminated = tokio::spawn(async move {
        let status = a.terminate().await;
        (status, signalled.elapsed(), a)
    });
    // Readiness turns off at once; liveness stays on; calls are still taken during the drain delay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        health(probe.clone(), "readiness").await,
        Some(ServingStatus::NotServing)
    );
    assert_eq!(
        health(probe.clone(), "liveness").await,
        Some(ServingStatus::Serving)
    );
    common::get(&mut OnboardingClient::new(probe), &ids[0])
        .await
        .expect("still serving while draining");

    let (status, took, a) = terminated.await.unwrap();
    assert!(status.success(), "clean exit: {status}\n{}", a.logs());
    assert!(
        took < Duration::from_secs(8),
        "exited within the grace period ({took:?})"
    );
    stop_calling.store(true, Ordering::Relaxed);

    // Every call succeeded, or failed in a way a client may retry: the gateway itself answered only
    // UNAVAILABLE (nothing done) or ABORTED (the keyed request still running); everything else was
    // sent after the gateway's last GOAWAY (never processed) or was the client's own transport noticing
    // the connection close. And no session reached ConnectPay twice.
    let mut calls = 0;
    for caller in callers {
        for (kind, outcome) in caller.await.unwrap() {
            calls += 1;
            match outcome {
                None | Some(Failure::NeverProcessed) => {}
                Some(Failure::FromGateway(code, reason)) => assert!(
                    matches!(code, Code::Unavailable | Code::Aborted),
                    "the gateway failed a {kind} with {code:?} {reason}"
                ),
                Some(Failure::Transport(code)) => assert!(
                    matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled),
                    "a {kind} broke with {code:?}"
                ),
            }
        }
    }
    assert!(calls > 400);
    let submitted = sandbox.requests("submit_idv").await;
    let mut sessions: Vec<_> = submitted
        .iter()
        .filter_map(|r| r["body"]["sessionId"].as_str())
        .collect();
    let total = sessions.len();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), total, "no session was submitted twice");

    // Every watch ended with UNAVAILABLE; each resumes on B and follows the next change without a gap.
    let mut resumed = Vec::new();
    let mut on_b = OnboardingClient::new(connection(b.grpc).await);
    for (id, mut record, mut stream) in watches {
        let ended = tokio::time::timeout(LONG, async {
            loop {
                match stream.message().await {
                    Ok(Some(message)) => record.take(message),
                    Ok(None) => return None,
                    Err(status) => return Some(status.code()),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(ended, Some(Code::Unavailable), "{id}");
        let token = record.resuming();
        let stream = watch(&mut on_b, by_id(&id), &token).await.unwrap();
        resumed.push((id, record, stream));
    }
    futures::future::join_all(ids.iter().map(|id| sandbox.set_status(id, "IDV_APPROVED"))).await;
    for (id, mut record, mut stream) in resumed {
        while record.statuses().last() != Some(&S::IdvApproved) {
            let message = next(&mut stream, LONG)
                .await
                .unwrap_or_else(|| panic!("{id} ended early"));
            record.take(message);
        }
        record.check();
    }
}
