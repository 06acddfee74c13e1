//! Loading and validating the configuration: the defaults, secrets and webhook tokens read from files,
//! environment overrides, and errors that name the key, never the value.

use super::*;
use secrecy::ExposeSecret;

#[test]
fn defaults_load_and_suit_the_sandbox_but_not_production() {
    let config = Config::load_with(None, "").unwrap();
    assert_eq!(config.grpc.listen.port(), 50051);
    assert_eq!(config.connectpay.providers, ["ONDATO"]);
    config.validate(Mode::Sandbox).unwrap();
    let problems = config.validate(Mode::Production).unwrap_err().0;
    for key in [
        "connectpay.base_url",
        "connectpay.client_id",
        "connectpay.client_secret",
        "connectpay.notification_url",
        "connectpay.tls.client_cert_file",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key} not in {problems:?}"
        );
    }
}

#[test]
fn errors_name_the_key_and_never_the_value() {
    let e = Config::load_with(None, "[connectpay.retry]\nmax_attempts = \"s3cr3t\"").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("connectpay.retry.max_attempts"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    let e = Config::load_with(None, "[grpc]\nlisten_typo = 1").unwrap_err();
    assert!(
        e.to_string().contains("grpc.listen_typo: unknown key"),
        "{e}"
    );
}

#[test]
fn webhook_tokens_from_a_file_and_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        "current-token-0123456789abcdefghijkl\n\nnext-token-0123456789abcdefghijklmno\n",
    )
    .unwrap();
    let from_file = format!("[webhook]\ntokens_file = {:?}", file.to_str().unwrap());
    let config = Config::load_with(None, &from_file).unwrap();
    // Read by the receiver (and again whenever it changes); the inline tokens stay the fixed ones.
    assert!(config.webhook.tokens.is_empty());
    config.validate(Mode::Sandbox).unwrap();
    let tokens = std::fs::read(&file).unwrap();
    let tokens = WebhookConfig::parse_tokens_file(&tokens).unwrap();
    assert_eq!(
        tokens.iter().map(|t| t.expose_secret()).collect::<Vec<_>>(),
        [
            "current-token-0123456789abcdefghijkl",
            "next-token-0123456789abcdefghijklmno"
        ]
    );
    let problems = config.validate(Mode::Production).unwrap_err().0;
    assert!(
        !problems.iter().any(|p| p.starts_with("webhook.tokens")),
        "a tokens file is a token source: {problems:?}"
    );

    // A file breaking the rules stops the load, naming the key and the line, never a value.
    std::fs::write(
        &file,
        "current-token-0123456789abcdefghijkl\nshort-s3cr3t\n\nnext-token-0123456789abcdefghijklmno\nthird-token-0123456789abcdefghijklmn\n",
    )
    .unwrap();
    let e = Config::load_with(None, &from_file).unwrap_err().to_string();
    assert!(e.contains("webhook.tokens_file: "), "{e}");
    assert!(e.contains("at most two"), "{e}");
    assert!(e.contains("line 2: must be 16-256 characters"), "{e}");
    assert!(!e.contains("s3cr3t") && !e.contains("token-0123"), "{e}");
    for content in [
        &b""[..],
        b"\n  \n",
        b"\xffcurrent-token-0123456789abcdefghijk",
    ] {
        std::fs::write(&file, content).unwrap();
        let e = Config::load_with(None, &from_file).unwrap_err().to_string();
        assert!(e.contains("webhook.tokens_file: "), "{e}");
    }
    std::fs::write(&file, "current-token-0123456789abcdefghijkl\n").unwrap();
    let both = Config::load_with(
        None,
        &format!("{from_file}\ntokens = [\"next-token-0123456789abcdefghijklmno\"]"),
    );
    assert!(both.unwrap_err().to_string().contains("set only one"));

    let config = Config::load_with(
        None,
        "[webhook]\ntokens = [\"short\", \"has space 0123456789abcdef\", \"x0123456789abcdef\"]",
    )
    .unwrap();
    let problems = config.validate(Mode::Sandbox).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("webhook.tokens: at most two")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("webhook.tokens[0]")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("webhook.tokens[1]")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("short")),
        "values are never printed: {problems:?}"
    );
}

#[test]
fn plain_http_needs_the_explicit_switch() {
    let config = Config::load_with(
        None,
        "[connectpay]\nbase_url = \"http://127.0.0.1:1\"\nnotification_url = \"https://gw.example.com/wh\"",
    )
    .unwrap();
    let problems = config.validate(Mode::Sandbox).unwrap_err().0;
    assert!(
        problems[0].starts_with("connectpay.base_url: must be https"),
        "{problems:?}"
    );
}

#[test]
fn secrets_come_from_files_without_their_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file\n").unwrap();
    let config = Config::load_with(
        None,
        &format!(
            "[connectpay]\nclient_secret_file = {:?}",
            file.to_str().unwrap()
        ),
    )
    .unwrap();
    assert_eq!(
        config.connectpay.client_secret.unwrap().expose_secret(),
        "from-file"
    );

    let both = Config::load_with(
        None,
        &format!(
            "[connectpay]\nclient_secret = \"x\"\nclient_secret_file = {:?}",
            file.to_str().unwrap()
        ),
    );
    assert!(both.unwrap_err().to_string().contains("set only one"));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn environment_variables_override_nested_keys() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("ONBOARDING_GATEWAY_CONNECTPAY__CLIENT_ID", "from-env");
        jail.set_env("ONBOARDING_GATEWAY_CONNECTPAY__RETRY__MAX_ATTEMPTS", "5");
        let config = Config::load(None).unwrap();
        assert_eq!(config.connectpay.client_id, "from-env");
        assert_eq!(config.connectpay.retry.max_attempts, 5);
        Ok(())
    });
}
