//! Sending webhooks: one POST per attempt, success only on `2xx` with body `OK`, and
//! ConnectPay's retry schedule (divided by the time scale) for everything else.

use std::error::Error as _;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue, header};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use rustls_platform_verifier::BuilderVerifierExt;
use tracing::{debug, warn};

use crate::clock;
use crate::config::SandboxConfig;
use crate::shared::Shared;
use crate::webhooks::{DeliveryLogEntry, Dispatch, Notification};

/// ConnectPay's documented retry delays, in sandbox seconds, each counted from the end of the
/// previous failed attempt: 5 s, 5 s, 30 s, 5 min, 60 min, 24 h.
const RETRY_SCHEDULE_SECS: [u64; 6] = [5, 5, 30, 300, 3600, 86_400];
/// How much of a receiver's answer is read (the rest is ignored) and how much is logged.
const ANSWER_READ_LIMIT: usize = 64 * 1024;
const ANSWER_LOG_LIMIT: usize = 1024;

/// The HTTP side of webhook delivery.
pub(crate) struct Deliverer {
    client: reqwest::Client,
    token_header: HeaderName,
    token: HeaderValue,
    timeout: Duration,
    retry_delays: [Duration; RETRY_SCHEDULE_SECS.len()],
}

impl Deliverer {
    pub(crate) fn new(config: &SandboxConfig) -> io::Result<Deliverer> {
        let invalid =
            |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            // Webhook receivers are local test servers; an HTTP_PROXY in the environment
            // must not reroute them.
            .no_proxy()
            .user_agent(concat!("connectpay-sandbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| io::Error::other(format!("cannot build the webhook client: {e}")))?;
        Ok(Deliverer {
            client,
            token_header: HeaderName::from_bytes(config.webhook_token_header.as_bytes())
                .map_err(|e| invalid(&e))?,
            token: HeaderValue::from_str(&config.webhook_token).map_err(|e| invalid(&e))?,
            timeout: Duration::from_millis(config.webhook_timeout_ms),
            retry_delays: RETRY_SCHEDULE_SECS.map(|secs| config.scaled(secs)),
        })
    }

    /// One POST; the log entry says how it went.
    async fn attempt(&self, notification: &Notification, attempt: u32) -> DeliveryLogEntry {
        let outcome = tokio::time::timeout(self.timeout, self.exchange(notification)).await;
        let (answer_status, answer_body, error) = match outcome {
            Err(_) => (
                None,
                None,
                Some(format!("no answer within {} ms", self.timeout.as_millis())),
            ),
            Ok(Err(error)) => (None, None, Some(error)),
            Ok(Ok((status, body))) => {
                let ok = status.is_success() && body.trim().eq_ignore_ascii_case("ok");
                let error = (!ok).then(|| "the answer was not a 2xx with body OK".to_owned());
                let logged = truncate(&body, ANSWER_LOG_LIMIT).to_owned();
                (Some(status.as_u16()), Some(logged), error)
            }
        };
        DeliveryLogEntry {
            application_id: notification.application_id,
            status: notification.status.clone(),
            attempt,
            answer_status,
            answer_body,
            error,
            at: clock::now(),
        }
    }

    async fn exchange(
        &self,
        notification: &Notification,
    ) -> Result<(http::StatusCode, String), String> {
        let mut response = self
            .client
            .post(&notification.url)
            .header(self.token_header.clone(), self.token.clone())
            .header("x-connectpay-timestamp", &notification.timestamp)
            .header(header::CONTENT_TYPE, "application/json")
            .body(notification.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < ANSWER_READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(describe(&e)),
            }
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

impl Shared {
    /// Logs dropped webhooks and starts delivering the others, in the given order.
    pub(crate) fn dispatch(self: &Arc<Self>, dispatch: Dispatch) {
        for notification in dispatch.dropped {
            debug!(application = %notification.application_id, status = %notification.status, "webhook dropped");
            self.deliveries.push(DeliveryLogEntry {
                application_id: notification.application_id,
                status: notification.status,
                attempt: 0,
                answer_status: None,
                answer_body: None,
                error: Some("dropped".into()),
                at: clock::now(),
            });
        }
        if !dispatch.deliver.is_empty() {
            let shared = Arc::clone(self);
            self.tasks
                .spawn(shared.deliver_batch(dispatch.deliver, dispatch.copies));
        }
    }

    /// First attempts go one after the other so that the receiver sees them in the order
    /// chosen (this is what makes `reorder` and `release` observable); retries run apart, so
    /// one failing webhook does not hold up the rest.
    async fn deliver_batch(self: Arc<Self>, batch: Vec<Notification>, copies: u32) {
        for notification in batch {
            for _ in 0..=copies {
                let entry = self.deliverer.attempt(&notification, 1).await;
                let delivered = entry.succeeded();
                self.deliveries.push(entry);
                if !delivered {
                    let shared = Arc::clone(&self);
                    self.tasks.spawn(shared.retry(notification.clone()));
                }
            }
        }
    }

    async fn retry(self: Arc<Self>, notification: Notification) {
        for (n, delay) in self.deliverer.retry_delays.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            // Attempt 1 was the first try, so the first retry is attempt 2.
            let entry = self.deliverer.attempt(&notification, n as u32 + 2).await;
            let delivered = entry.succeeded();
            self.deliveries.push(entry);
            if delivered {
                return;
            }
        }
        warn!(
            application = %notification.application_id,
            status = %notification.status,
            url = %notification.url,
            "webhook given up after its last retry"
        );
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The error with its causes: reqwest's own message alone ("error sending request") hides
/// what actually went wrong.
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// TLS for `https://` notification URLs: ring, and the platform's roots. Built once per
/// process because loading the system roots reads files; it is a plain value, not a
/// process-wide default.
fn tls_config() -> io::Result<ClientConfig> {
    static CONFIG: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| build_tls_config().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn build_tls_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    match builder.clone().with_platform_verifier() {
        Ok(builder) => Ok(builder.with_no_client_auth()),
        Err(e) => {
            // Plain-http receivers (the usual case) still work; https ones fail visibly in
            // the delivery log instead of being trusted blindly.
            warn!("no system CA roots ({e}); https webhook receivers will be refused");
            Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoTrustedRoots(provider)))
                .with_no_client_auth())
        }
    }
}

/// Trusts no server certificate; used only when the platform has no CA roots at all.
#[derive(Debug)]
struct NoTrustedRoots(Arc<CryptoProvider>);

impl ServerCertVerifier for NoTrustedRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("ok", 10), "ok");
    }

    #[test]
    fn retry_schedule_is_time_scaled() {
        let config = SandboxConfig {
            time_scale: 1000.0,
            ..SandboxConfig::default()
        };
        let deliverer = Deliverer::new(&config).unwrap();
        assert_eq!(deliverer.retry_delays[0], Duration::from_millis(5));
        assert_eq!(deliverer.retry_delays[5], Duration::from_millis(86_400));
    }
}
