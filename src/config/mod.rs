//! Configuration: commented defaults → optional TOML file → environment → `validate()`.
//!
//! `defaults.toml` beside this file is the reference for every key. Secrets may come inline or from files;
//! files are read once, here, and their contents live only in `SecretString`s.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

mod auth;
pub mod reload;
mod validate;

pub use auth::{JWT_ALGORITHMS, RPCS};

pub const DEFAULTS: &str = include_str!("defaults.toml");
pub const ENV_PREFIX: &str = "ONBOARDING_GATEWAY_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub health: HealthConfig,
    pub shutdown: ShutdownConfig,
    pub webhook: WebhookConfig,
    pub store: StoreConfig,
    pub poll: PollConfig,
    pub retention: RetentionConfig,
    pub watch: WatchConfig,
    pub connectpay: ConnectPayConfig,
    pub log: LogConfig,
    pub reload: ReloadConfig,
    pub sandbox: SandboxConfig,
    /// Whether the files this configuration names were read (see [`Config::load_without_files`]).
    #[serde(skip)]
    pub files: Files,
}

/// Whether a loaded configuration has read the files it names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Files {
    /// Secret files read into their keys, every named file checked to exist: what `serve` needs.
    #[default]
    Read,
    /// Nothing opened: the configuration was written for another machine, where its files are mounted
    /// (a Helm chart's rendered configuration, say). Only the keys themselves are checked.
    Unread,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
    pub max_in_flight: usize,
    pub rate_limit_per_caller: u32,
    pub rate_limit_burst: u32,
    #[serde(default)]
    pub tls: ServerTlsConfig,
}

/// The gRPC port's TLS: the gateway's certificate and, for callers authenticated by certificate, the CA
/// that issues theirs. Reloaded when the files change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// How a caller proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// A client certificate issued by `grpc.tls.client_ca_file`; the identity is its first URI SAN (e.g.
    /// a SPIFFE id), else its first DNS SAN.
    Mtls,
    /// `authorization: Bearer <JWT>`, verified against `auth.jwt`.
    Jwt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub methods: Vec<AuthMethod>,
    pub allow_unauthenticated: bool,
    /// Caller identity → the RPCs (by name) it may call.
    #[serde(default)]
    pub permissions: std::collections::BTreeMap<String, Vec<String>>,
    pub jwt: JwtConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub jwks_file: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<String>,
    pub identity_claim: String,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A second, plaintext port serving only `grpc.health.v1`, for Kubernetes' gRPC probes (which
    /// speak neither TLS nor tokens) when the API port requires them.
    pub listen: Option<SocketAddr>,
    pub liveness_service: String,
    pub readiness_service: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub path: String,
    pub token_header: String,
    #[serde(default)]
    pub tokens: Vec<SecretString>,
    pub tokens_file: Option<PathBuf>,
    pub allowed_sources: Vec<IpNet>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub key: Option<SecretString>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    pub durability: crate::store::sqlite::Durability,
    pub read_connections: u32,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    pub migrate_at_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    #[serde(with = "humantime_serde")]
    pub idv_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub review_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    pub max_requests_per_second: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(with = "humantime_serde")]
    pub finished_applications: Duration,
    #[serde(with = "humantime_serde")]
    pub events: Duration,
    #[serde(with = "humantime_serde")]
    pub requests: Duration,
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub tail_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectPayConfig {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    pub auth_code: Option<SecretString>,
    pub auth_code_file: Option<PathBuf>,
    pub notification_url: String,
    pub providers: Vec<String>,
    pub allow_insecure_http: bool,
    pub proxy_url: Option<SecretString>,
    pub proxy_url_file: Option<PathBuf>,
    pub no_proxy: String,
    pub max_in_flight: usize,
    pub tls: TlsConfig,
    pub breaker: BreakerConfig,
    pub paths: PathsConfig,
    pub timeouts: TimeoutsConfig,
    pub retry: RetryConfig,
    pub oauth: OauthConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub ca_bundle_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub token: String,
    pub submit_idv: String,
    pub get_application: String,
    pub get_idv: String,
    pub initiate_application: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    #[serde(with = "humantime_serde")]
    pub deadline_margin: Duration,
    #[serde(with = "humantime_serde")]
    pub background: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    pub budget_percent: u32,
    pub budget_min_per_second: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthConfig {
    #[serde(with = "humantime_serde")]
    pub refresh_ahead: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub idv_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub review_delay: Duration,
}

/// How the gateway is being run, which decides what configuration is mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Against a real ConnectPay: everything needed to reach it must be configured.
    Production,
    /// Against the embedded sandbox, which supplies the ConnectPay settings itself.
    Sandbox,
}

