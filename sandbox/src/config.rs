//! The sandbox's configuration: the same settings as the command-line flags.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mode::Mode;

/// Everything [`crate::Sandbox::start`] needs. Every field has the default of its flag, so a
/// config file (or `..Default::default()`) only names what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxConfig {
    /// Address to listen on; port `0` lets the OS choose.
    pub listen: SocketAddr,
    /// OAuth client id accepted in `Authorization: Basic`.
    pub client_id: String,
    /// OAuth client secret accepted in `Authorization: Basic`.
    pub client_secret: String,
    /// Authorization codes accepted, each once.
    pub auth_codes: Vec<String>,
    /// Sandbox seconds per real second: divides token lifetimes and the webhook retry schedule.
    pub time_scale: f64,
    /// Access-token lifetime in sandbox seconds.
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in sandbox seconds.
    pub refresh_token_ttl_secs: u64,
    /// Real milliseconds until a scripted IDV decision.
    pub idv_delay_ms: u64,
    /// Real milliseconds until a scripted application decision.
    pub review_delay_ms: u64,
    /// Accepted `providerId` values.
    pub providers: Vec<String>,
    /// Serve HTTPS (and optionally require client certificates) instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Secret token sent with every webhook.
    pub webhook_token: String,
    /// Header carrying [`SandboxConfig::webhook_token`].
    pub webhook_token_header: String,
    /// How long a webhook delivery waits for its `200 OK` (real time, not scaled).
    pub webhook_timeout_ms: u64,
    /// The mode switches at start; also accepted as `generation` (`"legacy"` / `"newer"`).
    #[serde(alias = "generation")]
    pub mode: Mode,
}

/// PEM files for serving HTTPS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// Server certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// The server certificate's private key.
    pub key_path: PathBuf,
    /// CA bundle; when set, every client must present a certificate signed by it (mTLS).
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
}

pub const DEFAULT_WEBHOOK_TOKEN: &str = "sandbox-webhook-token-0123456789abcd";

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8085)),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            auth_codes: vec!["sandbox-auth-code".into()],
            time_scale: 1.0,
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: 2_592_000,
            idv_delay_ms: 2000,
            review_delay_ms: 3000,
            providers: vec!["ONDATO".into()],
            tls: None,
            webhook_token: DEFAULT_WEBHOOK_TOKEN.into(),
            webhook_token_header: "x-connectpay-webhook-token".into(),
            webhook_timeout_ms: 10_000,
            mode: Mode::legacy(),
        }
    }
}

impl SandboxConfig {
    /// Rejects settings the sandbox cannot run with, before anything is bound.
    pub(crate) fn validate(&self) -> io::Result<()> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return invalid(format!(
                "timeScale must be a positive number, not {}",
                self.time_scale
            ));
        }
        if self.providers.iter().all(|p| p.is_empty()) {
            return invalid("at least one provider must be configured".into());
        }
        if http::HeaderName::from_bytes(self.webhook_token_header.as_bytes()).is_err() {
            return invalid(format!(
                "webhookTokenHeader {:?} is not a valid header name",
                self.webhook_token_header
            ));
        }
        if http::HeaderValue::from_str(&self.webhook_token).is_err() {
            return invalid("webhookToken is not a valid header value".into());
        }
        Ok(())
    }

    /// A lifetime in sandbox seconds as whole real seconds: ÷ time scale, rounded down, at
    /// least 1 (what the token endpoint reports and enforces).
    pub(crate) fn real_secs(&self, sandbox_secs: u64) -> u64 {
        // Float maths is fine here: the result is a whole number of seconds anyway.
        ((sandbox_secs as f64 / self.time_scale).floor() as u64).max(1)
    }

    /// A duration in sandbox seconds as real time (÷ time scale, not rounded).
    pub(crate) fn scaled(&self, sandbox_secs: u64) -> Duration {
        Duration::from_secs_f64(sandbox_secs as f64 / self.time_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_camel_case_with_defaults() {
        let config: SandboxConfig = serde_json::from_str(
            r#"{"listen": "127.0.0.1:0", "timeScale": 60, "authCodes": ["a", "b"],
                "generation": "newer",
                "tls": {"certPath": "c.pem", "keyPath": "k.pem"}}"#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.time_scale, 60.0);
        assert_eq!(config.auth_codes, ["a", "b"]);
        assert_eq!(config.mode, Mode::newer());
        assert_eq!(config.client_id, "sandbox-client");
        assert_eq!(config.tls.unwrap().client_ca_path, None);
    }

    #[test]
    fn scales_lifetimes_down_to_at_least_one_second() {
        let config = SandboxConfig {
            time_scale: 7200.0,
            ..SandboxConfig::default()
        };
        assert_eq!(config.real_secs(3600), 1);
        assert_eq!(config.real_secs(2_592_000), 360);
        assert_eq!(config.scaled(3600), Duration::from_millis(500));
    }

    #[test]
    fn default_token_is_36_chars_and_config_is_valid() {
        assert_eq!(DEFAULT_WEBHOOK_TOKEN.len(), 36);
        SandboxConfig::default().validate().unwrap();
        let bad = SandboxConfig {
            time_scale: 0.0,
            ..SandboxConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
