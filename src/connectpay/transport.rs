//! Sending one ConnectPay call: URL, OAuth bearer, request ids, a timeout within the caller's deadline,
//! the retry policy under a retry budget, a limit on calls in flight, and the circuit breaker.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tower::retry::budget::{Budget, TpsBudget};
use tracing::{Instrument, field::Empty};

use super::{
    Endpoint, TokenManager, TokenPair, UpstreamError,
    breaker::{Breaker, BreakerState},
    retry::{CallKind, Failure, RetryPolicy},
};
use crate::{
    config::TimeoutsConfig,
    domain::Deadline,
    telemetry::{
        context,
        metrics::{self, EndpointStatus},
    },
};

/// One logical call; it may take several attempts.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub method: Method,
    pub path: String,
    pub kind: CallKind,
    pub json: Option<&'a serde_json::Value>,
    pub accept: Option<&'static str>,
}

/// A successful answer.
pub struct Answer {
    pub body: Bytes,
}

/// How one attempt ended.
enum Attempt {
    Answered(Answer),
    /// ConnectPay refused the credentials of `pair`.
    Refused(Arc<TokenPair>),
    Failed {
        failure: Failure,
        /// What the caller gets if this is the last attempt.
        error: UpstreamError,
    },
}

pub struct Protection {
    pub retry: RetryPolicy,
    pub budget: TpsBudget,
    pub breaker: Breaker,
    pub max_in_flight: usize,
}

pub struct Transport {
    http: reqwest::Client,
    base_url: reqwest::Url,
    tokens: TokenManager,
    timeouts: TimeoutsConfig,
    retry: RetryPolicy,
    budget: TpsBudget,
    breaker: Breaker,
    in_flight: Semaphore,
}

