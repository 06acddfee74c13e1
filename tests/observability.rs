//! What operators see: one trace from the caller through the gateway to ConnectPay, exported over OTLP;
//! an audit record per call; and the operator commands.

mod common;

use std::time::Duration;

use common::{TestSandbox, otlp::Collector, process::GatewayProcess, sandbox::AUTH_CODES};
use onboarding_gateway::grpc::pb;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        a.value.as_ref()?.value.as_ref().map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_trace_runs_from_the_caller_through_the_gateway_to_connectpay() {
    let collector = Collector::default();
    let otlp = collector.start().await;
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = GatewayProcess::prepare(&sandbox, AUTH_CODES[0]);
    gateway.raw_env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{otlp}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    gateway.launch(&[]).await;

    // The caller's own trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(pb::SubmitIdvSessionRequest {
        external_reference: "client-traced".into(),
        session_id: "session-traced".into(),
        provider_id: "ONDATO".into(),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    gateway.client().submit_idv_session(request).await.unwrap();

    // ConnectPay received the same trace.
    let sent = sandbox.requests("submit_idv").await;
    let traceparent = sent[0]["headers"]["traceparent"]
        .as_str()
        .expect("a traceparent went to ConnectPay");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );

    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let (server, client) = loop {
        let spans = collector.spans();
        let in_trace: Vec<&Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let server = in_trace
            .iter()
            .find(|s| s.kind == SpanKind::Server as i32)
            .cloned()
            .cloned();
        let client = in_trace
            .iter()
            .find(|s| s.kind == SpanKind::Client as i32 && s.name == "POST submit_idv")
            .cloned()
            .cloned();
        if let (Some(server), Some(client)) = (server, client) {
            break (server, client);
        }
        assert!(
            tokio::time::Instant::now() < until,
            "spans never arrived: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        server.name,
        "connectpay.onboarding.v1.Onboarding/SubmitIdvSession"
    );
    assert_eq!(
        hex(&server.parent_span_id),
        "00f067aa0ba902b7",
        "the server span continues the caller's"
    );
    assert_eq!(attribute(&server, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(&server, "rpc.service").as_deref(),
        Some("connectpay.onboarding.v1.Onboarding")
    );
    assert_eq!(
        attribute(&server, "rpc.method").as_deref(),
        Some("SubmitIdvSession")
    );
    assert_eq!(
        attribute(&server, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    // ConnectPay's request is this client span's child.
    assert!(
        traceparent.contains(&hex(&client.span_id)),
        "{traceparent} vs {}",
        hex(&client.span_id)
    );
    let spans = collector.spans();
    let mut ancestor = client.parent_span_id.clone();
    while ancestor != server.span_id {
        let parent = spans
            .iter()
            .find(|s| s.span_id == ancestor)
            .expect("the client span descends from the server span");
        ancestor = parent.parent_span_id.clone();
    }

    // ConnectPay's notification: its receipt, and the confirmation linked to it.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = collector.spans();
        let received: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "webhook.receive")
            .collect();
        let confirmed = spans.iter().find(|s| {
            s.name == "webhook.confirm"
                && s.links.iter().any(|l| {
                    received
                        .iter()
                        .any(|r| r.span_id == l.span_id && r.trace_id == l.trace_id)
                })
        });
        if confirmed.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no linked confirmation: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_call_leaves_an_audit_record_without_any_value_the_caller_sent() {
    let sandbox = TestSandbox::process(&[]).await;
    let mut gateway = GatewayProcess::prepare(&sandbox, AUTH_CODES[0]);
    gateway
        .launch(&[("LOG__FORMAT", "json"), ("LOG__LEVEL", "info")])
        .await;
    let mut client = gateway.client();
    let app = common::submit(&mut client, "client-audited", "session-secret-audit-7")
        .await
        .unwrap();
    common::get(&mut client, &app.application_id).await.unwrap();
    let refused = common::get(&mut client, "no-such-application")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = gateway.logs();
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["target"] == "audit")
        .collect();
    let records: Vec<(String, String, String, String)> = audit
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                field("caller"),
                field("rpc"),
                field("application_id"),
                field("outcome"),
            )
        })
        .collect();
    let id = app.application_id.clone();
    assert_eq!(
        records,
        [
            (
                "anonymous".into(),
                "SubmitIdvSession".into(),
                id.clone(),
                "OK".into()
            ),
            ("anonymous".into(), "GetApplication".into(), id, "OK".into()),
            (
                "anonymous".into(),
                "GetApplication".into(),
                "no-such-application".into(),
                "NOT_FOUND".into()
            ),
        ]
    );
    assert_eq!(audit[2]["reason"], "APPLICATION_NOT_FOUND");
    // Each ConnectPay answer is logged with ConnectPay's request id, inside the call's spans.
    let answered: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|r| r["message"] == "ConnectPay answered" && r["endpoint"] == "submit_idv")
        .collect();
    assert_eq!(answered.len(), 1, "{logs}");
    assert!(
        answered[0]["upstream_request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let spans = answered[0]["spans"].as_array().expect("the span list");
    assert!(
        spans.iter().any(|s| s["rpc.method"] == "SubmitIdvSession"),
        "{spans:?}"
    );
    assert!(
        !logs.contains("session-secret-audit-7"),
        "the IDV session id never reaches a log"
    );
}

#[tokio::test]
async fn operators_see_the_inbox_and_the_applications_waiting_longest() {
    let sandbox = TestSandbox::process(&[]).await;
    // Notifications are recorded but not processed, so they wait in the inbox.
    let mut gateway = GatewayProcess::prepare(&sandbox, AUTH_CODES[0]);
    gateway.launch(&[("WEBHOOK__WORKERS", "0")]).await;
    let mut client = gateway.client();
    let first = common::submit(&mut client, "client-waiting-1", "session-hold-1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = common::submit(&mut client, "client-waiting-2", "session-hold-2")
        .await
        .unwrap();
    let approved = common::submit(&mut client, "client-approved", "session-ok")
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sandbox
        .webhook_log()
        .await
        .iter()
        .any(|d| d["answerBody"] == "OK")
    {
        assert!(tokio::time::Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
            .arg("--config")
            .arg(gateway.config_path())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let inbox = run(&["inbox"]);
    assert!(
        inbox.starts_with("1 notification(s) waiting for confirmation; the oldest for"),
        "{inbox}"
    );
    let waiting = run(&["waiting", "--limit", "2"]);
    let lines: Vec<&str> = waiting.lines().collect();
    assert_eq!(lines.len(), 3, "{waiting}");
    assert!(
        lines[1].starts_with(&first.application_id) && lines[1].contains("IDV_TOKEN_GENERATED"),
        "{waiting}"
    );
    assert!(
        lines[2].starts_with(&second.application_id)
            || lines[2].starts_with(&approved.application_id),
        "{waiting}"
    );
}
