//! The command line: `serve` runs the gateway, `client` calls a running one from a terminal, `config`
//! validates a configuration without starting anything.

mod client;
mod erase;
mod oauth;
mod report;
mod serve;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

pub use client::ClientCommand;

#[derive(Debug, Parser)]
#[command(
    name = "onboarding-gateway",
    version,
    about = "gRPC gateway to ConnectPay's BaaS personal onboarding API"
)]
pub struct Cli {
    /// A TOML configuration file (see the README's configuration table).
    #[arg(long, global = true, env = "ONBOARDING_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Run against an embedded ConnectPay sandbox, on loopback only, without caller authentication.
        #[arg(long)]
        sandbox: bool,
    },
    /// Call a running gateway from the terminal.
    Client {
        /// The gateway's gRPC address.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "ONBOARDING_GATEWAY_ADDR"
        )]
        addr: String,
        #[command(flatten)]
        connection: client::Connection,
        // Boxed: the KYC flags make this variant much larger than the others.
        #[command(subcommand)]
        command: Box<ClientCommand>,
    },
    /// Operate the ConnectPay OAuth pair.
    Oauth {
        #[command(subcommand)]
        command: oauth::OauthCommand,
    },
    /// How many ConnectPay notifications wait for confirmation, and since when.
    Inbox,
    /// The unfinished applications that have waited longest for news.
    Waiting {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Erase one application and everything held about it (events, waiting notifications, idempotency
    /// records), e.g. on a client's request for erasure. ConnectPay's own records are not touched.
    Erase {
        #[arg(long)]
        application_id: String,
    },
    /// Apply the store's migrations and exit (for deployments that run them as a separate step).
    Migrate,
    /// Validate the configuration and report every problem.
    Config {
        /// Validate for `serve --sandbox` instead of `serve`.
        #[arg(long)]
        sandbox: bool,
        /// Open none of the files the configuration names (certificates, keys, secrets, token files):
        /// for a configuration written for another machine, such as a Helm chart's rendered one. Each
        /// `*_file` key counts as set; what the files hold is checked only where they are mounted.
        #[arg(long)]
        skip_files: bool,
    },
}

/// The runtime of a one-shot command (everything but `serve`): one thread is plenty.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve { sandbox } => serve::run(self.config.as_deref(), sandbox),
            Command::Client {
                addr,
                connection,
                command,
            } => client::run(&addr, &connection, *command),
            Command::Config {
                sandbox,
                skip_files,
            } => serve::check(self.config.as_deref(), sandbox, skip_files),
            Command::Oauth { command } => oauth::run(self.config.as_deref(), command),
            Command::Migrate => serve::migrate(self.config.as_deref()),
            Command::Erase { application_id } => {
                erase::run(self.config.as_deref(), &application_id)
            }
            Command::Inbox => report::inbox(self.config.as_deref()),
            Command::Waiting { limit } => report::waiting(self.config.as_deref(), limit),
        }
    }
}
