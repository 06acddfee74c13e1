//! A circuit breaker in front of ConnectPay: after a run of failures the gateway stops calling for a
//! while and fails fast (`UNAVAILABLE` with a retry delay), so an outage does not pile up waiting calls and
//! retries; then one call at a time probes whether ConnectPay is back.
//!
//! Written here rather than taken from a crate: the few Rust circuit breakers published are young and
//! unmaintained, and this one is a small state machine whose every transition is tested below.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker; 0 disables it.
    pub failure_threshold: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everything else still fails fast.
    HalfOpen,
}

pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// A call the breaker let through; report how it went with [`Breaker::record`].
#[derive(Debug)]
#[must_use]
pub struct Admitted {
    probe: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section assigns a whole state: a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets a call through, or says how long to wait before trying again.
    pub fn admit(&self, now: Instant) -> Result<Admitted, Duration> {
        if self.settings.failure_threshold == 0 {
            return Ok(Admitted { probe: false });
        }
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(Admitted { probe: false }),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen;
                tracing::info!("ConnectPay circuit half-open: probing");
                Ok(Admitted { probe: true })
            }
            // The probe is still out: a second of patience.
            State::HalfOpen => Err(Duration::from_secs(1).min(self.settings.open_for)),
        }
    }

    /// Reports a call's outcome: `ok` when ConnectPay answered as a working service does (any answer but
    /// a 5xx or 429, or no answer at all).
    pub fn record(&self, admitted: Admitted, ok: bool, now: Instant) {
        if self.settings.failure_threshold == 0 {
            return;
        }
        let mut state = self.state();
        let next = match (&*state, ok) {
            (_, true) => {
                if admitted.probe {
                    tracing::info!("ConnectPay circuit closed: the probe succeeded");
                }
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, false)
                if failures + 1 < self.settings.failure_threshold =>
            {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // Calls admitted before the breaker opened finish late; they change nothing more.
            (State::Open { until }, false) if !admitted.probe => State::Open { until: *until },
            (_, false) => {
                tracing::warn!(open_for = ?self.settings.open_for, "ConnectPay circuit open: failing fast");
                State::Open {
                    until: now + self.settings.open_for,
                }
            }
        };
        *state = next;
    }

    pub fn current(&self) -> BreakerState {
        match *self.state() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    fn fail(b: &Breaker, now: Instant) {
        let admitted = b.admit(now).expect("admitted");
        b.record(admitted, false, now);
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast() {
        let (b, t) = (breaker(), Instant::now());
        fail(&b, t);
        fail(&b, t);
        let ok = b.admit(t).unwrap();
        b.record(ok, true, t); // a success resets the count
        fail(&b, t);
        fail(&b, t);
        assert_eq!(b.current(), BreakerState::Closed);
        fail(&b, t);
        assert_eq!(b.current(), BreakerState::Open);
        assert_eq!(
            b.admit(t + Duration::from_secs(4)).unwrap_err(),
            Duration::from_secs(6)
        );
    }

    #[test]
    fn one_probe_at_a_time_then_closes_or_opens_again() {
        let (b, t) = (breaker(), Instant::now());
        for _ in 0..3 {
            fail(&b, t);
        }
        let later = t + Duration::from_secs(10);
        let probe = b.admit(later).expect("a probe after open_for");
        assert_eq!(b.current(), BreakerState::HalfOpen);
        assert!(b.admit(later).is_err(), "only one probe");
        b.record(probe, false, later);
        assert_eq!(b.current(), BreakerState::Open);
        let again = later + Duration::from_secs(10);
        let probe = b.admit(again).unwrap();
        b.record(probe, true, again);
        assert_eq!(b.current(), BreakerState::Closed);
        assert!(b.admit(again).is_ok());
    }

    #[test]
    fn late_failures_do_not_extend_an_open_breaker_and_zero_disables_it() {
        let (b, t) = (breaker(), Instant::now());
        let late = b.admit(t).unwrap();
        for _ in 0..3 {
            fail(&b, t);
        }
        b.record(late, false, t + Duration::from_secs(5));
        assert!(
            b.admit(t + Duration::from_secs(10)).is_ok(),
            "still opens on schedule"
        );

        let off = Breaker::new(BreakerSettings {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
        });
        for _ in 0..100 {
            fail(&off, t);
        }
        assert_eq!(off.current(), BreakerState::Closed);
    }
}
