//! The webhook receiver under attack, over real sockets against a gateway running in this process: every
//! near miss of the token, spoofed forwarding, oversized and trickling bodies, a flood about unknown
//! applications, and a token rotated on disk while connections stay open. What is checked is what a sender
//! and an operator see: the status, whether the notification was recorded (the inbox, the watchers), and
//! what reached ConnectPay (the sandbox's request log).

mod common;

use std::{net::IpAddr, path::Path, time::Duration};

use common::{
    TestGateway, TestSandbox, application, by_id, next,
    sandbox::AUTH_CODES,
    status_of, submit, watch,
    webhooks::{
        Answer, Connection, PATH, TOKEN_HEADER, about_unknown_application, inbox, onboarding_calls,
        post, post_from, post_with_token, request,
    },
};
use connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN;
use onboarding_gateway::grpc::pb::ApplicationStatus as S;
use serde_json::json;

const TOKEN: &[u8] = DEFAULT_WEBHOOK_TOKEN.as_bytes();
/// The second token accepted during a rotation.
const NEXT_TOKEN: &str = "next-webhook-token-0123456789abcdefg";

/// Header names and values, as raw bytes.
type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

fn ok(answer: &Answer) -> bool {
    answer.status == 200 && answer.body == "OK"
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test]
async fn every_near_miss_of_the_token_is_refused_and_records_nothing() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.tokens.push(NEXT_TOKEN.to_owned().into());
    })
    .await;
    let header = TOKEN_HEADER.as_bytes();
    let mut flipped = TOKEN.to_vec();
    let letter = flipped.iter().position(u8::is_ascii_lowercase).unwrap();
    flipped[letter] = flipped[letter].to_ascii_uppercase();
    let mut extended = TOKEN.to_vec();
    extended.push(b'x');
    let mut non_ascii = TOKEN[..TOKEN.len() - 2].to_vec();
    non_ascii.extend_from_slice("ą".as_bytes());
    let mut not_text = TOKEN[..TOKEN.len() - 1].to_vec();
    not_text.push(0xff);
    let upper = TOKEN.to_ascii_uppercase();
    // Far longer than any token, yet within the receiver's header limit: it reaches the comparison.
    let huge = vec![b'a'; 300 * 1024];
    let cases: Vec<(&str, Headers)> = vec![
        ("no token header", vec![]),
        ("empty token", vec![(header, b"")]),
        ("one byte", vec![(header, b"s")]),
        ("one byte of the token", vec![(header, &TOKEN[..1])]),
        ("half the token", vec![(header, &TOKEN[..TOKEN.len() / 2])]),
        (
            "the token but its last byte",
            vec![(header, &TOKEN[..TOKEN.len() - 1])],
        ),
        ("the token plus one byte", vec![(header, &extended)]),
        ("the token in upper case", vec![(header, &upper)]),
        ("one letter in upper case", vec![(header, &flipped)]),
        ("a non-ASCII character", vec![(header, &non_ascii)]),
        ("a byte that is not text", vec![(header, &not_text)]),
        ("300 KiB of token", vec![(header, &huge)]),
        (
            "the token in another header",
            vec![(b"x-webhook-token", TOKEN)],
        ),
        (
            "the token as a second value after a wrong one",
            vec![(header, b"wrong"), (header, TOKEN)],
        ),
    ];
    for (what, headers) in &cases {
        let answer = post(&gateway, headers, &about_unknown_application()).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_ne!(answer.body, "OK", "{what}");
    }
    // Past the receiver's header limit: refused before anything reads it.
    let too_big = vec![b'a'; 1024 * 1024];
    let answer = post_from(&gateway, None, &[(header, &too_big)], b"{}").await;
    assert!(
        answer.as_ref().is_none_or(|a| a.status == 431),
        "{answer:?}"
    );
    assert_eq!(inbox(&gateway).await, 0, "nothing was recorded");
    assert!(onboarding_calls(&sandbox).await.is_empty());

    // The receiver is still there, and each of the two rotation tokens is accepted, in a header whose
    // name is written in any case (header names are case-insensitive; tokens are not).
    for (n, (name, token)) in [
        (header, TOKEN),
        (header, NEXT_TOKEN.as_bytes()),
        (b"X-ConnectPay-Webhook-Token", TOKEN),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = post(&gateway, &[(name, token)], &about_unknown_application()).await;
        assert!(ok(&answer), "{answer:?}");
        assert_eq!(inbox(&gateway).await, n as u64 + 1, "recorded");
    }
    assert!(
        onboarding_calls(&sandbox).await.is_empty(),
        "unknown applications cost no call to ConnectPay"
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_its_own_entry() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    // ConnectPay is played by 127.0.0.2, the ingress by 127.0.0.3; anyone else is 127.0.0.1.
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.allowed_sources = vec!["127.0.0.2/32".parse().unwrap()];
        c.webhook.trusted_proxies = vec![
            "127.0.0.3/32".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap(),
        ];
    })
    .await;
    let (stranger, connectpay, proxy) = (loopback(1), loopback(2), loopback(3));
    let xff = b"x-forwarded-for".as_slice();
    let token = (TOKEN_HEADER.as_bytes(), TOKEN);
    let cases: Vec<(&str, IpAddr, Vec<&[u8]>, u16)> = vec![
        ("a stranger", stranger, vec![], 403),
        (
            "a stranger claiming to forward for ConnectPay",
            stranger,
            vec![b"127.0.0.2"],
            403,
        ),
        (
            "a stranger claiming a chain ending at ConnectPay",
            stranger,
            vec![b"127.0.0.2, 127.0.0.2"],
            403,
        ),
        ("ConnectPay directly", connectpay, vec![], 200),
        (
            "ConnectPay directly, whatever it claims to forward",
            connectpay,
            vec![b"203.0.113.9"],
            200,
        ),
        ("the proxy itself", proxy, vec![], 403),
        ("the proxy, for ConnectPay", proxy, vec![b"127.0.0.2"], 200),
        (
            "the proxy, for a stranger who wrote ConnectPay's address first",
            proxy,
            vec![b"127.0.0.2, 203.0.113.9"],
            403,
        ),
        (
            "the proxy, for ConnectPay, after a stranger's own entry",
            proxy,
            vec![b"203.0.113.9, 127.0.0.2"],
            200,
        ),
        (
            "the proxy, for ConnectPay through a second trusted proxy",
            proxy,
            vec![b"127.0.0.2, 192.0.2.10"],
            200,
        ),
        (
            "the proxy, its entry in a header of its own after the stranger's",
            proxy,
            vec![b"127.0.0.2", b"203.0.113.9"],
            403,
        ),
        (
            "the proxy, a garbled entry",
            proxy,
            vec![b"not-an-address"],
            403,
        ),
        (
            "the proxy, ConnectPay's address left of a garbled entry",
            proxy,
            vec![b"127.0.0.2, 127.0.0.2:443"],
            403,
        ),
        (
            "the proxy, ConnectPay's address left of bytes that are not text",
            proxy,
            vec![b"127.0.0.2", b"\xff\xfe"],
            403,
        ),
    ];
    let mut recorded = 0;
    for (what, from, forwarded, status) in cases {
        let mut headers = vec![token];
        headers.extend(forwarded.iter().map(|value| (xff, *value)));
        let answer = post_from(&gateway, Some(from), &headers, &about_unknown_application())
            .await
            .expect("an answer");
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        if status == 200 {
            assert!(ok(&answer), "{what}");
            recorded += 1;
        }
        assert_eq!(inbox(&gateway).await, recorded, "{what}: recorded or not");
    }
    // An allowed source still needs the token.
    let answer = post_from(
        &gateway,
        Some(connectpay),
        &[(TOKEN_HEADER.as_bytes(), b"wrong")],
        &about_unknown_application(),
    )
    .await
    .expect("an answer");
    assert_eq!(answer.status, 401);
    assert_eq!(inbox(&gateway).await, recorded);
    assert!(onboarding_calls(&sandbox).await.is_empty());
}

