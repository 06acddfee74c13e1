//! The `connectpay-sandbox` command: flags and environment → [`SandboxConfig`], then serve
//! until SIGINT or SIGTERM. The binary itself lives in the root package and only calls
//! [`run`].

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;
use tracing_subscriber::EnvFilter;

use crate::config::{DEFAULT_WEBHOOK_TOKEN, SandboxConfig, TlsConfig};
use crate::mode::{Generation, Mode};
use crate::sandbox::Sandbox;

/// A ConnectPay Banking-as-a-Service simulator for local runs, tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "connectpay-sandbox", version)]
struct Args {
    /// Address to listen on (port 0: chosen by the OS, printed on start)
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// OAuth client id accepted in `Authorization: Basic`
    #[arg(long, env = "SANDBOX_CLIENT_ID", default_value = "sandbox-client")]
    client_id: String,
    /// OAuth client secret
    #[arg(
        long,
        env = "SANDBOX_CLIENT_SECRET",
        default_value = "sandbox-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// Authorization code accepted once (repeatable; comma-separated in the environment)
    #[arg(
        long = "auth-code",
        env = "SANDBOX_AUTH_CODES",
        value_delimiter = ',',
        default_value = "sandbox-auth-code"
    )]
    auth_codes: Vec<String>,
    /// Sandbox seconds per real second: divides token lifetimes and webhook retry delays
    #[arg(long, env = "SANDBOX_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Access-token lifetime in sandbox seconds
    #[arg(
        long = "access-token-ttl",
        env = "SANDBOX_ACCESS_TOKEN_TTL",
        default_value_t = 3600
    )]
    access_token_ttl_secs: u64,
    /// Refresh-token lifetime in sandbox seconds
    #[arg(
        long = "refresh-token-ttl",
        env = "SANDBOX_REFRESH_TOKEN_TTL",
        default_value_t = 2_592_000
    )]
    refresh_token_ttl_secs: u64,
    /// Real milliseconds until a scripted IDV decision
    #[arg(long, env = "SANDBOX_IDV_DELAY_MS", default_value_t = 2000)]
    idv_delay_ms: u64,
    /// Real milliseconds until a scripted application decision
    #[arg(long, env = "SANDBOX_REVIEW_DELAY_MS", default_value_t = 3000)]
    review_delay_ms: u64,
    /// Accepted providerId (repeatable; comma-separated in the environment)
    #[arg(
        long = "provider",
        env = "SANDBOX_PROVIDERS",
        value_delimiter = ',',
        default_value = "ONDATO"
    )]
    providers: Vec<String>,
    /// PEM server certificate chain: serve HTTPS
    #[arg(long, env = "SANDBOX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "SANDBOX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mTLS)
    #[arg(long, env = "SANDBOX_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Secret token sent with every webhook
    #[arg(
        long,
        env = "SANDBOX_WEBHOOK_TOKEN",
        default_value = DEFAULT_WEBHOOK_TOKEN,
        hide_env_values = true
    )]
    webhook_token: String,
    /// Header carrying the webhook token
    #[arg(
        long,
        env = "SANDBOX_WEBHOOK_TOKEN_HEADER",
        default_value = "x-connectpay-webhook-token"
    )]
    webhook_token_header: String,
    /// How long a webhook delivery waits for its answer (real milliseconds)
    #[arg(long, env = "SANDBOX_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// Documentation generation to simulate: sets every mode switch at once
    #[arg(long, env = "SANDBOX_GENERATION", value_enum, default_value_t = Generation::Legacy)]
    generation: Generation,
}

impl Args {
    fn into_config(self) -> SandboxConfig {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert_path), Some(key_path)) => Some(TlsConfig {
                cert_path,
                key_path,
                client_ca_path: self.client_ca,
            }),
            // clap's `requires` makes the two come together.
            _ => None,
        };
        SandboxConfig {
            listen: self.listen,
            client_id: self.client_id,
            client_secret: self.client_secret,
            auth_codes: self.auth_codes,
            time_scale: self.time_scale,
            access_token_ttl_secs: self.access_token_ttl_secs,
            refresh_token_ttl_secs: self.refresh_token_ttl_secs,
            idv_delay_ms: self.idv_delay_ms,
            review_delay_ms: self.review_delay_ms,
            providers: self.providers,
            tls,
            webhook_token: self.webhook_token,
            webhook_token_header: self.webhook_token_header,
            webhook_timeout_ms: self.webhook_timeout_ms,
            mode: Mode::for_generation(self.generation),
        }
    }
}

/// Parses the command line, serves until SIGINT/SIGTERM, and returns the exit code: `0`
/// after a signal, `1` when the sandbox cannot start, `2` for bad flags.
pub fn run() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        // No colour codes in captured logs (tests read stderr of a child process).
        .with_ansi(io::stderr().is_terminal())
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args.into_config()))
}

async fn serve(config: SandboxConfig) -> ExitCode {
    let sandbox = match Sandbox::start(config).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            error!("cannot start the sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The one line on stdout: tests started as a separate process read the URL from it.
    let announced = {
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "connectpay-sandbox listening on {}",
            sandbox.base_url()
        )
        .and_then(|()| stdout.flush())
    };
    if let Err(e) = announced {
        error!("cannot write to standard output: {e}");
        sandbox.shutdown().await;
        return ExitCode::FAILURE;
    }
    shutdown_signal().await;
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                error!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_config_defaults() {
        // Runs without SANDBOX_* variables in the test environment.
        let args = Args::try_parse_from(["connectpay-sandbox"]).unwrap();
        assert_eq!(args.into_config(), SandboxConfig::default());
    }

    #[test]
    fn flags_fill_the_config() {
        let args = Args::try_parse_from([
            "connectpay-sandbox",
            "--listen",
            "127.0.0.1:0",
            "--auth-code",
            "a",
            "--auth-code",
            "b,c",
            "--time-scale",
            "3600",
            "--provider",
            "ONDATO",
            "--provider",
            "VERIFF",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--generation",
            "newer",
        ])
        .unwrap();
        let config = args.into_config();
        assert_eq!(config.auth_codes, ["a", "b", "c"]);
        assert_eq!(config.providers, ["ONDATO", "VERIFF"]);
        assert_eq!(config.time_scale, 3600.0);
        assert_eq!(config.mode, Mode::newer());
        assert_eq!(config.tls.unwrap().cert_path, PathBuf::from("c.pem"));
    }

    #[test]
    fn tls_cert_requires_a_key() {
        assert!(Args::try_parse_from(["connectpay-sandbox", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["connectpay-sandbox", "--client-ca", "ca.pem"]).is_err());
    }
}
