//! The ConnectPay sandbox as its own process; see `sandbox/README.md`.

fn main() -> std::process::ExitCode {
    connectpay_sandbox::cli::run()
}
