use std::time::Duration;

use connectpay_sandbox::{
    DEFAULT_WEBHOOK_TOKEN, DeliveryMode, Mode, ReleaseOrder, SandboxConfig, SetStatus, Status,
    WebhookDelivery,
};
use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::common::{self, Answer, Api, Receiver, eventually, kyc_body, wait_for_status};

#[tokio::test]
async fn every_change_is_posted_with_token_timestamp_and_application_body() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;

    let (id, person) = api.approved(&sandbox, &receiver.url).await;
    let first = receiver.wait_for(1).await.remove(0);
    assert_eq!(
        first.body,
        json!({"application": {"applicationId": id, "personId": person, "status": "IDV_APPROVED"}})
    );
    assert_eq!(
        first.headers["x-connectpay-webhook-token"],
        DEFAULT_WEBHOOK_TOKEN
    );
    assert_eq!(first.headers["content-type"], "application/json");
    let timestamp = first.headers["x-connectpay-timestamp"].to_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-11-26T08:19:14.123Z".len(),
        "{timestamp}"
    );
    assert!(timestamp.ends_with('Z'));
    let at = OffsetDateTime::parse(timestamp, &Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - at).whole_seconds().abs() < 60);

    api.kyc(id, &kyc_body(&person, "Vilnius")).await;
    let received = receiver.wait_for(3).await;
    assert_eq!(
        receiver.statuses(),
        ["IDV_APPROVED", "COMPLIANCE_REVIEW", "ACCOUNT_ISSUED"]
    );
    let baas_client_id = sandbox.application(id).unwrap().baas_client_id.unwrap();
    assert_eq!(
        received[2].body["application"]["baasClientId"],
        json!(baas_client_id)
    );

    let log = eventually("three log entries", || {
        let log = sandbox.webhook_log();
        (log.len() == 3).then_some(log)
    })
    .await;
    for entry in &log {
        assert_eq!(entry.application_id, id);
        assert_eq!((entry.attempt, entry.answer_status), (1, Some(200)));
        assert_eq!(entry.answer_body.as_deref(), Some("OK"));
        assert_eq!(entry.error, None);
    }

    // Changes made through the control interface are announced too, baasClientId rules
    // included.
    let view = sandbox
        .set_status(
            id,
            SetStatus::new(Status::ApplicationApproved).with_baas_client_id(None),
        )
        .unwrap();
    assert_eq!(view.baas_client_id, None);
    let received = receiver.wait_for(4).await;
    assert_eq!(
        received[3].body,
        json!({"application": {"applicationId": id, "personId": person,
                               "status": "APPLICATION_APPROVED"}})
    );
}

