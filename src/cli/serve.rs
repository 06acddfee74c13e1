//! `serve` and `config check`.

use std::{path::Path, process::ExitCode};

use tokio_util::sync::CancellationToken;

use crate::{
    app,
    config::{Config, Mode},
    shutdown, telemetry,
};

pub(super) fn load(file: Option<&Path>, mode: Mode) -> Result<Config, ExitCode> {
    let config = Config::load(file).and_then(|c| c.validate(mode).map(|()| c));
    config.map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

pub fn check(file: Option<&Path>, sandbox: bool, skip_files: bool) -> ExitCode {
    let mode = if sandbox {
        Mode::Sandbox
    } else {
        Mode::Production
    };
    let loaded = if skip_files {
        Config::load_without_files(file)
            .and_then(|c| c.validate(mode).map(|()| c))
            .map_err(|e| {
                eprint!("{e}");
                ExitCode::from(2)
            })
    } else {
        load(file, mode)
    };
    match loaded {
        Ok(_) => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn migrate(file: Option<&Path>) -> ExitCode {
    let config = match load(file, Mode::Production) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let _logs = runtime.block_on(async { telemetry::init(&config.log) });
    match runtime.block_on(app::migrate(&config)) {
        Ok(()) => {
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migration failed: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(file: Option<&Path>, sandbox: bool) -> ExitCode {
    let mode = if sandbox {
        Mode::Sandbox
    } else {
        Mode::Production
    };
    let config = match load(file, mode) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let grace = config.shutdown.grace_period;
    // Inside the runtime: the OTLP gRPC exporter needs it.
    let telemetry = runtime.block_on(async { telemetry::init(&config.log) });
    let code = runtime.block_on(async {
        let stop = CancellationToken::new();
        shutdown::cancel_on_signal(stop.clone());
        let started = if sandbox {
            app::start_with_sandbox(config, stop.clone()).await
        } else {
            app::start(config, stop.clone()).await
        };
        match started {
            Ok(gateway) => {
                if sandbox {
                    print_sandbox_banner(&gateway);
                }
                // After the signal, the gateway has the grace period to finish; Kubernetes kills it soon
                // after anyway, so better to say so and exit.
                let deadline = async {
                    stop.cancelled().await;
                    tokio::time::sleep(grace).await;
                };
                tokio::select! {
                    () = gateway.wait() => {
                        tracing::info!("stopped");
                        ExitCode::SUCCESS
                    }
                    () = deadline => {
                        tracing::error!(?grace, "the shutdown grace period ran out with work unfinished");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("cannot start: {e}");
                ExitCode::FAILURE
            }
        }
    });
    telemetry.shutdown();
    // Tasks still running (a stuck call, say) must not hold the process past its grace period.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

fn print_sandbox_banner(gateway: &app::Gateway) {
    let grpc = gateway.grpc_addr;
    let webhook = gateway.webhook_addr;
    let sandbox = gateway.sandbox_url.as_deref().unwrap_or("?");
    println!(
        "\
onboarding-gateway is running in SANDBOX MODE: an embedded ConnectPay simulator, loopback only,
NO CALLER AUTHENTICATION. Never expose this mode.

  gRPC API            {grpc}  (connectpay.onboarding.v1.Onboarding, health, reflection)
  webhook receiver    {webhook}  (the sandbox's notifications)
  ConnectPay sandbox  {sandbox}

Try it from another terminal:
  onboarding-gateway client --addr http://{grpc} submit --external-reference client-42 --session-id demo-session
  onboarding-gateway client --addr http://{grpc} watch --external-reference client-42
  grpcurl -plaintext {grpc} list"
    );
}
