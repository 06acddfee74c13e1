//! Shared test harness: a ConnectPay sandbox (in-process or as its own process), a gateway in-process on
//! real sockets, a gRPC client, and helpers that read the sandbox's control interface.
#![allow(dead_code)]

pub mod callers;
pub mod certs;
pub mod checker;
pub mod identity;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod replicas;
pub mod sandbox;
pub mod stores;
pub mod watching;
#[path = "webhook.rs"] // `webhook` names the gateway's module here
pub mod webhooks;

use std::time::Duration;

use onboarding_gateway::{
    app::{self, Gateway, Listeners},
    config::{Config, Mode},
    grpc::pb::{self, onboarding_client::OnboardingClient},
    webhook,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use sandbox::TestSandbox;

pub const CLIENT_ID: &str = "gateway-under-test";
pub const CLIENT_SECRET: &str = "gateway-test-secret";
/// base64 of 32 bytes: the tests' store key.
pub const STORE_KEY: &str = "dGVzdHMtb25seS1zdG9yZS1rZXktMzItYnl0ZXMtISE=";

/// A gateway running in this process, stopped when dropped.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    /// Holds the store's database; removed with the gateway.
    scratch: Option<tempfile::TempDir>,
    pub client: OnboardingClient<Channel>,
    pub addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestGateway {
    /// Starts a gateway against `sandbox`, with `auth_code` to bootstrap its OAuth pair and `extra` TOML
    /// appended to the test configuration.
    pub async fn start(sandbox: &TestSandbox, auth_code: &str, extra: &str) -> TestGateway {
        Self::start_adjusted(sandbox, auth_code, extra, |_| {}).await
    }

    /// Like [`TestGateway::start`], with `adjust` changing the configuration last.
    pub async fn start_adjusted(
        sandbox: &TestSandbox,
        auth_code: &str,
        extra: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestGateway {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let toml = format!(
            r#"
[grpc]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[webhook]
listen = "127.0.0.1:0"
tokens = ["{token}"]
allowed_sources = ["127.0.0.0/8"]
[store]
url = "sqlite://{db}"
key = "{STORE_KEY}"
[connectpay]
base_url = "{base}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_code = "{auth_code}"
allow_insecure_http = true
[shutdown]
drain_delay = "0s"
grace_period = "10s"
[log]
level = "onboarding_gateway=debug,info"
{extra}
"#,
            base = sandbox.base_url(),
            db = scratch.path().join("gateway.db").display(),
            token = connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN,
        );
        let mut config = Config::load_with(None, &toml).expect("test configuration loads");
        adjust(&mut config);
        config
            .validate(Mode::Sandbox)
            .expect("test configuration is valid");
        let mut gateway = Self::start_with(config).await;
        gateway.scratch = Some(scratch);
        gateway
    }

    /// Starts a gateway whose notification URL is its own webhook receiver.
    pub async fn start_with(mut config: Config) -> TestGateway {
        init_logging();
        let stop = CancellationToken::new();
        let listeners = Listeners::bind(&config).await.expect("gateway binds");
        config.connectpay.notification_url =
            webhook::local_url(listeners.webhook_addr(), &config.webhook.path);
        let gateway = app::run(config, listeners, stop.clone())
            .await
            .expect("gateway starts");
        let addr = gateway.grpc_addr;
        // Lazily: a gateway serving TLS is reached by the tests' own TLS clients instead.
        let client = OnboardingClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("a URL")
                .connect_lazy(),
        );
        TestGateway {
            gateway: Some(gateway),
            scratch: None,
            client,
            addr,
            stop,
        }
    }

    pub fn client(&self) -> OnboardingClient<Channel> {
        self.client.clone()
    }

    /// The store's database file.
    pub fn database(&self) -> std::path::PathBuf {
        self.scratch
            .as_ref()
            .expect("started by start_adjusted")
            .path()
            .join("gateway.db")
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("running")
    }

    /// The URL of this gateway's webhook receiver.
    pub fn webhook_url(&self) -> String {
        webhook::local_url(self.gateway().webhook_addr, "/webhooks/connectpay")
    }

    /// Waits (up to 10 s) until the sandbox's webhook about `status` was answered `200` and this gateway
    /// has confirmed it: nothing is left in its inbox.
    pub async fn webhook_confirmed(&self, sandbox: &TestSandbox, status: &str) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answered = sandbox
                .webhook_log()
                .await
                .iter()
                .any(|d| d["status"] == status && d["answerStatus"] == 200);
            let (waiting, _) = self.gateway().service().inbox_backlog().await.unwrap();
            if answered && waiting == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "the {status} webhook was not confirmed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the admin port's `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.gateway().admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends the stop signal (as SIGTERM would) without waiting: the gateway drains as configured.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(gateway) = self.gateway.take() {
            gateway.wait().await;
        }
    }
}