#[tokio::test]
async fn newer_generation_posts_events() {
    let sandbox = common::start(SandboxConfig {
        mode: Mode::newer(),
        webhook_token_header: "x-platform-token".into(),
        webhook_token: "T".repeat(36),
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;

    let (id, person) = api.approved(&sandbox, &receiver.url).await;
    api.kyc(id, &kyc_body(&person, "Vilnius")).await;
    wait_for_status(&sandbox, id, Status::ApplicationApproved).await;
    let received = receiver.wait_for(3).await;
    assert_eq!(
        received[0].headers["x-platform-token"],
        "T".repeat(36).as_str()
    );
    let events: Vec<&str> = received
        .iter()
        .map(|r| r.body["eventType"].as_str().unwrap())
        .collect();
    // APPLICATION_CAPTURED has no event and is not delivered.
    assert_eq!(
        events,
        [
            "BaaSPersonIdv.Approved",
            "BaasApplication.ComplianceReview",
            "BaasApplication.ApplicationApproved"
        ]
    );
    assert_eq!(
        received[0].body["data"],
        json!({"personId": person, "status": "IDV_APPROVED"})
    );
    let baas_client_id = sandbox.application(id).unwrap().baas_client_id.unwrap();
    assert_eq!(
        received[2].body["data"],
        json!({"applicationId": id, "personId": person, "status": "APPLICATION_APPROVED",
               "baasClientId": baas_client_id})
    );
    let event_ids: Vec<Uuid> = received
        .iter()
        .map(|r| r.body["eventId"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(event_ids[0] != event_ids[1] && event_ids[1] != event_ids[2]);

    let failures = Receiver::start().await;
    api.submit("declined", &failures.url).await;
    api.submit("expired", &failures.url).await;
    let (declined, person) = api.approved(&sandbox, &failures.url).await;
    api.kyc(declined, &kyc_body(&person, "Decline")).await;
    wait_for_status(&sandbox, declined, Status::ApplicationDeclined).await;
    failures.wait_for(5).await;
    let mut events: Vec<String> = failures
        .received()
        .iter()
        .map(|r| r.body["eventType"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "BaaSPerson.DocExpiry",
            "BaaSPersonIdv.Approved",
            "BaaSPersonIdv.Declined",
            "BaasApplication.ApplicationDeclined",
            "BaasApplication.ComplianceReview"
        ]
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_on_the_scaled_schedule() {
    // 1000×: retries after 5 ms, 5 ms, 30 ms, …
    let sandbox = common::start(SandboxConfig {
        time_scale: 1000.0,
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    receiver.script([
        Answer::new(500, "OK"),
        Answer::new(200, "nope"),
        Answer::new(204, ""),
        Answer::new(200, " ok \n"),
    ]);
    api.approved(&sandbox, &receiver.url).await;
    let received = receiver.wait_for(4).await;
    assert!(received.iter().all(|r| r.status() == "IDV_APPROVED"));
    assert!(received[1].at - received[0].at >= Duration::from_millis(5));
    assert!(received[3].at - received[2].at >= Duration::from_millis(30));

    let log = eventually("four attempts logged", || {
        let log = sandbox.webhook_log();
        (log.len() == 4).then_some(log)
    })
    .await;
    let attempts: Vec<_> = log
        .iter()
        .map(|e| (e.attempt, e.answer_status, e.error.is_none()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500), false),
            (2, Some(200), false),
            (3, Some(204), false),
            (4, Some(200), true)
        ]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn delivery_gives_up_after_six_retries() {
    // 100000×: the whole schedule (5 s … 24 h) takes under a second.
    let sandbox = common::start(SandboxConfig {
        time_scale: 100_000.0,
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    receiver.script(std::iter::repeat_n(Answer::new(503, "busy"), 10));
    api.approved(&sandbox, &receiver.url).await;
    receiver.wait_for(7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 7);
    let log = sandbox.webhook_log();
    assert_eq!(
        log.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(log.iter().all(|e| e.error.is_some()));
    assert_eq!(log[0].answer_body.as_deref(), Some("busy"));
}

#[tokio::test]
async fn slow_or_missing_receivers_fail_the_attempt() {
    let sandbox = common::start(SandboxConfig {
        time_scale: 1000.0,
        webhook_timeout_ms: 100,
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    receiver.script([Answer {
        delay: Duration::from_millis(400),
        ..Answer::new(200, "OK")
    }]);
    let (id, _) = api.approved(&sandbox, &receiver.url).await;
    let log = eventually("a retry after the timeout", || {
        let log: Vec<_> = sandbox
            .webhook_log()
            .into_iter()
            .filter(|e| e.application_id == id)
            .collect();
        (log.len() == 2).then_some(log)
    })
    .await;
    assert_eq!(log[0].error.as_deref(), Some("no answer within 100 ms"));
    assert_eq!(log[0].answer_status, None);
    assert_eq!(log[1].error, None);

    // Nobody listening: the connection error is logged.
    let (closed, _) = api.approved(&sandbox, "http://127.0.0.1:9/hook").await;
    let entry = eventually("a refused delivery", || {
        sandbox
            .webhook_log()
            .into_iter()
            .find(|e| e.application_id == closed)
    })
    .await;
    assert_eq!(entry.answer_status, None);
    assert!(entry.error.is_some());
}

#[tokio::test]
async fn duplicates_repeat_the_same_webhook() {
    let sandbox = common::start(SandboxConfig {
        mode: Mode::newer(),
        ..common::config()
    })
    .await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    let response = api
        .http
        .put(format!("{}/_sandbox/webhooks", api.base))
        .json(&json!({"mode": "deliver", "duplicate": 2, "reorder": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    api.approved(&sandbox, &receiver.url).await;
    let received = receiver.wait_for(3).await;
    assert!(received.iter().all(|r| r.body == received[0].body));
    assert!(
        received.iter().all(|r| r.headers["x-connectpay-timestamp"]
            == received[0].headers["x-connectpay-timestamp"])
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn reorder_delivers_newest_first_at_the_terminal_status() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    sandbox
        .set_webhook_delivery(WebhookDelivery {
            reorder: true,
            ..WebhookDelivery::default()
        })
        .unwrap();
    let (id, person) = api.approved(&sandbox, &receiver.url).await;
    api.kyc(id, &kyc_body(&person, "Vilnius")).await;
    wait_for_status(&sandbox, id, Status::ComplianceReview).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(receiver.received().is_empty());
    receiver.wait_for(3).await;
    assert_eq!(
        receiver.statuses(),
        ["ACCOUNT_ISSUED", "COMPLIANCE_REVIEW", "IDV_APPROVED"]
    );
}

#[tokio::test]
async fn held_webhooks_wait_for_release() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    sandbox
        .set_webhook_delivery(WebhookDelivery {
            mode: DeliveryMode::Hold,
            ..WebhookDelivery::default()
        })
        .unwrap();
    let (id, person) = api.approved(&sandbox, &receiver.url).await;
    api.kyc(id, &kyc_body(&person, "Review")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(receiver.received().is_empty());

    let response = api
        .http
        .post(format!("{}/_sandbox/webhooks/release", api.base))
        .json(&json!({"order": "reverse"}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"released": 2}));
    receiver.wait_for(2).await;
    assert_eq!(receiver.statuses(), ["COMPLIANCE_REVIEW", "IDV_APPROVED"]);

    // Still holding: the next change waits for the next release (FIFO by default over HTTP).
    sandbox
        .set_status(id, SetStatus::new(Status::AccountIssued))
        .unwrap();
    sandbox
        .set_status(id, SetStatus::new(Status::AccountIssued))
        .unwrap();
    let response = api
        .http
        .post(format!("{}/_sandbox/webhooks/release", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"released": 2})
    );
    assert_eq!(sandbox.release_webhooks(ReleaseOrder::Fifo).released, 0);
    receiver.wait_for(4).await;
}

#[tokio::test]
async fn dropped_webhooks_are_logged_and_never_sent() {
    let sandbox = common::start(common::config()).await;
    let api = Api::new(&sandbox).await;
    let receiver = Receiver::start().await;
    sandbox
        .set_webhook_delivery(WebhookDelivery {
            mode: DeliveryMode::Drop,
            ..WebhookDelivery::default()
        })
        .unwrap();
    let (id, _) = api.approved(&sandbox, &receiver.url).await;
    let response = api
        .http
        .get(format!("{}/_sandbox/webhooks", api.base))
        .send()
        .await
        .unwrap();
    let log: Value = response.json().await.unwrap();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["applicationId"], json!(id));
    assert_eq!(log[0]["status"], "IDV_APPROVED");
    assert_eq!(log[0]["attempt"], 0);
    assert_eq!(log[0]["error"], "dropped");
    assert_eq!(log[0]["answerStatus"], Value::Null);
    assert!(log[0]["at"].is_string());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(receiver.received().is_empty());
    assert_eq!(sandbox.release_webhooks(ReleaseOrder::Fifo).released, 0);
}
