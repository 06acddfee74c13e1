//! When to ask ConnectPay again about an application nobody told the gateway about.
//!
//! Webhooks can be lost (ConnectPay gives up after about a day, or switches a subscription off after 100
//! failures), so every non-terminal application is re-read on a schedule: often while the IDV decision is
//! due (seconds to minutes), less often while a person reviews it, backing off while nothing changes.

use std::time::Duration;

use super::status::Status;

#[derive(Debug, Clone, PartialEq)]
pub struct PollSchedule {
    /// While the IDV decision is pending.
    pub idv_interval: Duration,
    /// Once the KYC data is in (captured, in review, or an unknown status).
    pub review_interval: Duration,
    /// The longest pause, however long nothing changes.
    pub max_interval: Duration,
}

impl PollSchedule {
    /// The pause before the next poll of an application in `status` after `unchanged` polls in a row found
    /// nothing new; `None` once the status is terminal. `jitter` is a uniform sample from [0, 1): the pause
    /// varies by ±10 % so that applications created together do not stay in lockstep.
    pub fn next(&self, status: Status, unchanged: u32, jitter: f64) -> Option<Duration> {
        if status.is_terminal() {
            return None;
        }
        let base = if status.is_idv_stage() {
            self.idv_interval
        } else {
            self.review_interval
        };
        let backed_off = base
            .saturating_mul(2u32.saturating_pow(unchanged.min(16)))
            .min(self.max_interval);
        Some(backed_off.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> PollSchedule {
        PollSchedule {
            idv_interval: Duration::from_secs(60),
            review_interval: Duration::from_secs(300),
            max_interval: Duration::from_secs(3600),
        }
    }

    #[test]
    fn by_stage_backing_off_to_the_cap_and_never_for_terminal_statuses() {
        let s = schedule();
        assert_eq!(
            s.next(Status::IdvTokenGenerated, 0, 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            s.next(Status::IdvApproved, 2, 0.5),
            Some(Duration::from_secs(240))
        );
        assert_eq!(
            s.next(Status::ComplianceReview, 0, 0.5),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            s.next(Status::Other, 1, 0.5),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            s.next(Status::ComplianceReview, 30, 0.5),
            Some(Duration::from_secs(3600))
        );
        for terminal in [
            Status::IdvDeclined,
            Status::IdvTokenExpired,
            Status::AccountIssued,
            Status::ApplicationDeclined,
        ] {
            assert_eq!(s.next(terminal, 0, 0.5), None);
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let s = schedule();
        assert_eq!(
            s.next(Status::IdvApproved, 0, 0.0),
            Some(Duration::from_secs(54))
        );
        assert_eq!(
            s.next(Status::IdvApproved, 0, 1.0),
            Some(Duration::from_secs(66))
        );
    }
}
