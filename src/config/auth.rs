//! The rules for `[auth]` and `[grpc.tls]`: who may call, and how they prove it.

use super::{AuthMethod, Config, Files, Mode};

/// The RPCs of `connectpay.onboarding.v1.Onboarding`, as permissions name them.
pub const RPCS: [&str; 5] = [
    "SubmitIdvSession",
    "GetApplication",
    "InitiateOnboarding",
    "WatchApplication",
    "WatchApplications",
];

/// JWS algorithms a key set may be trusted with. `none` is not one of them, whatever the configuration.
pub const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

impl Config {
    pub(super) fn validate_auth(&self, mode: Mode, problems: &mut Vec<String>) {
        let auth = &self.auth;
        let tls = &self.grpc.tls;
        if mode == Mode::Production && auth.methods.is_empty() && !auth.allow_unauthenticated {
            problems.push(
                "auth.methods: callers must be authenticated: \"mtls\" and/or \"jwt\" (or set \
                 auth.allow_unauthenticated where something in front authenticates them)"
                    .into(),
            );
        }
        if !auth.methods.is_empty() && auth.allow_unauthenticated {
            problems.push("auth.allow_unauthenticated: cannot be set with auth.methods".into());
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            problems.push("grpc.tls: cert_file and key_file go together".into());
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            problems.push("grpc.tls.client_ca_file: needs cert_file and key_file".into());
        }
        for (key, file) in [
            ("grpc.tls.cert_file", &tls.cert_file),
            ("grpc.tls.key_file", &tls.key_file),
            ("grpc.tls.client_ca_file", &tls.client_ca_file),
            ("auth.jwt.jwks_file", &auth.jwt.jwks_file),
        ] {
            if let Some(file) = file
                && self.files == Files::Read
                && !file.is_file()
            {
                problems.push(format!("{key}: no such file: {}", file.display()));
            }
        }
        if auth.methods.contains(&AuthMethod::Mtls) && tls.client_ca_file.is_none() {
            problems.push(
                "grpc.tls.client_ca_file: required by auth.methods \"mtls\" (with cert_file and key_file)"
                    .into(),
            );
        }
        if auth.methods.contains(&AuthMethod::Jwt) {
            let jwt = &auth.jwt;
            if jwt.jwks_file.is_none() {
                problems.push("auth.jwt.jwks_file: required by auth.methods \"jwt\"".into());
            }
            if jwt.issuer.is_empty() {
                problems.push("auth.jwt.issuer: required by auth.methods \"jwt\"".into());
            }
            if jwt.audience.is_empty() {
                problems.push("auth.jwt.audience: required by auth.methods \"jwt\"".into());
            }
            if jwt.identity_claim.is_empty() {
                problems.push("auth.jwt.identity_claim: required by auth.methods \"jwt\"".into());
            }
            if jwt.algorithms.is_empty() {
                problems.push("auth.jwt.algorithms: at least one".into());
            }
        }
        for algorithm in &auth.jwt.algorithms {
            if !JWT_ALGORITHMS.contains(&algorithm.as_str()) {
                problems.push(format!(
                    "auth.jwt.algorithms: {algorithm:?} is not one of {}",
                    JWT_ALGORITHMS.join(", ")
                ));
            }
        }
        for (identity, rpcs) in &auth.permissions {
            if identity.trim().is_empty() {
                problems.push("auth.permissions: an identity is empty".into());
            }
            for rpc in rpcs {
                if !RPCS.contains(&rpc.as_str()) {
                    problems.push(format!(
                        "auth.permissions.{identity:?}: {rpc:?} is not one of {}",
                        RPCS.join(", ")
                    ));
                }
            }
        }
        if self.reload.interval < std::time::Duration::from_millis(10) {
            problems.push("reload.interval: at least 10ms".into());
        }
        if let Some(health) = self.health.listen
            && health == self.grpc.listen
            && health.port() != 0
        {
            problems.push("health.listen: must differ from grpc.listen".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Mode};

    fn problems(overrides: &str, mode: Mode) -> Vec<String> {
        match Config::load_with(None, overrides).unwrap().validate(mode) {
            Ok(()) => Vec::new(),
            Err(e) => e.0,
        }
    }

    #[test]
    fn production_needs_callers_authenticated_or_an_explicit_opt_out() {
        let missing = problems("", Mode::Production);
        assert!(
            missing.iter().any(|p| p.starts_with("auth.methods:")),
            "{missing:?}"
        );
        let opted_out = problems("[auth]\nallow_unauthenticated = true", Mode::Production);
        assert!(
            !opted_out.iter().any(|p| p.starts_with("auth.")),
            "{opted_out:?}"
        );
        // The sandbox authenticates no one (it listens on loopback only).
        assert!(problems("", Mode::Sandbox).is_empty());
    }

    #[test]
    fn each_method_names_what_it_lacks() {
        let found = problems("[auth]\nmethods = [\"mtls\", \"jwt\"]", Mode::Sandbox);
        for key in [
            "grpc.tls.client_ca_file",
            "auth.jwt.jwks_file",
            "auth.jwt.issuer",
            "auth.jwt.audience",
        ] {
            assert!(found.iter().any(|p| p.starts_with(key)), "{key}: {found:?}");
        }
        let found = problems(
            "[auth]\nmethods = [\"jwt\"]\n[auth.jwt]\nalgorithms = [\"none\", \"RS256\"]\n\
             [auth.permissions]\n\"svc\" = [\"GetApplication\", \"DeleteEverything\"]",
            Mode::Sandbox,
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("auth.jwt.algorithms: \"none\"")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("auth.permissions.\"svc\": \"DeleteEverything\"")),
            "{found:?}"
        );
        let found = problems(
            "[grpc.tls]\ncert_file = \"/nonexistent/tls.crt\"",
            Mode::Sandbox,
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("grpc.tls: cert_file and key_file")),
            "{found:?}"
        );
    }
}
