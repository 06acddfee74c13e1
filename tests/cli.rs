//! The binary's command line: production mode refuses to start without ConnectPay settings, naming each
//! missing key; the sandbox mode needs none.

use std::process::Command;

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
        .args(args)
        // Only the defaults: nothing from the developer's environment.
        .env_clear()
        .output()
        .expect("the binary runs")
}

#[test]
fn serve_refuses_to_start_without_connectpay_settings_and_names_every_key() {
    let out = gateway(&["serve"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "connectpay.base_url",
        "connectpay.client_id",
        "connectpay.client_secret",
        "connectpay.notification_url",
        "connectpay.tls.client_cert_file",
        "connectpay.tls.client_key_file",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

#[test]
fn config_check_accepts_the_defaults_for_the_sandbox_and_reads_the_environment() {
    let out = gateway(&["config", "--sandbox"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
        .args(["config", "--sandbox"])
        .env_clear()
        .env("ONBOARDING_GATEWAY_CONNECTPAY__RETRY__MAX_ATTEMPTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connectpay.retry.max_attempts"));
}

#[test]
fn a_missing_configuration_file_is_reported() {
    let out = gateway(&["--config", "/nonexistent/gateway.toml", "config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gateway.toml"));
}