/// A chunked POST (no declared length) of `body` in chunks of at most 8 KiB.
fn chunked(headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "POST {PATH} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
    )
    .into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(&[name, &b": "[..], value, b"\r\n"].concat());
    }
    bytes.extend_from_slice(b"\r\n");
    for chunk in body.chunks(8192) {
        bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

/// A notification about an unknown application, padded to exactly `len` bytes.
fn padded_to(len: usize) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    let frame = json!({"application": {"applicationId": id.to_string(), "status": "ACCOUNT_ISSUED"}, "pad": ""})
        .to_string();
    let pad = "x".repeat(len - frame.len());
    let body = json!({"application": {"applicationId": id.to_string(), "status": "ACCOUNT_ISSUED"}, "pad": pad})
        .to_string()
        .into_bytes();
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_records_nothing() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let addr = gateway.gateway().webhook_addr;
    let limit = 65536; // webhook.max_body_bytes, by default
    let token = (TOKEN_HEADER.as_bytes(), TOKEN);

    // Declared too long: refused from the headers, and the connection is closed rather than read on.
    let mut connection = Connection::open(addr, None).await;
    connection
        .send(&request(&[token], &padded_to(limit + 1)))
        .await
        .unwrap();
    let answer = connection.answer(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.closes(), "{answer:?}");
    assert!(connection.closed_within(Duration::from_secs(5)).await);

    // Declaring 100 MiB is enough: nothing waits for the body.
    let mut connection = Connection::open(addr, None).await;
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: gateway\r\ncontent-length: {}\r\n{TOKEN_HEADER}: {DEFAULT_WEBHOOK_TOKEN}\r\n\r\n",
        100 * 1024 * 1024
    );
    connection.send(head.as_bytes()).await.unwrap();
    let answer = connection.answer(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");

    // Undeclared (chunked) and too long: cut off at the limit.
    let mut connection = Connection::open(addr, None).await;
    let _ = connection
        .send(&chunked(&[token], &padded_to(limit + 1)))
        .await;
    let answer = connection.answer(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");

    // Without the token, a large body is refused for the token: nothing reads it.
    let answer = post(
        &gateway,
        &[(TOKEN_HEADER.as_bytes(), b"wrong")],
        &padded_to(4 * limit),
    )
    .await;
    assert_eq!(answer.status, 401);

    assert_eq!(inbox(&gateway).await, 0, "nothing was recorded");
    assert!(onboarding_calls(&sandbox).await.is_empty());

    // Exactly at the limit is fine, declared or chunked.
    let answer = post(&gateway, &[token], &padded_to(limit)).await;
    assert!(ok(&answer), "{answer:?}");
    let mut connection = Connection::open(addr, None).await;
    connection
        .send(&chunked(&[token], &padded_to(limit)))
        .await
        .unwrap();
    let answer = connection.answer(Duration::from_secs(5)).await.unwrap();
    assert!(ok(&answer), "{answer:?}");
    assert_eq!(inbox(&gateway).await, 2);
}

#[tokio::test]
async fn senders_that_trickle_or_stall_are_cut_off_at_the_read_timeout_and_hold_nothing() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let read_timeout = Duration::from_secs(3);
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.read_timeout = read_timeout;
    })
    .await;
    let addr = gateway.gateway().webhook_addr;
    let started = tokio::time::Instant::now();
    // Bodies a byte per 200 ms (a notification's would take over 20 s), headers a byte per 200 ms, and
    // connections that send nothing at all.
    let mut slow = Vec::new();
    for kind in ["body", "headers", "nothing"].repeat(4) {
        slow.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr, None).await;
            let body = about_unknown_application();
            let full = request(&[(TOKEN_HEADER.as_bytes(), TOKEN)], &body);
            let head_len = full.len() - body.len();
            let (first, dripped) = match kind {
                "body" => (&full[..head_len], &full[head_len..]),
                "headers" => (&full[..0], &full[..]),
                _ => (&full[..0], &full[..0]),
            };
            connection.send(first).await.unwrap();
            let cut_off = tokio::time::timeout(
                read_timeout + Duration::from_secs(2),
                connection.trickle(dripped, Duration::from_millis(200)),
            )
            .await
            .is_ok();
            (kind, cut_off, connection)
        }));
    }
    // Meanwhile a real notification is answered at once, not when the slow senders are cut off.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tokio::time::Instant::now();
    let answer = post_with_token(&gateway, TOKEN, &about_unknown_application()).await;
    assert!(ok(&answer), "{answer:?}");
    assert!(
        before.elapsed() < read_timeout / 2,
        "the slow senders held the receiver up: {:?}",
        before.elapsed()
    );
    for handle in slow {
        let (kind, cut_off, mut connection) = handle.await.unwrap();
        assert!(cut_off, "{kind}: the receiver closed the connection");
        // What the receiver said before closing, if anything: never OK.
        let answer = connection.answer(Duration::from_secs(1)).await;
        if kind == "body" {
            let answer = answer.expect("a slow body is answered");
            assert_eq!(answer.status, 408, "{answer:?}");
        } else if let Some(answer) = answer {
            assert_ne!(answer.status, 200, "{kind}: {answer:?}");
        }
    }
    // Every one of them was cut off at the read timeout, long before it would have finished.
    let elapsed = started.elapsed();
    assert!(
        elapsed < read_timeout + Duration::from_secs(2),
        "cut off after {elapsed:?}"
    );
    assert_eq!(inbox(&gateway).await, 1, "only the real notification");
    assert!(onboarding_calls(&sandbox).await.is_empty());
}

