//! OAuth 2.0 as ConnectPay runs it: authorization codes usable once, then rotating single-use
//! refresh tokens; and the bearer check of the onboarding endpoints.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, OAuthError};
use crate::pipeline::{self, Call};
use crate::recorder::{Counters, Endpoint};
use crate::shared::{Shared, lock};
use crate::wire::TokenAnswer;

/// Answer of `POST /_sandbox/auth-codes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    pub code: String,
}

/// Issued lifetimes in real seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    pub(crate) access_secs: u64,
    pub(crate) refresh_secs: u64,
}

/// Expired tokens are pruned once the maps grow past this, so benchmarks stay bounded.
const PRUNE_ABOVE: usize = 4096;

#[derive(Default)]
pub(crate) struct TokenStore {
    /// Codes not yet used.
    codes: HashSet<String>,
    /// Access token → expiry. Refreshing does not revoke the previous access token.
    access: HashMap<String, Instant>,
    /// The current refresh token of each chain → expiry; a spent one is removed at once.
    refresh: HashMap<String, Instant>,
    /// Every token issued, newest last (the last `PRUNE_ABOVE`): for tests that search a client's
    /// logs and storage for them. Never served over HTTP.
    issued: std::collections::VecDeque<String>,
}

impl TokenStore {
    pub(crate) fn add_code(&mut self, code: String) {
        self.codes.insert(code);
    }

    pub(crate) fn redeem_code(
        &mut self,
        code: &str,
        lifetimes: Lifetimes,
        now: Instant,
    ) -> Option<TokenAnswer> {
        self.codes.remove(code).then(|| self.issue(lifetimes, now))
    }

    pub(crate) fn refresh(
        &mut self,
        refresh_token: &str,
        lifetimes: Lifetimes,
        now: Instant,
    ) -> Option<TokenAnswer> {
        let expiry = self.refresh.remove(refresh_token)?;
        (expiry > now).then(|| self.issue(lifetimes, now))
    }

    pub(crate) fn access_valid(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|expiry| *expiry > now)
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        self.issued.iter().cloned().collect()
    }

    pub(crate) fn expire_access(&mut self) {
        self.access.clear();
    }

    fn issue(&mut self, lifetimes: Lifetimes, now: Instant) -> TokenAnswer {
        if self.access.len() > PRUNE_ABOVE {
            self.access.retain(|_, expiry| *expiry > now);
        }
        if self.refresh.len() > PRUNE_ABOVE {
            self.refresh.retain(|_, expiry| *expiry > now);
        }
        let access_token = Uuid::new_v4().to_string();
        let refresh_token = Uuid::new_v4().to_string();
        while self.issued.len() + 2 > PRUNE_ABOVE {
            self.issued.pop_front();
        }
        self.issued.push_back(access_token.clone());
        self.issued.push_back(refresh_token.clone());
        self.access.insert(
            access_token.clone(),
            now + Duration::from_secs(lifetimes.access_secs),
        );
        self.refresh.insert(
            refresh_token.clone(),
            now + Duration::from_secs(lifetimes.refresh_secs),
        );
        TokenAnswer {
            token_type: "Bearer",
            access_token,
            refresh_token,
            expires_in: lifetimes.access_secs,
            client_customer_name: "Sandbox Platform",
            scope: "onboarding-baas",
            refresh_token_expires_in: lifetimes.refresh_secs.to_string(),
        }
    }
}

/// `POST /auth/v1/oauth2/token`.
pub(crate) async fn token(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (call, body) = Call::read(Endpoint::Token, request).await;
    let form = body.as_ref().ok().map(parse_form);
    // Only the grant type is recorded: codes and tokens never reach the log.
    let recorded = form
        .as_ref()
        .map(|form| json!({ "grant_type": form.get("grant_type") }));
    let work = |_| async {
        grant(&shared, &call.headers, form.as_ref(), body.as_ref().err()).into_response()
    };
    pipeline::serve(&shared, &call, recorded, None, work).await
}