/// A SQLite database's bytes as they are on disk: the file and its write-ahead log.
/// The value of one series in a `/metrics` text, or 0 when it has not appeared yet.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

pub fn database_bytes(database: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(database).unwrap();
    bytes.extend(std::fs::read(database.with_extension("db-wal")).unwrap_or_default());
    bytes
}

/// Whether `needle` appears anywhere in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

pub fn init_logging() {
    // reqwest is built without a default TLS provider (the gateway brings its own); test clients use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "onboarding_gateway=debug,connectpay_sandbox=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn submit(
    client: &mut OnboardingClient<Channel>,
    external_reference: &str,
    session_id: &str,
) -> Result<pb::Application, tonic::Status> {
    client
        .submit_idv_session(pb::SubmitIdvSessionRequest {
            external_reference: external_reference.into(),
            session_id: session_id.into(),
            provider_id: "ONDATO".into(),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().application.expect("an application"))
}

pub async fn get(
    client: &mut OnboardingClient<Channel>,
    application_id: &str,
) -> Result<pb::Application, tonic::Status> {
    client
        .get_application(pb::GetApplicationRequest {
            key: Some(pb::get_application_request::Key::ApplicationId(
                application_id.into(),
            )),
        })
        .await
        .map(|r| r.into_inner().application.expect("an application"))
}

pub async fn get_by_reference(
    client: &mut OnboardingClient<Channel>,
    external_reference: &str,
) -> Result<pb::Application, tonic::Status> {
    client
        .get_application(pb::GetApplicationRequest {
            key: Some(pb::get_application_request::Key::ExternalReference(
                external_reference.into(),
            )),
        })
        .await
        .map(|r| r.into_inner().application.expect("an application"))
}

/// Reads the application with `GetApplication` until `done` holds, returning every distinct version seen.
pub async fn poll_until(
    client: &mut OnboardingClient<Channel>,
    application_id: &str,
    done: impl Fn(&pb::Application) -> bool,
) -> Vec<pb::Application> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<pb::Application> = Vec::new();
    loop {
        let app = get(client, application_id)
            .await
            .expect("GetApplication succeeds");
        if seen.last().is_none_or(|last| last.version != app.version) {
            seen.push(app.clone());
        }
        if done(&app) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; versions seen: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

pub fn status_of(app: &pb::Application) -> pb::ApplicationStatus {
    pb::ApplicationStatus::try_from(app.status).expect("a known status")
}

/// Valid KYC data: the documented example.
pub fn valid_kyc() -> pb::PersonalKyc {
    pb::PersonalKyc {
        is_ubo: Some(true),
        pep: Some(pb::Pep {
            is_pep: Some(false),
            position: String::new(),
        }),
        address: Some(pb::Address {
            country_code: "LT".into(),
            address_line1: "Gedimino pr. 1".into(),
            address_line2: String::new(),
            city: "Vilnius".into(),
            postcode: "01103".into(),
        }),
        account_purposes: vec!["SALARY".into(), "PERSONAL_OR_HOUSEHOLD_EXPENSES".into()],
        additional_fields: None,
    }
}

pub async fn initiate(
    client: &mut OnboardingClient<Channel>,
    application_id: &str,
    kyc: pb::PersonalKyc,
) -> Result<pb::Application, tonic::Status> {
    client
        .initiate_onboarding(pb::InitiateOnboardingRequest {
            application_id: application_id.into(),
            request_id: String::new(),
            kyc: Some(kyc),
        })
        .await
        .map(|r| r.into_inner().application.expect("an application"))
}

/// The `ErrorInfo.reason` and field-violation paths of a failed call.
pub fn reason_and_fields(status: &tonic::Status) -> (String, Vec<String>) {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    let info = details
        .error_info()
        .expect("every error carries an ErrorInfo");
    assert_eq!(info.domain, "onboarding-gateway");
    let fields = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    (info.reason.clone(), fields)
}

#[allow(unused_imports)] // not every test file watches
pub use watching::*;

/// ConnectPay reporting `status` and nothing else, for tests that drive the store directly.
pub fn seen(status: onboarding_gateway::domain::Status) -> onboarding_gateway::domain::Observation {
    onboarding_gateway::domain::Observation {
        status,
        upstream_status: status.as_str().into(),
        person_id: None,
        baas_client_id: None,
    }
}
