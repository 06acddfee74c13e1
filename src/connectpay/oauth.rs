//! The OAuth token pair: obtained once from an authCode, then refreshed ahead of expiry.
//!
//! ConnectPay's refresh tokens are single use: every refresh returns a new pair and spends the old refresh
//! token at once. So renewals are serialised behind one lock, always start from the newest pair (the store's,
//! which other replicas may have renewed), run detached from the caller that needed them (a cancelled RPC
//! must not abandon a refresh half way, losing the new pair), and are never retried once the request may
//! have reached ConnectPay.

use std::{
    fmt,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Endpoint, UpstreamError, wire::TokenAnswer};

/// An access token and the refresh token that renews it.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub access_expires_at: SystemTime,
    pub refresh_expires_at: Option<SystemTime>,
    pub obtained_at: SystemTime,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenPair {
    fn lifetime(&self) -> Duration {
        self.access_expires_at
            .duration_since(self.obtained_at)
            .unwrap_or_default()
    }

    /// Whether two values are the same pair (as opposed to a renewed one).
    pub fn same_as(&self, other: &TokenPair) -> bool {
        self.access_token.expose_secret() == other.access_token.expose_secret()
            && self.refresh_token.expose_secret() == other.refresh_token.expose_secret()
    }

    /// Still worth sending: not expired, with a little room for the request's own travel time.
    pub fn usable(&self, now: SystemTime) -> bool {
        let skew = (self.lifetime() / 10).min(Duration::from_secs(5));
        now + skew < self.access_expires_at
    }

    /// When to renew: `ahead` before expiry, but never earlier than half way through the lifetime.
    pub fn renew_at(&self, ahead: Duration) -> SystemTime {
        self.access_expires_at - ahead.min(self.lifetime() / 2)
    }
}

/// Where the pair lives between restarts and, with a shared store, between replicas.
#[async_trait]
pub trait PairStore: Send + Sync + 'static {
    async fn load(&self) -> Result<Option<TokenPair>, PairStoreError>;
    async fn save(&self, pair: &TokenPair) -> Result<(), PairStoreError>;

    /// Excludes every other process sharing the store from renewing until the guard is dropped. A store
    /// used by one process needs nothing beyond the in-process lock.
    async fn lock(&self) -> Result<PairLock, PairStoreError> {
        Ok(Box::new(()))
    }
}

/// Held while renewing; dropping it lets the next renewer in.
pub type PairLock = Box<dyn Send + Sync>;

pub type PairStoreError = Box<dyn std::error::Error + Send + Sync>;

/// A pair kept in memory only: gone with the process.
#[derive(Default)]
pub struct MemoryPairStore(Mutex<Option<TokenPair>>);

#[async_trait]
impl PairStore for MemoryPairStore {
    async fn load(&self) -> Result<Option<TokenPair>, PairStoreError> {
        Ok(self.0.lock().expect("pair lock").clone())
    }

    async fn save(&self, pair: &TokenPair) -> Result<(), PairStoreError> {
        *self.0.lock().expect("pair lock") = Some(pair.clone());
        Ok(())
    }
}

/// What the token endpoint needs to know.
pub struct TokenEndpoint {
    pub url: reqwest::Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub request_timeout: Duration,
}

/// Hands out a usable access token and keeps it fresh. Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: TokenEndpoint,
    refresh_ahead: Duration,
    store: Arc<dyn PairStore>,
    current: RwLock<Option<Arc<TokenPair>>>,
    renew_lock: tokio::sync::Mutex<()>,
    /// Used only while there is no pair, and forgotten once exchanged or refused.
    auth_code: Mutex<Option<SecretString>>,
    renewed: Notify,
}

enum Grant {
    AuthorizationCode(SecretString),
    Refresh(SecretString),
}

impl TokenManager {
    pub fn new(
        http: reqwest::Client,
        endpoint: TokenEndpoint,
        refresh_ahead: Duration,
        store: Arc<dyn PairStore>,
        auth_code: Option<SecretString>,
    ) -> Self {
        TokenManager {
            inner: Arc::new(Inner {
                http,
                endpoint,
                refresh_ahead,
                store,
                current: RwLock::new(None),
                renew_lock: tokio::sync::Mutex::new(()),
                auth_code: Mutex::new(auth_code),
                renewed: Notify::new(),
            }),
        }
    }

    fn current(&self) -> Option<Arc<TokenPair>> {
        self.inner.current.read().expect("token lock").clone()
    }

    /// A pair whose access token can be sent now, renewing it first if needed.
    pub async fn access_token(&self) -> Result<Arc<TokenPair>, UpstreamError> {
        match self.current() {
            Some(pair) if pair.usable(SystemTime::now()) => Ok(pair),
            seen => self.renew(seen).await,
        }
    }

