use std::process::ExitCode;

use clap::Parser;
use onboarding_gateway::cli::Cli;

// mimalloc: a quarter more unary calls per core than glibc's malloc on the benchmark (BENCHMARKS.md §7).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process (ring), so that no library's HTTP client can pick another.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Cli::parse().run()
}
