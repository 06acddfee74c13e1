//! HTTPS and mutual TLS: the server certificate, and optionally a required client
//! certificate signed by a configured CA, as ConnectPay's mTLS hosts require.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

pub(crate) fn acceptor(config: &TlsConfig) -> io::Result<TlsAcceptor> {
    // Always ring, chosen here: the sandbox must not depend on (or install) a process-wide
    // default provider, since the process it runs in may have chosen another.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&config.cert_path)?;
    let key =
        PrivateKeyDer::from_pem_file(&config.key_path).map_err(|e| invalid(&config.key_path, e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match &config.client_ca_path {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca_path)? {
                roots.add(certificate).map_err(|e| invalid(ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(ca_path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&config.cert_path, e))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certificates.is_empty() {
        return Err(invalid(path, "no certificate found"));
    }
    Ok(certificates)
}

fn invalid(path: &Path, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {error}", path.display()),
    )
}