impl Transport {
    pub fn new(
        http: reqwest::Client,
        base_url: reqwest::Url,
        tokens: TokenManager,
        timeouts: TimeoutsConfig,
        protection: Protection,
    ) -> Self {
        Transport {
            http,
            base_url,
            tokens,
            timeouts,
            retry: protection.retry,
            budget: protection.budget,
            breaker: protection.breaker,
            in_flight: Semaphore::new(protection.max_in_flight.max(1)),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.current()
    }

    /// The time one attempt may take: the caller's remaining deadline minus a margin (so the gateway can
    /// still answer), capped by configuration. `None` when too little is left to try at all.
    fn attempt_timeout(&self, deadline: Deadline) -> Option<(Duration, bool)> {
        let cap = self.timeouts.request;
        match deadline.remaining() {
            None => Some((cap, false)),
            Some(left) => {
                let usable = left.checked_sub(self.timeouts.deadline_margin)?;
                if usable < Duration::from_millis(1) {
                    None
                } else if usable < cap {
                    Some((usable, true))
                } else {
                    Some((cap, false))
                }
            }
        }
    }

    pub async fn execute(
        &self,
        call: &Call<'_>,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError> {
        let url = self
            .base_url
            .join(call.path.trim_start_matches('/'))
            .map_err(|_| UpstreamError::BadResponse)?;
        // Waiting for a slot counts against the caller's deadline; a call that never got one never left.
        let _slot = match deadline.instant() {
            None => self.in_flight.acquire().await.ok(),
            Some(at) => tokio::time::timeout_at(at.into(), self.in_flight.acquire())
                .await
                .map_err(|_| UpstreamError::DeadlineTooShort)?
                .ok(),
        };
        self.budget.deposit();
        let mut attempt = 0u32;
        let mut renewed_after_refusal = false;
        loop {
            attempt += 1;
            let Some((timeout, limited_by_caller)) = self.attempt_timeout(deadline) else {
                return Err(if attempt == 1 {
                    UpstreamError::DeadlineTooShort
                } else {
                    UpstreamError::NoAnswer {
                        caller_deadline: true,
                    }
                });
            };
            let admitted = self
                .breaker
                .admit(Instant::now())
                .map_err(|retry_after| UpstreamError::CircuitOpen { retry_after })?;
            let outcome = self
                .attempt(call, &url, timeout, limited_by_caller, attempt)
                .await;
            let healthy = match &outcome {
                Ok(Attempt::Answered(_) | Attempt::Refused(_)) => true,
                Ok(Attempt::Failed { failure, .. }) => match failure {
                    Failure::Status { code, .. } => *code != 429 && *code < 500,
                    Failure::NotSent | Failure::NoAnswer => false,
                },
                // The caller's deadline ran out, or no token: says nothing about ConnectPay's health.
                Err(_) => true,
            };
            self.breaker.record(admitted, healthy, Instant::now());
            match outcome? {
                Attempt::Answered(answer) => return Ok(answer),
                Attempt::Refused(pair) if !renewed_after_refusal => {
                    // Refused credentials get one renewal and one more try, outside the retry policy.
                    renewed_after_refusal = true;
                    attempt -= 1;
                    self.tokens.after_unauthorized(&pair).await?;
                }
                Attempt::Refused(_) => return Err(UpstreamError::Auth),
                Attempt::Failed { failure, error } => {
                    if self.give_up(call, failure, attempt, deadline).await {
                        return Err(error);
                    }
                }
            }
        }
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &reqwest::Url,
        timeout: Duration,
        limited_by_caller: bool,
        attempt: u32,
    ) -> Result<Attempt, UpstreamError> {
        let pair = self.tokens.access_token().await?;
        let request_id = super::request_id();
        let span = tracing::info_span!(
            "connectpay",
            otel.name = format!("{} {}", call.method, call.endpoint.as_str()),
            otel.kind = "client",
            http.request.method = %call.method,
            connectpay.endpoint = call.endpoint.as_str(),
            connectpay.request_id = %request_id,
            attempt,
            http.response.status_code = Empty,
        );
        // The caller's trace continues at ConnectPay.
        let mut trace_headers = http::HeaderMap::new();
        context::inject(&span, &mut trace_headers);
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .bearer_auth(pair.access_token.expose_secret())
            .header(super::REQUEST_ID_HEADER, &request_id)
            .header(super::CONNECTPAY_REQUEST_ID_HEADER, &request_id)
            .headers(trace_headers)
            .timeout(timeout);
        if let Some(accept) = call.accept {
            request = request.header(http::header::ACCEPT, accept);
        }
        if let Some(json) = call.json {
            request = request.json(json);
        }
        let started = Instant::now();
        let sent = request.send().instrument(span.clone()).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let observe = |status: &'static str| {
            let m = metrics::metrics();
            let endpoint = call.endpoint.as_str();
            m.upstream_requests
                .get_or_create(&EndpointStatus { endpoint, status })
                .inc();
            m.upstream_duration
                .get_or_create(&metrics::Endpoint { endpoint })
                .observe(started.elapsed().as_secs_f64());
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                observe("unreached");
                tracing::debug!(
                    endpoint = call.endpoint.as_str(),
                    attempt,
                    request_id,
                    elapsed_ms,
                    "ConnectPay not reached"
                );
                return Ok(Attempt::Failed {
                    failure: Failure::NotSent,
                    error: UpstreamError::NotSent,
                });
            }
            Err(e) => {
                observe("no_answer");
                tracing::debug!(
                    endpoint = call.endpoint.as_str(),
                    attempt,
                    request_id,
                    elapsed_ms,
                    "ConnectPay did not answer"
                );
                if e.is_timeout() && limited_by_caller {
                    return Err(UpstreamError::NoAnswer {
                        caller_deadline: true,
                    });
                }
                return Ok(Attempt::Failed {
                    failure: Failure::NoAnswer,
                    error: UpstreamError::NoAnswer {
                        caller_deadline: false,
                    },
                });
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let upstream_request_id = response
            .headers()
            .get(super::CONNECTPAY_REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().instrument(span.clone()).await;
        span.record("http.response.status_code", status.as_u16());
        observe(metrics::http_status_name(status.as_u16()));
        tracing::info!(
            endpoint = call.endpoint.as_str(),
            attempt,
            status = status.as_u16(),
            upstream_request_id,
            request_id,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ConnectPay answered"
        );
        Ok(match body {
            Err(_) => Attempt::Failed {
                failure: Failure::NoAnswer,
                error: UpstreamError::NoAnswer {
                    caller_deadline: false,
                },
            },
            Ok(body) if status.is_success() => Attempt::Answered(Answer { body }),
            Ok(_) if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Attempt::Refused(pair)
            }
            Ok(body) => Attempt::Failed {
                failure: Failure::Status {
                    code: status.as_u16(),
                    retry_after,
                },
                error: UpstreamError::from_answer(status.as_u16(), retry_after, &body),
            },
        })
    }

    /// Waits before the next attempt, or says to give up: the policy says so, the retry budget is spent,
    /// or the wait would not fit in the caller's deadline.
    async fn give_up(
        &self,
        call: &Call<'_>,
        failure: Failure,
        attempt: u32,
        deadline: Deadline,
    ) -> bool {
        let jitter = rand::random::<f64>();
        let Some(delay) = self.retry.next_delay(call.kind, failure, attempt, jitter) else {
            return true;
        };
        // A wait longer than an attempt may take, or past the caller's deadline, is not worth it: the
        // caller gets the failure (with ConnectPay's Retry-After) and decides.
        if delay > self.timeouts.request
            || deadline
                .remaining()
                .is_some_and(|left| left < delay + self.timeouts.deadline_margin)
        {
            return true;
        }
        if !self.budget.withdraw() {
            tracing::info!(
                endpoint = call.endpoint.as_str(),
                "retry budget spent: not retrying"
            );
            return true;
        }
        tracing::info!(
            endpoint = call.endpoint.as_str(),
            attempt,
            ?failure,
            delay_ms = delay.as_millis() as u64,
            "retrying ConnectPay call"
        );
        tokio::time::sleep(delay).await;
        false
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by ConnectPay's sandbox and is ignored).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}
