//! The TLS client configuration for ConnectPay: system roots plus an optional extra CA bundle, and the
//! client certificate chain ConnectPay's mutual TLS requires. The client certificate and key are read
//! again when their files change (a renewed certificate needs no restart): each new handshake presents
//! the current pair; connections already open keep theirs. The CA bundle is read at start.

use std::{fmt, path::Path, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore, SignatureScheme,
    client::ResolvesClientCert,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

use crate::config::{
    TlsConfig,
    reload::{self, Reloading, Source},
};

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
/// default provider. The client certificate is watched every `reload_interval` until `stop`.
pub fn client_config(
    tls: &TlsConfig,
    reload_interval: Duration,
    stop: CancellationToken,
) -> Result<ClientConfig, TlsError> {
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
            let source = Source {
                what: "connectpay.tls.client_cert_file",
                files: vec![cert.clone(), key.clone()],
            };
            let identity = reload::watch(source, reload_interval, stop, |files| {
                certified_key(&files[0], &files[1])
            })
            .map_err(|e| problem("connectpay.tls", e))?;
            builder.with_client_cert_resolver(Arc::new(ReloadingIdentity(identity)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate chain (leaf first) and its private key, checked to belong together.
fn certified_key(chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client_cert_file: not PEM certificates ({e})"))?;
    if chain.is_empty() {
        return Err("client_cert_file: no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("client_key_file: no usable private key ({e})"))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| format!("client_cert_file and client_key_file: {e}"))
}

/// Presents whichever client certificate is current when a handshake asks for one.
struct ReloadingIdentity(Arc<Reloading<Arc<CertifiedKey>>>);

impl fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingIdentity")
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let current = self.0.current();
        // Only a key that can sign with one of the server's schemes is worth sending.
        current
            .key
            .choose_scheme(sigschemes)
            .map(|_| current.as_ref().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn presented(config: &ClientConfig) -> Vec<u8> {
        let scheme = [SignatureScheme::ECDSA_NISTP256_SHA256];
        let key = config
            .client_auth_cert_resolver
            .resolve(&[], &scheme)
            .expect("a client certificate");
        key.cert[0].to_vec()
    }

    #[tokio::test]
    async fn a_renewed_client_certificate_is_presented_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (cert, key) = pair("gateway-1.test");
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, &key).unwrap();
        let tls = TlsConfig {
            client_cert_file: Some(cert_file.clone()),
            client_key_file: Some(key_file.clone()),
            ca_bundle_file: None,
        };
        let stop = CancellationToken::new();
        let config = client_config(&tls, Duration::from_millis(20), stop.clone()).unwrap();
        let first = presented(&config);
        assert_eq!(
            first,
            CertificateDer::from_pem_slice(cert.as_bytes())
                .unwrap()
                .to_vec()
        );

        // A key that does not match the certificate is not taken.
        let (_, other_key) = pair("other.test");
        std::fs::write(&key_file, &other_key).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(presented(&config), first);

        let (cert, key) = pair("gateway-2.test");
        std::fs::write(&key_file, &key).unwrap();
        std::fs::write(&cert_file, &cert).unwrap();
        let renewed = CertificateDer::from_pem_slice(cert.as_bytes())
            .unwrap()
            .to_vec();
        for _ in 0..100 {
            if presented(&config) == renewed {
                stop.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the renewed certificate was never presented");
    }
}
