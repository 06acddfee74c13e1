//! Callers with identities: a gateway serving TLS with mutual TLS and JWT authentication, the files behind
//! it (certificates, keys, the JWKS) in a directory of the test's own, and clients presenting a client
//! certificate or a bearer token.

use std::path::PathBuf;

use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use super::{
    TestGateway, TestSandbox,
    identity::{AUDIENCE, Ca, ISSUER, SigningKey, jwks},
    reason_and_fields,
};
use onboarding_gateway::grpc::pb::{self, onboarding_client::OnboardingClient};

pub const PAYMENTS: &str = "spiffe://bank.test/ns/payments/sa/onboarding";
pub const LENDING: &str = "spiffe://bank.test/ns/lending/sa/onboarding";

/// Replaces a file the way Kubernetes updates a mounted secret: a new file renamed over the old.
pub fn replace(path: &PathBuf, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// The gateway's security files, in one directory.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub jwks: PathBuf,
}

impl Files {
    pub fn new(server_ca: &Ca, client_ca: &Ca, keys: &[&SigningKey]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = server_ca.server();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        Files {
            cert: write("tls.crt", &cert_pem),
            key: write("tls.key", &key_pem),
            client_ca: write("ca.crt", &client_ca.pem()),
            jwks: write("jwks.json", &jwks(keys)),
            dir,
        }
    }

    pub fn config(&self) -> String {
        format!(
            r#"
[grpc.tls]
cert_file = {cert:?}
key_file = {key:?}
client_ca_file = {ca:?}
[health]
listen = "127.0.0.1:0"
[reload]
interval = "100ms"
[auth]
methods = ["mtls", "jwt"]
[auth.jwt]
jwks_file = {jwks:?}
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
leeway = "0s"
[auth.permissions]
"{PAYMENTS}" = ["SubmitIdvSession", "GetApplication", "InitiateOnboarding", "WatchApplication"]
"{LENDING}" = ["SubmitIdvSession", "GetApplication", "InitiateOnboarding", "WatchApplication"]
"payments-by-token" = ["SubmitIdvSession", "GetApplication", "InitiateOnboarding", "WatchApplication"]
"reporting" = ["WatchApplications"]
"read-only" = ["GetApplication"]
"#,
            cert = self.cert.to_str().unwrap(),
            key = self.key.to_str().unwrap(),
            ca = self.client_ca.to_str().unwrap(),
            jwks = self.jwks.to_str().unwrap(),
        )
    }
}

/// A TLS channel to the gateway trusting `server_ca`, presenting `identity` when given.
pub async fn channel(
    gateway: &TestGateway,
    server_ca: &Ca,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.pem()))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{}", gateway.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

pub async fn client(
    gateway: &TestGateway,
    server_ca: &Ca,
    identity: Identity,
) -> OnboardingClient<Channel> {
    OnboardingClient::new(channel(gateway, server_ca, Some(identity)).await.unwrap())
}

pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn get_request(id: &str) -> pb::GetApplicationRequest {
    pb::GetApplicationRequest {
        key: Some(pb::get_application_request::Key::ApplicationId(id.into())),
    }
}

pub fn submit_request(
    reference: &str,
    session: &str,
    request_id: &str,
) -> pb::SubmitIdvSessionRequest {
    pb::SubmitIdvSessionRequest {
        external_reference: reference.into(),
        session_id: session.into(),
        provider_id: "ONDATO".into(),
        request_id: request_id.into(),
    }
}

pub fn expect_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    reason: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_and_fields(&status).0, reason, "{status:?}");
}

pub struct Setup {
    pub _sandbox: TestSandbox,
    pub gateway: TestGateway,
    pub server_ca: Ca,
    pub client_ca: Ca,
    pub key: SigningKey,
    pub files: Files,
}

pub async fn setup() -> Setup {
    setup_with_idv_delay(150).await
}

pub async fn setup_with_idv_delay(idv_delay_ms: u64) -> Setup {
    let sandbox = TestSandbox::in_process(|c| c.idv_delay_ms = idv_delay_ms).await;
    let (server_ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
    let key = SigningKey::es256("k1");
    let files = Files::new(&server_ca, &client_ca, &[&key]);
    let gateway = TestGateway::start(&sandbox, "code-1", &files.config()).await;
    Setup {
        _sandbox: sandbox,
        gateway,
        server_ca,
        client_ca,
        key,
        files,
    }
}
