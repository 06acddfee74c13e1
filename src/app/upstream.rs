//! The ConnectPay client, as configuration describes it: TLS identity, proxy, OAuth, retries under a
//! budget, the circuit breaker.

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tower::retry::budget::TpsBudget;

use super::StartError;
use crate::{
    config::{Config, ConfigError},
    connectpay::{
        ConnectPayClient, PairStore, TokenManager,
        breaker::{Breaker, BreakerSettings},
        oauth::TokenEndpoint,
        retry::RetryPolicy,
        tls,
        transport::{Protection, Transport},
    },
};

/// The client and its token manager; the client certificate is watched for changes until `stop`.
pub(super) fn connectpay_client(
    config: &Config,
    pairs: Arc<dyn PairStore>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(Arc<ConnectPayClient>, TokenManager), StartError> {
    let cp = &config.connectpay;
    let base_url = reqwest::Url::parse(&cp.base_url)
        .map_err(|_| ConfigError(vec!["connectpay.base_url: not a URL".into()]))?;
    let mut http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(&cp.tls, config.reload.interval, stop)?)
        .connect_timeout(cp.timeouts.connect)
        .user_agent(concat!("onboarding-gateway/", env!("CARGO_PKG_VERSION")))
        // Only the configured proxy, never one from the process environment by accident.
        .no_proxy()
        // Only the configured ConnectPay: a redirect is an answer the gateway does not act on (it reaches
        // the caller as INTERNAL, `UPSTREAM_ERROR`). Following one would send the request again, a 307's
        // KYC body or a token request's secret included, to a host nobody configured.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(proxy) = &cp.proxy_url {
        let proxy = reqwest::Proxy::all(proxy.expose_secret())
            .map_err(|_| ConfigError(vec!["connectpay.proxy_url: not a proxy URL".into()]))?
            .no_proxy(reqwest::NoProxy::from_string(&cp.no_proxy));
        http = http.proxy(proxy);
    }
    let http = http.build()?;
    let token_url = base_url
        .join(cp.paths.token.trim_start_matches('/'))
        .map_err(|_| ConfigError(vec!["connectpay.paths.token: not a path".into()]))?;
    let tokens = TokenManager::new(
        http.clone(),
        TokenEndpoint {
            url: token_url,
            client_id: cp.client_id.clone(),
            client_secret: cp
                .client_secret
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            request_timeout: cp.oauth.request_timeout,
        },
        cp.oauth.refresh_ahead,
        pairs,
        cp.auth_code.clone(),
    );
    let protection = Protection {
        retry: RetryPolicy::from(&cp.retry),
        // Ten seconds of history: long enough to smooth a burst, short enough to follow an outage.
        budget: TpsBudget::new(
            Duration::from_secs(10),
            cp.retry.budget_min_per_second,
            cp.retry.budget_percent as f32 / 100.0,
        ),
        breaker: Breaker::new(BreakerSettings {
            failure_threshold: cp.breaker.failure_threshold,
            open_for: cp.breaker.open_for,
        }),
        max_in_flight: cp.max_in_flight,
    };
    let transport = Transport::new(
        http,
        base_url,
        tokens.clone(),
        cp.timeouts.clone(),
        protection,
    );
    let client = ConnectPayClient::new(transport, cp.paths.clone(), cp.notification_url.clone());
    Ok((Arc::new(client), tokens))
}
