//! Helpers shared by the integration tests: a sandbox on port 0, an HTTP client, the
//! ConnectPay calls, and a webhook receiver.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use connectpay_sandbox::{Sandbox, SandboxConfig, Status};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const KYC_ACCEPT: &str = "application/json;version=2";

/// Fast scripted delays, port 0.
pub fn config() -> SandboxConfig {
    SandboxConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        idv_delay_ms: 30,
        review_delay_ms: 80,
        ..SandboxConfig::default()
    }
}

pub async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts")
}

/// A reqwest client on the ring provider (reqwest is built with `rustls-no-provider`).
pub fn client() -> reqwest::Client {
    let tls = tls_client_config(rustls::RootCertStore::empty(), None);
    client_with(tls)
}

pub fn client_with(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

pub fn tls_client_config(
    roots: rustls::RootCertStore,
    identity: Option<(
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    }
}

pub fn basic(client_id: &str, client_secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{client_id}:{client_secret}"))
    )
}

/// POSTs a form to the token endpoint with the default client credentials.
pub async fn token_request(http: &reqwest::Client, base: &str, form: &str) -> reqwest::Response {
    http.post(format!("{base}/auth/v1/oauth2/token"))
        .header("authorization", basic("sandbox-client", "sandbox-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap()
}

pub fn kyc_body(person_id: &str, city: &str) -> Value {
    json!({"person": {"Id": person_id, "isUbo": true, "pep": {"isPep": false},
                      "address": {"countryCode": "LT", "addressLine1": "Gedimino pr. 1",
                                  "city": city, "postcode": "01103"},
                      "accountPurposes": ["SALARY"], "occupation": "Engineer"}})
}

/// An authenticated client of one sandbox.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn new(sandbox: &Sandbox) -> Api {
        let http = client();
        let base = sandbox.base_url();
        let code = sandbox.mint_auth_code().code;
        let answer: Value = token_request(
            &http,
            &base,
            &format!("grant_type=authorization_code&code={code}"),
        )
        .await
        .json()
        .await
        .unwrap();
        let token = answer["access_token"].as_str().unwrap().to_owned();
        Api { http, base, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/baas/onboarding/personal{path}", self.base)
    }

    pub async fn submit_raw(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/idv/external"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Submits an IDV session; returns `(applicationId, personId)` from either answer shape.
    pub async fn submit(&self, session_id: &str, notification_url: &str) -> (Uuid, String) {
        let response = self
            .submit_raw(
                json!({"externalReference": "client-42", "sessionId": session_id,
                               "providerId": "ONDATO", "notificationUrl": notification_url}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let id = body
            .pointer("/application/applicationId")
            .or_else(|| body.get("applicationId"))
            .and_then(Value::as_str)
            .unwrap();
        let person = body["personId"].as_str().unwrap().to_owned();
        (id.parse().unwrap(), person)
    }

    pub async fn get_application(&self, id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/applications/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_idv(&self, person_id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/idv/{person_id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn kyc(&self, id: Uuid, body: &Value) -> reqwest::Response {
        self.kyc_result(id, body).await.unwrap()
    }

    pub async fn kyc_result(&self, id: Uuid, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url(&format!("/applications/{id}/kyc")))
            .bearer_auth(&self.token)
            .header("accept", KYC_ACCEPT)
            .json(body)
            .send()
            .await
    }

    /// A new application whose IDV was approved.
    pub async fn approved(&self, sandbox: &Sandbox, notification_url: &str) -> (Uuid, String) {
        let (id, person) = self.submit("session-ok", notification_url).await;
        wait_for_status(sandbox, id, Status::IdvApproved).await;
        (id, person)
    }
}

/// Polls `check` every 10 ms for up to 5 s.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_for_status(sandbox: &Sandbox, id: Uuid, status: Status) {
    eventually(&format!("{id} to reach {status}"), || {
        let current = sandbox.application(id).unwrap().status;
        (current == status).then_some(())
    })
    .await;
}

/// How a [`Receiver`] answers one webhook.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: &'static str,
    pub delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &'static str) -> Answer {
        Answer {
            status,
            body,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
}

impl Received {
    /// The status, from either body shape.
    pub fn status(&self) -> String {
        self.body
            .pointer("/application/status")
            .or_else(|| self.body.pointer("/data/status"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    answers: Mutex<VecDeque<Answer>>,
}

/// A webhook endpoint: records every POST and answers as scripted (then `200 OK`).
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, state, task }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.answers.lock().unwrap().extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn statuses(&self) -> Vec<String> {
        self.received().iter().map(Received::status).collect()
    }

    /// Waits until `n` webhooks have arrived and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} webhooks"), || {
            let received = self.received();
            (received.len() >= n).then_some(received)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    state.received.lock().unwrap().push(Received {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let answer = state.answers.lock().unwrap().pop_front();
    let answer = answer.unwrap_or(Answer::new(200, "OK"));
    tokio::time::sleep(answer.delay).await;
    (StatusCode::from_u16(answer.status).unwrap(), answer.body)
}
