use std::process::ExitCode;

use clap::Parser;
use onboarding_gateway::cli::Cli;

// mimalloc: a quarter more unary calls per core than glibc's malloc on the benchmark. Built with `no_thp`:
// with transparent huge pages, every 2 MiB page it touched again after returning memory was zeroed whole,
// a tenth of the gateway's CPU under load (BENCHMARKS.md §7).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process (ring), so that no library's HTTP client can pick another.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Cli::parse().run()
}