#[tokio::test]
async fn a_flood_about_unknown_applications_is_answered_ok_and_costs_no_upstream_call() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(&sandbox, AUTH_CODES[0], "").await;
    let url = gateway.webhook_url();
    let http = reqwest::Client::new();
    // 250 different notifications, half about applications, half (IDV events) about persons, each
    // delivered twice (ConnectPay delivers at least once): 500 deliveries, 25 at a time.
    let notifications: Vec<String> = (0..250)
        .map(|i| {
            let id = uuid::Uuid::new_v4().to_string();
            if i % 2 == 0 {
                json!({"application": {"applicationId": id, "status": "ACCOUNT_ISSUED"}})
            } else {
                json!({"eventType": "BaaSPersonIdv.Approved", "eventId": id,
                       "data": {"personId": id, "status": "IDV_APPROVED"}})
            }
            .to_string()
        })
        .collect();
    let deliveries: Vec<String> = notifications
        .iter()
        .chain(&notifications)
        .cloned()
        .collect();
    for batch in deliveries.chunks(25) {
        let sent = batch.iter().map(|body| {
            let request = http
                .post(&url)
                .header(TOKEN_HEADER, DEFAULT_WEBHOOK_TOKEN)
                .header("x-connectpay-timestamp", "2026-11-26T08:19:14.123Z")
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let response = request.send().await.expect("an answer");
                (response.status().as_u16(), response.text().await.unwrap())
            }
        });
        for (status, body) in futures::future::join_all(sent).await {
            assert_eq!((status, body.as_str()), (200, "OK"));
        }
    }
    assert!(
        onboarding_calls(&sandbox).await.is_empty(),
        "no call to ConnectPay"
    );
    // Each notification is recorded once, however often it came...
    assert_eq!(inbox(&gateway).await, notifications.len() as u64);
    // ...and dropped after the grace period the submit's answer may need (30 s), never asking ConnectPay.
    let until = tokio::time::Instant::now() + Duration::from_secs(45);
    while inbox(&gateway).await > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the inbox still holds {} notifications",
            inbox(&gateway).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        onboarding_calls(&sandbox).await.is_empty(),
        "no call to ConnectPay"
    );
}

