//! TLS on the gRPC port: the gateway's certificate, callers' client certificates, and the identity a
//! client certificate proves.
//!
//! The rustls configuration is rebuilt whenever its files change (`config::reload`); each new connection
//! takes the configuration current at its handshake, so a rotation drops no connection. Handshakes run
//! off the accept loop, each bounded by a timeout, so a slow or silent client holds up no one else.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::config::reload::Reloading;

/// Whether callers must, may or need not present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// No client CA: certificates are neither asked for nor checked.
    NotAsked,
    /// Callers authenticate by certificate only: a handshake without one fails.
    Required,
    /// Callers may authenticate otherwise (a bearer token): a certificate is checked when presented.
    Optional,
}

/// How long a TLS handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the server configuration from the PEM files' bytes: `[cert, key]` or `[cert, key, client CA]`.
/// Errors name what is wrong, never the content.
pub fn server_config(
    files: &[Vec<u8>],
    client: ClientCertificates,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files[0], "cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&files[1])
        .map_err(|e| format!("key_file: no usable private key ({e})"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (client, files.get(2)) {
        (ClientCertificates::NotAsked, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certificates(ca, "client_ca_file")?);
            if added == 0 {
                return Err("client_ca_file: no usable CA certificate".into());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientCertificates::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{key}: no certificate"));
    }
    Ok(certs)
}

/// The identity a verified client certificate proves: its first URI subject alternative name (e.g. a
/// SPIFFE id), else its first DNS name. `None` when it names neither.
pub fn certificate_identity(certificate: &[u8]) -> Option<String> {
    use x509_parser::{extensions::GeneralName, prelude::FromDer};
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(certificate).ok()?;
    let names = parsed.subject_alternative_name().ok()??.value;
    let uri = names.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let dns = || {
        names.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        })
    };
    uri.or_else(dns)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// What a TLS connection tells each of its requests (as a request extension).
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub remote_addr: SocketAddr,
    /// Set when the caller presented a certificate the client CA verified.
    pub certificate_identity: Option<CertificateIdentity>,
}

/// The outcome of reading a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateIdentity {
    Named(String),
    /// Verified, but with neither a URI nor a DNS subject alternative name.
    Unnamed,
}

/// An accepted, handshaken connection.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: TlsPeer,
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts connections until `stop`, handshaking each with the configuration current at that moment.
pub fn incoming(
    listener: TcpListener,
    config: Arc<Reloading<Arc<ServerConfig>>>,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (ready, connections) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                () = ready.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!(error = %e, "gRPC: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.current().as_ref().clone());
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let certificate_identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| match certificate_identity(leaf) {
                                Some(name) => CertificateIdentity::Named(name),
                                None => CertificateIdentity::Unnamed,
                            });
                        let peer = TlsPeer {
                            remote_addr,
                            certificate_identity,
                        };
                        let _ = ready.send(Ok(TlsConnection { stream, peer })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote_addr, error = %e, "gRPC: TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%remote_addr, "gRPC: TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(connections)
}
