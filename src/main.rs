use std::process::ExitCode;

use clap::Parser;
use onboarding_gateway::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
