//! When to try a ConnectPay call again, as a pure function of what happened.
//!
//! The rule that matters most: a request that may have reached ConnectPay and changes something (a submit)
//! is never sent twice by the gateway, since ConnectPay documents no idempotency key. Reads are safe to
//! repeat; anything is safe to repeat when it provably never left the gateway.

use std::time::Duration;

use crate::config::RetryConfig;

/// Whether repeating a call could do something twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A GET: repeating it changes nothing.
    Read,
    /// A POST that creates or changes an application.
    Submit,
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never left the gateway (DNS, connection refused, TLS handshake).
    NotSent,
    /// The request was sent, but no complete answer came back (timeout, connection reset).
    NoAnswer,
    /// ConnectPay answered with this HTTP status.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: c.max_attempts,
            initial_backoff: c.initial_backoff,
            max_backoff: c.max_backoff,
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1`, or `None` to give up. `jitter` is a uniform sample
    /// from [0, 1), passed in so this stays a pure function.
    pub fn next_delay(
        &self,
        kind: CallKind,
        failure: Failure,
        attempt: u32,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !Self::retryable(kind, failure) {
            return None;
        }
        if let Failure::Status {
            retry_after: Some(after),
            ..
        } = failure
        {
            return Some(after);
        }
        // Full jitter over an exponentially growing window, so many retrying callers spread out.
        let window = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        Some(window.mul_f64(jitter.clamp(0.0, 1.0)))
    }

    fn retryable(kind: CallKind, failure: Failure) -> bool {
        match (kind, failure) {
            (_, Failure::NotSent) => true,
            (CallKind::Read, Failure::NoAnswer) => true,
            (CallKind::Read, Failure::Status { code, .. }) => code == 429 || code >= 500,
            (CallKind::Submit, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        }
    }

    const UNAVAILABLE: Failure = Failure::Status {
        code: 503,
        retry_after: None,
    };

    #[test]
    fn submits_are_repeated_only_when_never_sent() {
        let p = policy();
        assert!(
            p.next_delay(CallKind::Submit, Failure::NotSent, 1, 0.5)
                .is_some()
        );
        for failure in [
            Failure::NoAnswer,
            UNAVAILABLE,
            Failure::Status {
                code: 429,
                retry_after: Some(Duration::from_secs(1)),
            },
        ] {
            assert_eq!(
                p.next_delay(CallKind::Submit, failure, 1, 0.5),
                None,
                "{failure:?}"
            );
        }
    }

    #[test]
    fn reads_are_repeated_on_transient_failures_only() {
        let p = policy();
        for failure in [Failure::NotSent, Failure::NoAnswer, UNAVAILABLE] {
            assert!(
                p.next_delay(CallKind::Read, failure, 1, 0.5).is_some(),
                "{failure:?}"
            );
        }
        for code in [400, 401, 404, 409] {
            let failure = Failure::Status {
                code,
                retry_after: None,
            };
            assert_eq!(
                p.next_delay(CallKind::Read, failure, 1, 0.5),
                None,
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            ..policy()
        };
        assert_eq!(
            p.next_delay(CallKind::Read, UNAVAILABLE, 1, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.next_delay(CallKind::Read, UNAVAILABLE, 2, 1.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            p.next_delay(CallKind::Read, UNAVAILABLE, 5, 1.0),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            p.next_delay(CallKind::Read, UNAVAILABLE, 9, 1.0),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            p.next_delay(CallKind::Read, UNAVAILABLE, 2, 0.5),
            Some(Duration::from_millis(100))
        );
        let limited = Failure::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            p.next_delay(CallKind::Read, limited, 1, 0.5),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        assert_eq!(
            policy().next_delay(CallKind::Read, UNAVAILABLE, 3, 0.5),
            None
        );
    }
}
