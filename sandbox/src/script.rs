//! Scripted outcomes: what an application does on its own after an IDV session or KYC data
//! was submitted, chosen by the input as the README documents.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::mode::Statuses;
use crate::shared::{Shared, lock};
use crate::state::{BaasClientId, Script, World};
use crate::status::Status;

/// One scripted status change, `after` the submission that started the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) after: Duration,
    pub(crate) status: Status,
}

/// The IDV decision, by `sessionId` (case-insensitive substring): `hold` stays undecided,
/// `decline` and `expire` fail, anything else is approved — each after the IDV delay.
pub(crate) fn idv_steps(session_id: &str, idv_delay: Duration) -> Vec<Step> {
    let session_id = session_id.to_lowercase();
    let status = if session_id.contains("hold") {
        return Vec::new();
    } else if session_id.contains("decline") {
        Status::IdvDeclined
    } else if session_id.contains("expire") {
        Status::IdvTokenExpired
    } else {
        Status::IdvApproved
    };
    vec![Step {
        after: idv_delay,
        status,
    }]
}

/// The KYC answer's status and what follows it, by `person.address.city` (exact,
/// case-insensitive): `Review` stops in `COMPLIANCE_REVIEW`, `Decline` ends declined, anything
/// else approved. The final decision comes after the review delay; with the newer statuses,
/// `COMPLIANCE_REVIEW` comes after half of it.
pub(crate) fn kyc_steps(
    city: &str,
    statuses: Statuses,
    review_delay: Duration,
) -> (Status, Vec<Step>) {
    let step = |after, status| Step { after, status };
    let decision = if city.eq_ignore_ascii_case("review") {
        None
    } else if city.eq_ignore_ascii_case("decline") {
        Some(Status::ApplicationDeclined)
    } else {
        Some(match statuses {
            Statuses::Legacy => Status::AccountIssued,
            Statuses::Newer => Status::ApplicationApproved,
        })
    };
    match statuses {
        Statuses::Legacy => (
            Status::ComplianceReview,
            decision
                .map(|s| step(review_delay, s))
                .into_iter()
                .collect(),
        ),
        Statuses::Newer => {
            let mut steps = vec![step(review_delay / 2, Status::ComplianceReview)];
            steps.extend(decision.map(|s| step(review_delay, s)));
            (Status::ApplicationCaptured, steps)
        }
    }
}

impl Script {
    /// Stops the pending steps, if any.
    pub(crate) fn cancel(&mut self) {
        // Script ids start at 1, so 0 is owned by no task.
        self.id = 0;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Shared {
    /// Replaces the application's script with `steps`, timed from now.
    pub(crate) fn schedule(self: &Arc<Self>, world: &mut World, id: Uuid, steps: Vec<Step>) {
        world.next_script += 1;
        let script_id = world.next_script;
        let Some(application) = world.applications.get_mut(&id) else {
            return;
        };
        application.script.cancel();
        if steps.is_empty() {
            return;
        }
        application.script.id = script_id;
        let shared = Arc::clone(self);
        application.script.task = self.tasks.spawn(shared.run_script(id, script_id, steps));
    }

    async fn run_script(self: Arc<Self>, id: Uuid, script_id: u64, steps: Vec<Step>) {
        let start = Instant::now();
        for step in steps {
            tokio::time::sleep_until(start + step.after).await;
            let dispatch = {
                let mut world = lock(&self.world);
                let current = world.applications.get(&id).map(|a| a.script.id);
                if current != Some(script_id) {
                    return;
                }
                let baas_client_id = if step.status.is_approval() {
                    BaasClientId::Issue
                } else {
                    BaasClientId::Keep
                };
                world.change_status(id, step.status, baas_client_id)
            };
            self.dispatch(dispatch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(100);

    #[test]
    fn idv_outcome_by_session_id() {
        assert!(idv_steps("please-HOLD-this", D).is_empty());
        assert_eq!(idv_steps("x-Decline", D)[0].status, Status::IdvDeclined);
        assert_eq!(idv_steps("EXPIRED", D)[0].status, Status::IdvTokenExpired);
        assert_eq!(
            idv_steps("anything", D),
            [Step {
                after: D,
                status: Status::IdvApproved
            }]
        );
    }

    #[test]
    fn kyc_outcome_by_city_and_statuses() {
        let (answer, steps) = kyc_steps("Vilnius", Statuses::Legacy, D);
        assert_eq!(answer, Status::ComplianceReview);
        assert_eq!(
            steps,
            [Step {
                after: D,
                status: Status::AccountIssued
            }]
        );

        let (answer, steps) = kyc_steps("review", Statuses::Legacy, D);
        assert_eq!(answer, Status::ComplianceReview);
        assert!(steps.is_empty());

        let (answer, steps) = kyc_steps("DECLINE", Statuses::Newer, D);
        assert_eq!(answer, Status::ApplicationCaptured);
        assert_eq!(
            steps,
            [
                Step {
                    after: D / 2,
                    status: Status::ComplianceReview
                },
                Step {
                    after: D,
                    status: Status::ApplicationDeclined
                },
            ]
        );

        let (_, steps) = kyc_steps("Review", Statuses::Newer, D);
        assert_eq!(
            steps,
            [Step {
                after: D / 2,
                status: Status::ComplianceReview
            }]
        );

        // Exact match only: a city merely containing the word is approved.
        let (_, steps) = kyc_steps("Reviewtown", Statuses::Newer, D);
        assert_eq!(steps[1].status, Status::ApplicationApproved);
    }
}
