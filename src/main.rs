use std::process::ExitCode;

use clap::Parser;
use onboarding_gateway::cli::Cli;

fn main() -> ExitCode {
    // One TLS provider for the whole process (ring), so that no library's HTTP client can pick another.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Cli::parse().run()
}
