//! Fault injection: scripted faults for the next answers of an endpoint, and random ones.

use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ControlError;
use crate::recorder::Endpoint;
use crate::status::Status;

/// `POST /_sandbox/faults`: `count` answers of `endpoint` (about `application_id` only, if
/// given) behave as `action` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    pub endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<Uuid>,
    #[serde(default = "one")]
    pub count: u32,
    pub action: FaultAction,
}

fn one() -> u32 {
    1
}

/// What a faulty answer does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum FaultAction {
    /// Answer `status` without doing anything; `body` replaces the JSON error body verbatim.
    Fail {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Wait, then behave normally.
    Delay { ms: u64 },
    /// `get_application`/`get_idv` only: answer this status instead of the current one.
    Stale { status: Status },
    /// Do the work, then answer this error instead.
    AfterEffect { status: u16 },
    /// Do the work, then never answer (until the client goes away).
    Hang {},
    /// Do the work, then close the connection without answering.
    Reset {},
}

impl Fault {
    pub(crate) fn validate(&self) -> Result<(), ControlError> {
        if self.count == 0 {
            return Err(ControlError::bad_request("count must be at least 1"));
        }
        if self.application_id.is_some() && !self.endpoint.names_application() {
            return Err(ControlError::bad_request(format!(
                "{} requests are not about an existing application; applicationId cannot limit them",
                self.endpoint
            )));
        }
        match &self.action {
            FaultAction::Fail { status, .. } | FaultAction::AfterEffect { status }
                if !(400..=599).contains(status) =>
            {
                return Err(ControlError::bad_request(format!(
                    "status {status} is not an error status (400-599)"
                )));
            }
            FaultAction::Stale { .. }
                if !matches!(self.endpoint, Endpoint::GetApplication | Endpoint::GetIdv) =>
            {
                return Err(ControlError::bad_request(
                    "stale applies to get_application and get_idv only",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// `PUT /_sandbox/fault-rates`: shares of onboarding answers replaced by errors, and latency
/// added to every onboarding answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultRates {
    pub rate500: f64,
    pub rate503: f64,
    pub rate429: f64,
    pub latency_ms: u64,
}

impl FaultRates {
    pub(crate) fn validate(&self) -> Result<(), ControlError> {
        let rates = [self.rate500, self.rate503, self.rate429];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err(ControlError::bad_request(
                "each rate must be between 0 and 1",
            ));
        }
        if rates.iter().sum::<f64>() > 1.0 + f64::EPSILON {
            return Err(ControlError::bad_request(
                "the rates must not add up to more than 1",
            ));
        }
        Ok(())
    }

    /// The random error for one answer, if any.
    pub(crate) fn roll(&self) -> Option<u16> {
        if self.rate500 + self.rate503 + self.rate429 <= 0.0 {
            return None;
        }
        let draw: f64 = rand::rng().random();
        [
            (self.rate500, 500),
            (self.rate503, 503),
            (self.rate429, 429),
        ]
        .into_iter()
        .scan(0.0, |below, (rate, status)| {
            *below += rate;
            Some((*below, status))
        })
        .find(|(below, _)| draw < *below)
        .map(|(_, status)| status)
    }
}

/// The configured faults.
#[derive(Default)]
pub(crate) struct Faults {
    scripted: Vec<Fault>,
    pub(crate) rates: FaultRates,
}

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) {
        self.scripted.push(fault);
    }

    /// Uses up one answer of the oldest fault that matches.
    pub(crate) fn take(
        &mut self,
        endpoint: Endpoint,
        application_id: Option<Uuid>,
    ) -> Option<FaultAction> {
        let index = self.scripted.iter().position(|fault| {
            fault.endpoint == endpoint
                && fault
                    .application_id
                    .is_none_or(|only| Some(only) == application_id)
        })?;
        let fault = &mut self.scripted[index];
        fault.count -= 1;
        if fault.count == 0 {
            Some(self.scripted.remove(index).action)
        } else {
            Some(fault.action.clone())
        }
    }

    pub(crate) fn clear(&mut self) {
        self.scripted.clear();
        self.rates = FaultRates::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: &str) -> Fault {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_every_action() {
        let f = fault(
            r#"{"endpoint": "get_idv", "count": 2, "action": {"fail": {"status": 429, "retryAfter": 3}}}"#,
        );
        assert_eq!(
            f.action,
            FaultAction::Fail {
                status: 429,
                retry_after: Some(3),
                body: None
            }
        );
        assert_eq!(
            fault(r#"{"endpoint": "token", "action": {"hang": {}}}"#).action,
            FaultAction::Hang {}
        );
        assert_eq!(
            fault(r#"{"endpoint": "token", "action": {"afterEffect": {"status": 500}}}"#).count,
            1
        );
        assert!(
            serde_json::from_str::<Fault>(r#"{"endpoint": "token", "action": {"explode": {}}}"#)
                .is_err()
        );
    }

    #[test]
    fn validation() {
        let stale_on_token =
            fault(r#"{"endpoint": "token", "action": {"stale": {"status": "IDV_APPROVED"}}}"#);
        assert!(stale_on_token.validate().is_err());
        let ok =
            fault(r#"{"endpoint": "get_idv", "action": {"stale": {"status": "IDV_APPROVED"}}}"#);
        assert!(ok.validate().is_ok());
        assert!(
            fault(r#"{"endpoint": "token", "action": {"fail": {"status": 200}}}"#)
                .validate()
                .is_err()
        );
        let rates = FaultRates {
            rate500: 0.6,
            rate503: 0.6,
            ..FaultRates::default()
        };
        assert!(rates.validate().is_err());
    }

    #[test]
    fn takes_matching_faults_in_order() {
        let app = Uuid::new_v4();
        let mut faults = Faults::default();
        faults.add(Fault {
            endpoint: Endpoint::GetApplication,
            application_id: Some(app),
            count: 1,
            action: FaultAction::Hang {},
        });
        faults.add(Fault {
            endpoint: Endpoint::GetApplication,
            application_id: None,
            count: 2,
            action: FaultAction::Reset {},
        });
        assert_eq!(
            faults.take(Endpoint::GetApplication, Some(Uuid::new_v4())),
            Some(FaultAction::Reset {})
        );
        assert_eq!(
            faults.take(Endpoint::GetApplication, Some(app)),
            Some(FaultAction::Hang {})
        );
        assert_eq!(
            faults.take(Endpoint::GetApplication, None),
            Some(FaultAction::Reset {})
        );
        assert_eq!(faults.take(Endpoint::GetApplication, None), None);
    }

    #[test]
    fn rolls_within_rates() {
        let always = FaultRates {
            rate503: 1.0,
            ..FaultRates::default()
        };
        assert!((0..100).all(|_| always.roll() == Some(503)));
        assert_eq!(FaultRates::default().roll(), None);
    }
}
