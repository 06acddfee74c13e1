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

/// A production configuration whose secrets and certificates are files mounted elsewhere (a Helm chart's
/// rendered configuration): `config --skip-files` checks its keys without opening the files; plain
/// `config` opens them and names each one missing here.
#[test]
fn config_skip_files_checks_a_configuration_written_for_another_machine() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let mounted = "/nonexistent/secrets";
    std::fs::write(
        &file,
        format!(
            r#"
[grpc.tls]
cert_file = "{mounted}/grpc/tls.crt"
key_file = "{mounted}/grpc/tls.key"
client_ca_file = "{mounted}/grpc/ca.crt"
[auth]
methods = ["mtls"]
[health]
listen = "0.0.0.0:8081"
[webhook]
tokens_file = "{mounted}/webhook/tokens"
[store]
url_file = "{mounted}/store/url"
key_file = "{mounted}/store/key"
[connectpay]
base_url = "https://api-stage.connectpay.com"
client_id = "devapp"
client_secret_file = "{mounted}/connectpay/client-secret"
notification_url = "https://gateway.example.com/webhooks/connectpay"
[connectpay.tls]
client_cert_file = "{mounted}/connectpay/tls.crt"
client_key_file = "{mounted}/connectpay/tls.key"
"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let out = gateway(&["--config", path, "config", "--skip-files"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = gateway(&["--config", path, "config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "connectpay.client_secret_file",
        "store.key_file",
        "store.url_file",
        "webhook.tokens_file",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }

    // Skipping files is not skipping checks: a key a method needs but nobody set, and two keys that
    // contradict each other, are still refused.
    let original = std::fs::read_to_string(&file).unwrap();
    for (change, key) in [
        (
            ("methods = [\"mtls\"]", "methods = [\"jwt\"]"),
            "auth.jwt.jwks_file",
        ),
        (
            ("[webhook]", "[webhook]\ntokens = [\"x\"]"),
            "webhook.tokens and webhook.tokens_file",
        ),
    ] {
        std::fs::write(&file, original.replace(change.0, change.1)).unwrap();
        let out = gateway(&["--config", path, "config", "--skip-files"]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}