    /// ConnectPay refused `used`: reload the pair, and refresh only if nobody renewed it meanwhile.
    pub async fn after_unauthorized(&self, used: &Arc<TokenPair>) -> Result<(), UpstreamError> {
        self.renew(Some(used.clone())).await.map(drop)
    }

    /// Exchanges an authCode for a new pair and stores it, replacing any pair held: the operator's
    /// bootstrap (and recovery, after the refresh token was lost).
    pub async fn exchange(&self, auth_code: SecretString) -> Result<Arc<TokenPair>, UpstreamError> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _one_at_a_time = inner.renew_lock.lock().await;
            let _one_replica_at_a_time =
                inner.store.lock().await.map_err(|_| UpstreamError::Auth)?;
            let pair = Arc::new(inner.request(Grant::AuthorizationCode(auth_code)).await?);
            inner.store.save(&pair).await.map_err(|e| {
                tracing::error!(error = %e, "could not store the new OAuth pair");
                UpstreamError::Auth
            })?;
            inner.set_current(pair.clone());
            Ok(pair)
        })
        .await
        .unwrap_or(Err(UpstreamError::Auth))
    }

    /// When the refresh token stops working, as far as ConnectPay said.
    pub fn refresh_token_expires_at(&self) -> Option<SystemTime> {
        self.current().and_then(|p| p.refresh_expires_at)
    }

    /// Renews in a task of its own, so the caller's cancellation cannot interrupt it.
    async fn renew(&self, seen: Option<Arc<TokenPair>>) -> Result<Arc<TokenPair>, UpstreamError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.renew(seen).await })
            .await
            .unwrap_or(Err(UpstreamError::Auth))
    }

    /// Keeps the pair fresh until `shutdown`: renews ahead of expiry and backs off while renewal fails.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let wait = match self.current() {
                Some(pair) => pair
                    .renew_at(self.inner.refresh_ahead)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
                None => Duration::ZERO,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                // A caller renewed: plan again from the new pair.
                () = self.inner.renewed.notified() => continue,
            }
            match self.renew(self.current()).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let backoff = Duration::from_secs(1u64 << failures.min(6));
                    match e {
                        UpstreamError::NoTokenPair => tracing::error!(
                            "no ConnectPay OAuth pair: bootstrap one from an authCode (connectpay.auth_code)"
                        ),
                        e => {
                            tracing::warn!(error = %e, retry_in = ?backoff, "OAuth renewal failed")
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}

impl Inner {
    fn set_current(&self, pair: Arc<TokenPair>) {
        *self.current.write().expect("token lock") = Some(pair);
        self.renewed.notify_waiters();
    }

    async fn renew(&self, seen: Option<Arc<TokenPair>>) -> Result<Arc<TokenPair>, UpstreamError> {
        let _one_at_a_time = self.renew_lock.lock().await;
        // Held across the read of the stored pair and the refresh, so that of several replicas only one
        // spends the refresh token; the others find its new pair when they get the lock.
        let _one_replica_at_a_time = self.store.lock().await.map_err(|e| {
            tracing::warn!(error = %e, "could not take the store's renewal lock");
            UpstreamError::NoAnswer {
                caller_deadline: false,
            }
        })?;
        let now = SystemTime::now();
        let is_new = |pair: &TokenPair| seen.as_ref().is_none_or(|s| !s.same_as(pair));

        // Renewed by another task while this one waited for the lock?
        let current = self.current.read().expect("token lock").clone();
        if let Some(pair) = current.as_ref().filter(|p| is_new(p) && p.usable(now)) {
            return Ok(pair.clone());
        }
        // Renewed by another replica (or persisted by an earlier run)?
        let stored = match self.store.load().await {
            Ok(stored) => stored.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the stored OAuth pair");
                None
            }
        };
        if let Some(pair) = stored.as_ref().filter(|p| is_new(p) && p.usable(now)) {
            self.set_current(pair.clone());
            return Ok(pair.clone());
        }
        let newest = stored.or(current);
        let grant = match newest {
            Some(pair) => Grant::Refresh(pair.refresh_token.clone()),
            None => match self.auth_code.lock().expect("auth code lock").clone() {
                Some(code) => Grant::AuthorizationCode(code),
                None => return Err(UpstreamError::NoTokenPair),
            },
        };
        let exchanging_code = matches!(grant, Grant::AuthorizationCode(_));
        let result = self.request(grant).await;
        // The authCode is kept for another try until it was exchanged or definitely refused; after that it
        // is never sent again.
        if exchanging_code && matches!(result, Ok(_) | Err(UpstreamError::Auth)) {
            self.auth_code.lock().expect("auth code lock").take();
        }
        let pair = Arc::new(result?);
        if let Err(e) = self.store.save(&pair).await {
            // The pair still works from memory, but would be lost with this process.
            tracing::error!(error = %e, "could not store the renewed OAuth pair");
        }
        self.set_current(pair.clone());
        tracing::info!(
            access_expires_in = ?pair.access_expires_at.duration_since(now).unwrap_or_default(),
            refresh_expires_in = ?pair.refresh_expires_at.and_then(|t| t.duration_since(now).ok()),
            "OAuth pair renewed"
        );
        Ok(pair)
    }

    async fn request(&self, grant: Grant) -> Result<TokenPair, UpstreamError> {
        let (kind, form) = match &grant {
            Grant::AuthorizationCode(code) => (
                "authorization_code",
                [
                    ("grant_type", "authorization_code"),
                    ("code", code.expose_secret()),
                ],
            ),
            Grant::Refresh(token) => (
                "refresh_token",
                [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose_secret()),
                ],
            ),
        };
        let obtained_at = SystemTime::now();
        // Only a request that never left may be repeated: a sent one may have spent the grant.
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let request_id = super::request_id();
            let sent = self
                .http
                .post(self.endpoint.url.clone())
                .basic_auth(
                    &self.endpoint.client_id,
                    Some(self.endpoint.client_secret.expose_secret()),
                )
                .header(super::REQUEST_ID_HEADER, &request_id)
                .header(super::CONNECTPAY_REQUEST_ID_HEADER, &request_id)
                .form(&form)
                .timeout(self.endpoint.request_timeout)
                .send()
                .await;
            match sent {
                Ok(response) => break response,
                Err(e) if e.is_connect() && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) if e.is_connect() => return Err(UpstreamError::NotSent),
                Err(_) => {
                    return Err(UpstreamError::NoAnswer {
                        caller_deadline: false,
                    });
                }
            }
        };
        let status = response.status();
        let upstream_request_id = response
            .headers()
            .get(super::CONNECTPAY_REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .bytes()
            .await
            .map_err(|_| UpstreamError::NoAnswer {
                caller_deadline: false,
            })?;
        tracing::debug!(
            endpoint = Endpoint::Token.as_str(),
            grant = kind,
            status = status.as_u16(),
            upstream_request_id,
            "ConnectPay answered"
        );
        if !status.is_success() {
            let refused = super::wire::ErrorAnswer::parse(&body);
            if refused.error.as_deref() == Some("invalid_grant") {
                tracing::error!(
                    grant = kind,
                    "ConnectPay refused the grant (invalid_grant): if the refresh token was lost or expired, \
                     a person must issue a new authCode"
                );
            }
            return Err(match status.as_u16() {
                400 | 401 | 403 => UpstreamError::Auth,
                code => UpstreamError::from_answer(code, None, &body),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| UpstreamError::BadResponse)?;
        // Without a stated lifetime, assume the documented one hour.
        let access_ttl = answer.expires_in.unwrap_or(Duration::from_secs(3600));
        Ok(TokenPair {
            access_token: SecretString::from(answer.access_token),
            refresh_token: SecretString::from(answer.refresh_token),
            access_expires_at: obtained_at + access_ttl,
            refresh_expires_at: answer.refresh_token_expires_in.map(|ttl| obtained_at + ttl),
            obtained_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(lifetime: Duration) -> TokenPair {
        let now = SystemTime::now();
        TokenPair {
            access_token: SecretString::from("a"),
            refresh_token: SecretString::from("r"),
            access_expires_at: now + lifetime,
            refresh_expires_at: None,
            obtained_at: now,
        }
    }

    #[test]
    fn renewal_is_ahead_of_expiry_but_not_before_half_time() {
        let hour = pair(Duration::from_secs(3600));
        assert_eq!(
            hour.renew_at(Duration::from_secs(300)),
            hour.access_expires_at - Duration::from_secs(300)
        );
        let short = pair(Duration::from_secs(4));
        assert_eq!(
            short.renew_at(Duration::from_secs(300)),
            short.access_expires_at - Duration::from_secs(2)
        );
    }

    #[test]
    fn usable_leaves_room_for_travel_time() {
        let p = pair(Duration::from_secs(3600));
        assert!(p.usable(SystemTime::now()));
        assert!(!p.usable(p.access_expires_at - Duration::from_secs(1)));
    }

    #[test]
    fn debug_hides_the_tokens() {
        let printed = format!("{:?}", pair(Duration::from_secs(1)));
        assert!(
            !printed.contains("\"a\"") && !printed.contains("access_token"),
            "{printed}"
        );
    }
}