fn grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: Option<&HashMap<String, String>>,
    body_error: Option<&ApiError>,
) -> Result<Json<TokenAnswer>, OAuthError> {
    let config = &shared.config;
    if !client_authenticated(headers, &config.client_id, &config.client_secret) {
        Counters::bump(&shared.counters.invalid_client);
        return Err(OAuthError::invalid_client());
    }
    let (Some(form), None, true) = (form, body_error, is_form(headers)) else {
        return Err(OAuthError::invalid_request());
    };
    let lifetimes = Lifetimes {
        access_secs: config.real_secs(config.access_token_ttl_secs),
        refresh_secs: config.real_secs(config.refresh_token_ttl_secs),
    };
    let now = Instant::now();
    let (issued, counter) = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").ok_or_else(OAuthError::invalid_request)?;
            let issued = lock(&shared.world).tokens.redeem_code(code, lifetimes, now);
            (issued, &shared.counters.authorization_code)
        }
        Some("refresh_token") => {
            let token = form
                .get("refresh_token")
                .ok_or_else(OAuthError::invalid_request)?;
            let issued = lock(&shared.world).tokens.refresh(token, lifetimes, now);
            (issued, &shared.counters.refresh_token)
        }
        Some(_) => return Err(OAuthError::unsupported_grant_type()),
        None => return Err(OAuthError::invalid_request()),
    };
    match issued {
        Some(answer) => {
            Counters::bump(counter);
            Ok(Json(answer))
        }
        None => {
            Counters::bump(&shared.counters.invalid_grant);
            Err(OAuthError::invalid_grant())
        }
    }
}

/// The first value of each key; later duplicates are ignored.
fn parse_form(body: &Bytes) -> HashMap<String, String> {
    let mut form = HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        form.entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    form
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The credentials of `Authorization: <scheme> <credentials>`, if the scheme matches.
fn credentials<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.trim().split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim())
}

fn client_authenticated(headers: &HeaderMap, client_id: &str, client_secret: &str) -> bool {
    let Some(decoded) = credentials(headers, "Basic").and_then(|c| STANDARD.decode(c).ok()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    decoded.split_once(':') == Some((client_id, client_secret))
}

impl Shared {
    /// The bearer check of every onboarding call.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let refusal = match credentials(headers, "Bearer") {
            None => Some("a bearer access token is required"),
            Some(token) if !lock(&self.world).tokens.access_valid(token, Instant::now()) => {
                Some("the access token is unknown or expired")
            }
            Some(_) => None,
        };
        match refusal {
            None => Ok(()),
            Some(message) => {
                Counters::bump(&self.counters.unauthorized);
                Err(ApiError::unauthorized(message))
            }
        }
    }

    pub(crate) fn mint_auth_code(&self) -> AuthCode {
        let code = Uuid::new_v4().to_string();
        lock(&self.world).tokens.add_code(code.clone());
        AuthCode { code }
    }

    pub(crate) fn expire_access_tokens(&self) {
        lock(&self.world).tokens.expire_access();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        access_secs: 10,
        refresh_secs: 20,
    };

    #[test]
    fn codes_are_single_use_and_refresh_tokens_rotate() {
        let mut store = TokenStore::default();
        store.add_code("c".into());
        let now = Instant::now();
        let first = store.redeem_code("c", LIFETIMES, now).unwrap();
        assert!(store.redeem_code("c", LIFETIMES, now).is_none());
        assert!(store.access_valid(&first.access_token, now));

        let second = store.refresh(&first.refresh_token, LIFETIMES, now).unwrap();
        assert!(
            store
                .refresh(&first.refresh_token, LIFETIMES, now)
                .is_none()
        );
        // The old access token lives on until it expires.
        assert!(store.access_valid(&first.access_token, now));
        assert!(!store.access_valid(&second.access_token, now + Duration::from_secs(10)));
        assert!(
            store
                .refresh(
                    &second.refresh_token,
                    LIFETIMES,
                    now + Duration::from_secs(20)
                )
                .is_none()
        );
    }

    #[test]
    fn basic_credentials_must_match() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("id:se:cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("basic {encoded}").parse().unwrap(),
        );
        assert!(client_authenticated(&headers, "id", "se:cret"));
        assert!(!client_authenticated(&headers, "id", "se"));
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(!client_authenticated(&headers, "id", "se:cret"));
    }
}