/// Every problem found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads defaults, then `file`, then the process environment; reads secret files. Does not validate.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Like [`Config::load`] with the environment replaced by `overrides` (a TOML document): for tests and
    /// embedding, so they do not depend on the process environment.
    pub fn load_with(file: Option<&Path>, overrides: &str) -> Result<Config, ConfigError> {
        Self::load_from(file, Toml::string(overrides))
    }

    /// Like [`Config::load`], without opening any file the configuration names: for checking a
    /// configuration written for another machine. Its secrets stay unset; validation takes a `*_file` key
    /// as the value it names.
    pub fn load_without_files(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Self::extract(file, Env::prefixed(ENV_PREFIX).split("__"))?;
        config.files = Files::Unread;
        let mut problems = config.secret_conflicts();
        if let Some(problem) = config.tokens_conflict() {
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }

    fn load_from(file: Option<&Path>, last: impl figment::Provider) -> Result<Config, ConfigError> {
        let mut config = Self::extract(file, last)?;
        config.read_secret_files()?;
        Ok(config)
    }

    fn extract(file: Option<&Path>, last: impl figment::Provider) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(vec![format!(
                    "--config: no such file: {}",
                    file.display()
                )]));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(last)
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(describe_figment_error).collect()))
    }

    /// Each secret that may be given inline or as a file: its key, the inline value, the file.
    fn secret_slots(&mut self) -> [(&'static str, &mut Option<SecretString>, &Option<PathBuf>); 5] {
        let cp = &mut self.connectpay;
        [
            (
                "connectpay.client_secret",
                &mut cp.client_secret,
                &cp.client_secret_file,
            ),
            (
                "connectpay.auth_code",
                &mut cp.auth_code,
                &cp.auth_code_file,
            ),
            ("store.key", &mut self.store.key, &self.store.key_file),
            ("store.url", &mut self.store.url, &self.store.url_file),
            (
                "connectpay.proxy_url",
                &mut cp.proxy_url,
                &cp.proxy_url_file,
            ),
        ]
    }

    /// Secrets given both inline and as a file.
    fn secret_conflicts(&mut self) -> Vec<String> {
        self.secret_slots()
            .into_iter()
            .filter(|(_, inline, file)| inline.is_some() && file.is_some())
            .map(|(key, _, _)| format!("{key} and {key}_file: set only one"))
            .collect()
    }

    fn tokens_conflict(&self) -> Option<String> {
        (self.webhook.tokens_file.is_some() && !self.webhook.tokens.is_empty())
            .then(|| "webhook.tokens and webhook.tokens_file: set only one".to_owned())
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (key, inline, file) in self.secret_slots() {
            if let Some(problem) = resolve_secret(key, inline, file.as_deref()) {
                problems.push(problem);
            }
        }
        // The tokens file is read again whenever it changes (`app` watches it), so its tokens are not
        // copied into `webhook.tokens`, which stay the fixed, inline ones. Here it is only checked, so that a
        // bad file stops the start and `config` names the problem.
        if let Some(file) = &self.webhook.tokens_file {
            problems.extend(self.tokens_conflict());
            match std::fs::read(file) {
                Ok(content) => {
                    if let Err(problem) = WebhookConfig::parse_tokens_file(&content) {
                        problems.push(format!("webhook.tokens_file: {problem}"));
                    }
                }
                Err(e) => problems.push(format!(
                    "webhook.tokens_file: cannot read {}: {e}",
                    file.display()
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// Reads `file` into `inline` when given; both at once is a mistake worth refusing.
fn resolve_secret(
    key: &str,
    inline: &mut Option<SecretString>,
    file: Option<&Path>,
) -> Option<String> {
    let file = file?;
    if inline.is_some() {
        return Some(format!("{key} and {key}_file: set only one"));
    }
    match std::fs::read_to_string(file) {
        // Mounted secrets often end with a newline that is not part of the secret.
        Ok(content) => {
            *inline = Some(SecretString::from(
                content.trim_end_matches(['\r', '\n']).to_owned(),
            ));
            None
        }
        Err(e) => Some(format!("{key}_file: cannot read {}: {e}", file.display())),
    }
}

/// Figment's errors name the key path; keep only that and the problem (never the value, which may be a
/// secret).
fn describe_figment_error(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        "configuration".to_owned()
    } else {
        e.path.join(".")
    };
    let problem = match &e.kind {
        // The "found" half would quote the value, which may be a secret.
        figment::error::Kind::InvalidType(_, expected) => format!("expected {expected}"),
        figment::error::Kind::InvalidValue(_, expected) => {
            format!("invalid value, expected {expected}")
        }
        // The path already ends with the unknown key.
        figment::error::Kind::UnknownField(..) => "unknown key".to_owned(),
        figment::error::Kind::MissingField(field) => {
            return format!("{key}.{field}: missing");
        }
        figment::error::Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    format!("{key}: {problem}")
}

#[cfg(test)]
mod tests;
