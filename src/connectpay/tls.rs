//! The TLS client configuration for ConnectPay: system roots plus an optional extra CA bundle, and the
//! client certificate chain ConnectPay's mutual TLS requires.

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct TlsError {
    key: &'static str,
    problem: String,
}

fn problem(key: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError {
        key,
        problem: problem.into(),
    }
}

/// Builds the rustls configuration on the ring provider, explicitly, so nothing depends on a process-wide
/// default provider.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    // Missing or partly unreadable system roots are not fatal: a deployment may trust only its bundle.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(bundle) = &tls.ca_bundle_file {
        let certs = read_certs("connectpay.tls.ca_bundle_file", bundle)?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(problem(
                "connectpay.tls.ca_bundle_file",
                "no usable CA certificate in the file",
            ));
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("connectpay.tls", e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("connectpay.tls.client_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                problem(
                    "connectpay.tls.client_key_file",
                    format!("no usable private key: {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| problem("connectpay.tls.client_cert_file", e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(problem(key, "no certificate in the file"));
    }
    Ok(certs)
}