/// Replaces `file` the way Kubernetes updates a mounted secret: a new file renamed over the old one.
fn replace(file: &Path, content: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, file).unwrap();
}

/// Posts a notification about an unknown application with `token` on fresh connections until the
/// answer's status is `status`, for at most 5 s.
async fn until_status(gateway: &TestGateway, token: &str, status: u16) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = post_with_token(gateway, token.as_bytes(), &about_unknown_application()).await;
        if answer.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "still {} instead of {status}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_webhook_token_rotated_on_disk_is_taken_without_a_restart_or_a_dropped_connection() {
    const A: &str = "rotation-token-A-0123456789abcdefghij";
    const B: &str = "rotation-token-B-0123456789abcdefghij";
    let sandbox = TestSandbox::in_process(|c| c.webhook_token = A.into()).await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("tokens");
    std::fs::write(&file, format!("{A}\n")).unwrap();
    let gateway = TestGateway::start_adjusted(&sandbox, AUTH_CODES[0], "", |c| {
        c.webhook.tokens.clear();
        c.webhook.tokens_file = Some(file.clone());
        c.reload.interval = Duration::from_millis(100);
    })
    .await;
    // An application held in IDV_TOKEN_GENERATED, watched; the sandbox's own deliveries are dropped, so
    // every notification below is the test's.
    sandbox
        .control_put("webhooks", json!({"mode": "drop"}))
        .await;
    let mut client = gateway.client();
    let app = submit(&mut client, "client-rotation", "session-hold")
        .await
        .unwrap();
    let mut stream = watch(&mut client, by_id(&app.application_id), "")
        .await
        .unwrap();
    let snapshot = next(&mut stream, Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(application(&snapshot)), S::IdvTokenGenerated);

    // A keep-alive connection, used before, during and after the rotation.
    let mut kept = Connection::open(gateway.gateway().webhook_addr, None).await;
    let mut on_kept = async |token: &str| {
        kept.send(&request(
            &[(TOKEN_HEADER.as_bytes(), token.as_bytes())],
            &about_unknown_application(),
        ))
        .await
        .expect("the kept connection is open");
        kept.answer(Duration::from_secs(5))
            .await
            .expect("the kept connection answers")
    };
    assert!(ok(&on_kept(A).await));
    assert_eq!(
        post_with_token(&gateway, B.as_bytes(), b"{}").await.status,
        401
    );

    // The new token is added as a second line: both are accepted.
    replace(&file, &format!("{A}\n{B}\n"));
    until_status(&gateway, B, 200).await;
    assert!(ok(&post_with_token(&gateway, A.as_bytes(), b"{}").await));
    assert!(ok(&on_kept(B).await));

    // A file breaking the rules is not taken: the tokens before it stay.
    replace(&file, &format!("{A}\n{B}\nshort\n"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ok(&post_with_token(&gateway, A.as_bytes(), b"{}").await));
    assert!(ok(&post_with_token(&gateway, B.as_bytes(), b"{}").await));

    // The old token is removed: refused from then on, the new one still accepted.
    replace(&file, &format!("{B}\n"));
    until_status(&gateway, A, 401).await;
    assert!(ok(&post_with_token(&gateway, B.as_bytes(), b"{}").await));
    let answer = on_kept(B).await;
    assert!(ok(&answer) && !answer.closes(), "{answer:?}");

    // The watch stream opened before the rotation still delivers: ConnectPay approves, a notification
    // with the new token arrives on the kept connection, and the gateway confirms it with a GET.
    sandbox
        .set_status(&app.application_id, "IDV_APPROVED")
        .await;
    let notification =
        json!({"application": {"applicationId": app.application_id, "status": "IDV_APPROVED"}});
    kept.send(&request(
        &[(TOKEN_HEADER.as_bytes(), B.as_bytes())],
        notification.to_string().as_bytes(),
    ))
    .await
    .expect("the kept connection is open");
    assert!(ok(&kept.answer(Duration::from_secs(5)).await.unwrap()));
    let change = next(&mut stream, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status_of(application(&change)), S::IdvApproved);
}
