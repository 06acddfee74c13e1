use std::path::Path;

use connectpay_sandbox::{SandboxConfig, TlsConfig};
use http::StatusCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::{self, client_with, tls_client_config};

struct Pki {
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
    dir: tempfile::TempDir,
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, the first
/// two written as PEM files.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sandbox Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "onboarding-gateway");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
    write("ca.pem", ca_cert.pem());
    write(
        "server.pem",
        format!("{}{}", server_cert.pem(), ca_cert.pem()),
    );
    write("server.key", server_key.serialize_pem());
    Pki {
        ca: ca_cert.der().clone(),
        client_chain: vec![client_cert.der().clone()],
        client_key: PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes()).unwrap(),
        dir,
    }
}

fn tls_config(dir: &Path, require_client: bool) -> SandboxConfig {
    SandboxConfig {
        tls: Some(TlsConfig {
            cert_path: dir.join("server.pem"),
            key_path: dir.join("server.key"),
            client_ca_path: require_client.then(|| dir.join("ca.pem")),
        }),
        ..common::config()
    }
}

fn roots(pki: &Pki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    roots
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = pki();
    let sandbox = common::start(tls_config(pki.dir.path(), true)).await;
    let base = sandbox.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let anonymous = client_with(tls_client_config(roots(&pki), None));
    let refused = anonymous
        .get(format!("{base}/_sandbox/health"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let identified = client_with(tls_client_config(
        roots(&pki),
        Some((pki.client_chain.clone(), pki.client_key.clone_key())),
    ));
    let response = identified
        .get(format!("{base}/_sandbox/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token = common::token_request(
        &identified,
        &base,
        "grant_type=authorization_code&code=sandbox-auth-code",
    )
    .await;
    assert_eq!(token.status(), StatusCode::OK);
    // The localhost name is in the certificate too.
    let by_name = base.replace("127.0.0.1", "localhost");
    let response = identified
        .get(format!("{by_name}/_sandbox/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn https_without_client_ca_accepts_anyone() {
    let pki = pki();
    let sandbox = common::start(tls_config(pki.dir.path(), false)).await;
    let anonymous = client_with(tls_client_config(roots(&pki), None));
    let response = anonymous
        .get(format!("{}/_sandbox/health", sandbox.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = common::client()
        .get(format!(
            "{}/_sandbox/health",
            sandbox.base_url().replace("https", "http")
        ))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn bad_tls_files_fail_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let error = connectpay_sandbox::Sandbox::start(tls_config(dir.path(), false))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}
