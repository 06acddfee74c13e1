//! Sending one ConnectPay call: URL, OAuth bearer, request ids, a timeout within the caller's deadline, and
//! the retry policy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use secrecy::ExposeSecret;

use super::{
    Endpoint, TokenManager, UpstreamError,
    retry::{CallKind, Failure, RetryPolicy},
};
use crate::{config::TimeoutsConfig, domain::Deadline};

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

pub struct Transport {
    http: reqwest::Client,
    base_url: reqwest::Url,
    tokens: TokenManager,
    retry: RetryPolicy,
    timeouts: TimeoutsConfig,
}

impl Transport {
    pub fn new(
        http: reqwest::Client,
        base_url: reqwest::Url,
        tokens: TokenManager,
        retry: RetryPolicy,
        timeouts: TimeoutsConfig,
    ) -> Self {
        Transport {
            http,
            base_url,
            tokens,
            retry,
            timeouts,
        }
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
            let pair = self.tokens.access_token().await?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .bearer_auth(pair.access_token.expose_secret())
                .header("X-Request-ID", &request_id)
                .header("x-connectpay-requestid", &request_id)
                .timeout(timeout);
            if let Some(accept) = call.accept {
                request = request.header(http::header::ACCEPT, accept);
            }
            if let Some(json) = call.json {
                request = request.json(json);
            }
            let started = Instant::now();
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    let upstream_request_id = response
                        .headers()
                        .get("x-connectpay-requestid")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = response.bytes().await;
                    tracing::debug!(
                        endpoint = call.endpoint.as_str(),
                        attempt,
                        status = status.as_u16(),
                        upstream_request_id,
                        request_id,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "ConnectPay answered"
                    );
                    match body {
                        Err(_) => Failure::NoAnswer,
                        Ok(body) if status.is_success() => return Ok(Answer { body }),
                        Ok(_)
                            if matches!(
                                status,
                                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                            ) && !renewed_after_refusal =>
                        {
                            // Refused credentials get one renewal and one more try, outside the retry policy.
                            renewed_after_refusal = true;
                            attempt -= 1;
                            self.tokens.after_unauthorized(&pair).await?;
                            continue;
                        }
                        Ok(_)
                            if matches!(
                                status,
                                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                            ) =>
                        {
                            return Err(UpstreamError::Auth);
                        }
                        Ok(body) => {
                            let failure = Failure::Status {
                                code: status.as_u16(),
                                retry_after,
                            };
                            if self.give_up(call, failure, attempt, deadline).await {
                                return Err(UpstreamError::from_answer(
                                    status.as_u16(),
                                    retry_after,
                                    &body,
                                ));
                            }
                            continue;
                        }
                    }
                }
                Err(e) if e.is_connect() => Failure::NotSent,
                Err(e) => {
                    if e.is_timeout() && limited_by_caller {
                        return Err(UpstreamError::NoAnswer {
                            caller_deadline: true,
                        });
                    }
                    Failure::NoAnswer
                }
            };
            tracing::debug!(
                endpoint = call.endpoint.as_str(),
                attempt,
                ?failure,
                request_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ConnectPay call failed"
            );
            if self.give_up(call, failure, attempt, deadline).await {
                return Err(match failure {
                    Failure::NotSent => UpstreamError::NotSent,
                    _ => UpstreamError::NoAnswer {
                        caller_deadline: false,
                    },
                });
            }
        }
    }

    /// Waits before the next attempt, or says to give up (the policy says so, or the wait would not fit in
    /// the caller's deadline).
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
