//! `Config::validate`: every problem found, each naming its key, never its value.

use secrecy::SecretString;

use super::{Config, ConfigError, Files, Mode, WebhookConfig};

impl Config {
    /// Checks everything `mode` needs; every problem names its key.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let cp = &self.connectpay;
        if mode == Mode::Production {
            if cp.base_url.is_empty() {
                problems
                    .push("connectpay.base_url: required (e.g. https://api.connectpay.com)".into());
            }
            if cp.client_id.is_empty() {
                problems.push("connectpay.client_id: required".into());
            }
            if cp.client_secret.is_none() && cp.client_secret_file.is_none() {
                problems.push("connectpay.client_secret (or client_secret_file): required".into());
            }
            if cp.notification_url.is_empty() {
                problems.push("connectpay.notification_url: required (the public URL of the webhook receiver)".into());
            }
            if !cp.allow_insecure_http {
                if cp.tls.client_cert_file.is_none() {
                    problems.push("connectpay.tls.client_cert_file: required (ConnectPay requires mutual TLS)".into());
                }
                if cp.tls.client_key_file.is_none() {
                    problems.push(
                        "connectpay.tls.client_key_file: required (ConnectPay requires mutual TLS)"
                            .into(),
                    );
                }
            }
        }
        for (key, url) in [
            ("connectpay.base_url", &cp.base_url),
            ("connectpay.notification_url", &cp.notification_url),
        ] {
            if !url.is_empty()
                && let Some(problem) = url_problem(url, cp.allow_insecure_http)
            {
                problems.push(format!("{key}: {problem}"));
            }
        }
        if cp.tls.client_cert_file.is_some() != cp.tls.client_key_file.is_some() {
            problems
                .push("connectpay.tls: client_cert_file and client_key_file go together".into());
        }
        for (key, file) in [
            ("connectpay.tls.client_cert_file", &cp.tls.client_cert_file),
            ("connectpay.tls.client_key_file", &cp.tls.client_key_file),
            ("connectpay.tls.ca_bundle_file", &cp.tls.ca_bundle_file),
        ] {
            if let Some(file) = file
                && self.files == Files::Read
                && !file.is_file()
            {
                problems.push(format!("{key}: no such file: {}", file.display()));
            }
        }
        if cp.providers.is_empty() || cp.providers.iter().any(|p| p.trim().is_empty()) {
            problems.push("connectpay.providers: at least one non-empty provider id".into());
        }
        for (key, path, placeholder) in [
            ("connectpay.paths.token", &cp.paths.token, None),
            ("connectpay.paths.submit_idv", &cp.paths.submit_idv, None),
            (
                "connectpay.paths.get_application",
                &cp.paths.get_application,
                Some("{applicationId}"),
            ),
            (
                "connectpay.paths.get_idv",
                &cp.paths.get_idv,
                Some("{personId}"),
            ),
            (
                "connectpay.paths.initiate_application",
                &cp.paths.initiate_application,
                Some("{applicationId}"),
            ),
        ] {
            if !path.starts_with('/') {
                problems.push(format!("{key}: must start with /"));
            }
            if let Some(placeholder) = placeholder
                && !path.contains(placeholder)
            {
                problems.push(format!("{key}: must contain {placeholder}"));
            }
        }
        for (key, value) in [
            ("connectpay.timeouts.request", cp.timeouts.request),
            ("connectpay.timeouts.background", cp.timeouts.background),
            ("connectpay.timeouts.connect", cp.timeouts.connect),
            ("connectpay.retry.initial_backoff", cp.retry.initial_backoff),
            ("connectpay.retry.max_backoff", cp.retry.max_backoff),
            ("connectpay.oauth.request_timeout", cp.oauth.request_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{key}: must be more than zero"));
            }
        }
        if cp.retry.max_attempts == 0 {
            problems.push("connectpay.retry.max_attempts: at least 1".into());
        }
        self.validate_webhook(mode, &mut problems);
        self.validate_serving(&mut problems);
        self.validate_auth(mode, &mut problems);
        self.validate_store(mode, &mut problems);
        for (key, value) in [
            ("watch.heartbeat_interval", self.watch.heartbeat_interval),
            ("watch.tail_interval", self.watch.tail_interval),
        ] {
            if value.is_zero() {
                problems.push(format!("{key}: must be more than zero"));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!("log.level: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }
}

impl Config {
    fn validate_serving(&self, problems: &mut Vec<String>) {
        let grpc = &self.grpc;
        for (key, zero) in [
            ("grpc.max_message_bytes", grpc.max_message_bytes == 0),
            (
                "grpc.max_concurrent_streams",
                grpc.max_concurrent_streams == 0,
            ),
            ("grpc.max_in_flight", grpc.max_in_flight == 0),
            ("grpc.keepalive_interval", grpc.keepalive_interval.is_zero()),
            ("grpc.keepalive_timeout", grpc.keepalive_timeout.is_zero()),
            ("grpc.max_connection_age", grpc.max_connection_age.is_zero()),
            (
                "connectpay.max_in_flight",
                self.connectpay.max_in_flight == 0,
            ),
            (
                "connectpay.breaker.open_for",
                self.connectpay.breaker.open_for.is_zero(),
            ),
            (
                "shutdown.grace_period",
                self.shutdown.grace_period.is_zero(),
            ),
        ] {
            if zero {
                problems.push(format!("{key}: must be more than zero"));
            }
        }
        if grpc.rate_limit_per_caller > 0 && grpc.rate_limit_burst == 0 {
            problems
                .push("grpc.rate_limit_burst: at least 1 when rate_limit_per_caller is set".into());
        }
        let health = &self.health;
        if health.liveness_service.is_empty()
            || health.readiness_service.is_empty()
            || health.liveness_service == health.readiness_service
        {
            problems.push(
                "health: liveness_service and readiness_service must be two different names".into(),
            );
        }
        if self.shutdown.drain_delay >= self.shutdown.grace_period {
            problems
                .push("shutdown.drain_delay: must be shorter than shutdown.grace_period".into());
        }
        if let Some(proxy) = &self.connectpay.proxy_url
            && reqwest::Proxy::all(secrecy::ExposeSecret::expose_secret(proxy)).is_err()
        {
            problems.push("connectpay.proxy_url: not a proxy URL".into());
        }
        if self.connectpay.retry.budget_percent > 1000 {
            problems.push("connectpay.retry.budget_percent: at most 1000".into());
        }
    }

    fn validate_store(&self, mode: Mode, problems: &mut Vec<String>) {
        let store = &self.store;
        if mode == Mode::Production {
            if store.url.is_none() && store.url_file.is_none() {
                problems.push(
                    "store.url (or url_file): required (sqlite://PATH or postgres://…)".into(),
                );
            }
            if store.key.is_none() && store.key_file.is_none() {
                problems
                    .push("store.key (or key_file): required (base64 of 32 random bytes)".into());
            }
        }
        if let Some(url) = &store.url {
            // Only the scheme is named: the rest may carry a password.
            let url = secrecy::ExposeSecret::expose_secret(url);
            if crate::store::Backend::of(url).is_none() {
                problems
                    .push("store.url: must start with sqlite:, postgres: or postgresql:".into());
            }
        }
        if let Some(key) = &store.key
            && let Err(e) = crate::store::StoreKey::from_secret(key)
        {
            problems.push(format!("store.key: {e}"));
        }
        let poll = &self.poll;
        for (key, value) in [
            ("poll.idv_interval", poll.idv_interval),
            ("poll.review_interval", poll.review_interval),
            ("poll.max_interval", poll.max_interval),
            ("retention.events", self.retention.events),
            ("retention.requests", self.retention.requests),
            (
                "retention.cleanup_interval",
                self.retention.cleanup_interval,
            ),
            ("store.busy_timeout", store.busy_timeout),
            ("store.acquire_timeout", store.acquire_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{key}: must be more than zero"));
            }
        }
        if !(poll.max_requests_per_second > 0.0 && poll.max_requests_per_second.is_finite()) {
            problems.push("poll.max_requests_per_second: must be more than zero".into());
        }
    }

    fn validate_webhook(&self, mode: Mode, problems: &mut Vec<String>) {
        let wh = &self.webhook;
        // The tokens file's own content is checked when it is read (at load, and at every reload).
        if mode == Mode::Production && wh.tokens.is_empty() && wh.tokens_file.is_none() {
            problems.push("webhook.tokens (or tokens_file): at least one token is required".into());
        }
        let inline: Vec<&str> = wh
            .tokens
            .iter()
            .map(secrecy::ExposeSecret::expose_secret)
            .collect();
        check_token_set(&inline, |at, problem| match at {
            None => problems.push(format!("webhook.tokens: {problem}")),
            Some(i) => problems.push(format!("webhook.tokens[{i}]: {problem}")),
        });
        if http::HeaderName::from_bytes(wh.token_header.as_bytes()).is_err() {
            problems.push("webhook.token_header: not a valid header name".into());
        }
        if !wh.path.starts_with('/') {
            problems.push("webhook.path: must start with /".into());
        }
        if wh.allowed_sources.is_empty() {
            problems.push("webhook.allowed_sources: at least one address range".into());
        }
        if !(1024..=1024 * 1024).contains(&wh.max_body_bytes) {
            problems.push("webhook.max_body_bytes: between 1024 and 1048576".into());
        }
        for (key, value) in [
            ("webhook.read_timeout", wh.read_timeout),
            ("webhook.lease", wh.lease),
        ] {
            if value.is_zero() {
                problems.push(format!("{key}: must be more than zero"));
            }
        }
    }
}

impl WebhookConfig {
    /// The accepted tokens in a tokens file's `content`: one per line, surrounding whitespace and blank
    /// lines ignored, under the rules of inline tokens, and at least one. Used when the file is read at
    /// load and at every reload (a file that breaks a rule is not taken). The error says what is wrong and
    /// on which line, never a token.
    pub fn parse_tokens_file(content: &[u8]) -> Result<Vec<SecretString>, String> {
        let text = std::str::from_utf8(content).map_err(|_| "not UTF-8 text".to_owned())?;
        let (lines, tokens): (Vec<usize>, Vec<&str>) = text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim()))
            .filter(|(_, token)| !token.is_empty())
            .unzip();
        let mut problems = Vec::new();
        if tokens.is_empty() {
            problems.push("no token in it (one per line)".to_owned());
        }
        check_token_set(&tokens, |at, problem| match at {
            None => problems.push(problem.to_owned()),
            Some(i) => problems.push(format!("line {}: {problem}", lines[i])),
        });
        if problems.is_empty() {
            Ok(tokens
                .into_iter()
                .map(|t| SecretString::from(t.to_owned()))
                .collect())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The rules for a set of accepted webhook tokens, wherever it comes from (`webhook.tokens`, or the tokens
/// file at load and at each reload): `report(None, problem)` for the set, `report(Some(i), problem)` for
/// its `i`-th token. Problems are fixed texts: never a value.
fn check_token_set(tokens: &[&str], mut report: impl FnMut(Option<usize>, &'static str)) {
    if tokens.len() > 2 {
        report(
            None,
            "at most two (the current one and the next, while rotating)",
        );
    }
    for (i, token) in tokens.iter().enumerate() {
        if let Some(problem) = token_problem(token) {
            report(Some(i), problem);
        }
    }
}

/// What is wrong with a webhook token, if anything: it travels in a header, so only the RFC 7230 `tchar`
/// characters are possible, and a short one would be guessable.
fn token_problem(token: &str) -> Option<&'static str> {
    const TCHAR_SYMBOLS: &str = "!#$%&'*+-.^_`|~";
    if token.len() < 16 || token.len() > 256 {
        Some("must be 16-256 characters (ConnectPay's are 36)")
    } else if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || TCHAR_SYMBOLS.contains(c))
    {
        Some("may contain only letters, digits and !#$%&'*+-.^_`|~")
    } else {
        None
    }
}

fn url_problem(raw: &str, allow_http: bool) -> Option<String> {
    match reqwest::Url::parse(raw) {
        Err(e) => Some(format!("not a URL ({e})")),
        Ok(url) => match url.scheme() {
            "https" => None,
            "http" if allow_http => None,
            "http" => Some("must be https (http only with connectpay.allow_insecure_http)".into()),
            _ => Some("must be an https URL".into()),
        },
    }
}
