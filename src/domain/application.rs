//! The application model and the status machine every source of news goes through.

use std::{fmt, time::SystemTime};

use super::status::Status;

/// ConnectPay's `applicationId`: the application's identity everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApplicationId(String);

impl ApplicationId {
    /// ConnectPay documents UUIDs; anything longer than this is not an id we could have been given.
    pub const MAX_LEN: usize = 128;

    /// Accepts a non-blank id of printable characters, at most [`Self::MAX_LEN`] long.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.trim().is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.chars().all(|c| !c.is_control());
        ok.then(|| ApplicationId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one answer from ConnectPay (or one notification, once confirmed) says about an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub status: Status,
    /// ConnectPay's own status string.
    pub upstream_status: String,
    pub person_id: Option<String>,
    pub baas_client_id: Option<String>,
}

/// One onboarding application as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: ApplicationId,
    /// The caller that created it (its authenticated identity): the only one that may see it.
    pub owner: String,
    pub external_reference: String,
    pub person_id: Option<String>,
    pub status: Status,
    pub upstream_status: String,
    pub baas_client_id: Option<String>,
    /// Grows by one with every change a caller can see.
    pub version: u64,
    /// The last known (never `Other`) status: where an `Other` sits in the order.
    pub last_known_status: Status,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
}

impl Application {
    /// The first version of an application, from the answer to its IDV submission.
    pub fn created(
        id: ApplicationId,
        owner: String,
        external_reference: String,
        first: Observation,
        now: SystemTime,
    ) -> Self {
        // An unknown first status still sits at the start of the order.
        let last_known_status = match first.status {
            Status::Other => Status::IdvTokenGenerated,
            known => known,
        };
        Application {
            id,
            owner,
            external_reference,
            person_id: first.person_id,
            status: first.status,
            upstream_status: first.upstream_status,
            baas_client_id: first.baas_client_id,
            version: 1,
            last_known_status,
            create_time: now,
            update_time: now,
        }
    }

    /// Whether no observation can change this application any more: a terminal status, unless it is an
    /// issued account still waiting for its `baasClientId`.
    pub fn is_final(&self) -> bool {
        self.status.is_terminal()
            && !(self.status == Status::AccountIssued && self.baas_client_id.is_none())
    }

    /// Applies what ConnectPay says and returns the next version, or `None` when nothing a caller can see
    /// changes. The status only moves forward: stale or duplicated news is absorbed here, whatever its
    /// source (a webhook-triggered GET, a caller's GET, the answer to a submit).
    pub fn apply(&self, seen: &Observation, now: SystemTime) -> Option<Application> {
        let mut next = self.clone();
        let moved = if self.status.is_terminal() {
            next.enrich_issued_account(seen)
        } else {
            next.advance(seen)
        };
        // The person id never changes once known; learning it is a visible change of its own.
        let learned_person = self.person_id.is_none() && seen.person_id.is_some();
        if learned_person && !self.status.is_terminal() {
            next.person_id.clone_from(&seen.person_id);
        }
        (moved || (learned_person && !self.status.is_terminal())).then(|| {
            next.version = self.version + 1;
            next.update_time = now;
            next
        })
    }

    fn advance(&mut self, seen: &Observation) -> bool {
        match seen.status.rank() {
            // Unknown news may replace any non-terminal status, but only once per distinct raw string.
            None => {
                if self.status == Status::Other && self.upstream_status == seen.upstream_status {
                    return false;
                }
                self.status = Status::Other;
                self.upstream_status.clone_from(&seen.upstream_status);
                true
            }
            Some(rank) => {
                let floor = self
                    .last_known_status
                    .rank()
                    .expect("the last known status is never Other");
                if rank <= floor {
                    return false;
                }
                self.status = seen.status;
                self.last_known_status = seen.status;
                self.upstream_status.clone_from(&seen.upstream_status);
                if seen.baas_client_id.is_some() {
                    self.baas_client_id.clone_from(&seen.baas_client_id);
                }
                true
            }
        }
    }

    /// An `AccountIssued` that arrived without its `baasClientId` takes the id once, when it arrives.
    fn enrich_issued_account(&mut self, seen: &Observation) -> bool {
        let enrich = self.status == Status::AccountIssued
            && self.baas_client_id.is_none()
            && seen.status == Status::AccountIssued
            && seen.baas_client_id.is_some();
        if enrich {
            self.baas_client_id.clone_from(&seen.baas_client_id);
        }
        enrich
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: Status, raw: &str) -> Observation {
        Observation {
            status,
            upstream_status: raw.to_owned(),
            person_id: Some("person-1".into()),
            baas_client_id: None,
        }
    }

    fn fresh() -> Application {
        Application::created(
            ApplicationId::parse("app-1").unwrap(),
            "payments".into(),
            "client-42".into(),
            seen(Status::IdvTokenGenerated, "IDV_TOKEN_GENERATED"),
            SystemTime::UNIX_EPOCH,
        )
    }

    fn walk(app: Application, steps: &[Observation]) -> Application {
        steps
            .iter()
            .fold(app, |app, s| app.apply(s, SystemTime::now()).unwrap_or(app))
    }

    #[test]
    fn moves_forward_one_version_per_visible_change() {
        let app = walk(
            fresh(),
            &[
                seen(Status::IdvApproved, "IDV_APPROVED"),
                seen(Status::ComplianceReview, "COMPLIANCE_REVIEW"),
                Observation {
                    baas_client_id: Some("baas-1".into()),
                    ..seen(Status::AccountIssued, "APPLICATION_APPROVED")
                },
            ],
        );
        assert_eq!(app.status, Status::AccountIssued);
        assert_eq!(app.upstream_status, "APPLICATION_APPROVED");
        assert_eq!(app.baas_client_id.as_deref(), Some("baas-1"));
        assert_eq!(app.version, 4);
    }

    /// A final application absorbs every observation, with or without ids; every other application has
    /// some observation that changes it.
    #[test]
    fn a_final_application_never_changes() {
        let observations: Vec<Observation> = Status::ALL
            .iter()
            .flat_map(|status| {
                let raw = status.as_str();
                [
                    seen(*status, raw),
                    Observation {
                        baas_client_id: Some("baas-2".into()),
                        person_id: Some("person-2".into()),
                        ..seen(*status, raw)
                    },
                    seen(*status, "SOMETHING_NEW"),
                ]
            })
            .collect();
        for status in Status::ALL {
            for baas_client_id in [None, Some("baas-1".to_owned())] {
                let app = Application {
                    status,
                    last_known_status: if status == Status::Other {
                        Status::IdvApproved
                    } else {
                        status
                    },
                    baas_client_id: baas_client_id.clone(),
                    person_id: None,
                    ..fresh()
                };
                let changes = observations
                    .iter()
                    .filter(|o| app.apply(o, SystemTime::now()).is_some())
                    .count();
                assert_eq!(
                    app.is_final(),
                    changes == 0,
                    "{status:?} with baasClientId {baas_client_id:?}: {changes} observations change it"
                );
            }
        }
    }

    #[test]
    fn never_moves_backwards_and_ignores_duplicates() {
        let app = walk(
            fresh(),
            &[seen(Status::ComplianceReview, "COMPLIANCE_REVIEW")],
        );
        for stale in [
            seen(Status::IdvTokenGenerated, "IDV_TOKEN_GENERATED"),
            seen(Status::IdvApproved, "IDV_APPROVED"),
            seen(Status::ApplicationCaptured, "APPLICATION_CAPTURED"),
            seen(Status::ComplianceReview, "COMPLIANCE_REVIEW"),
        ] {
            assert_eq!(app.apply(&stale, SystemTime::now()), None, "{stale:?}");
        }
    }

    #[test]
    fn alternatives_of_one_rank_do_not_replace_each_other() {
        let approved = walk(fresh(), &[seen(Status::IdvApproved, "IDV_APPROVED")]);
        assert_eq!(
            approved.apply(
                &seen(Status::IdvDeclined, "IDV_DECLINED"),
                SystemTime::now()
            ),
            None
        );
    }

    #[test]
    fn terminal_absorbs_everything_but_one_enrichment() {
        let issued = walk(fresh(), &[seen(Status::AccountIssued, "ACCOUNT_ISSUED")]);
        assert_eq!(issued.baas_client_id, None);
        assert_eq!(
            issued.apply(
                &seen(Status::ApplicationDeclined, "APPLICATION_DECLINED"),
                SystemTime::now()
            ),
            None
        );
        assert_eq!(
            issued.apply(&seen(Status::Other, "SOMETHING_NEW"), SystemTime::now()),
            None
        );
        let with_id = Observation {
            baas_client_id: Some("baas-1".into()),
            ..seen(Status::AccountIssued, "ACCOUNT_ISSUED")
        };
        let enriched = issued
            .apply(&with_id, SystemTime::now())
            .expect("enriched once");
        assert_eq!(enriched.baas_client_id.as_deref(), Some("baas-1"));
        assert_eq!(enriched.version, issued.version + 1);
        let other_id = Observation {
            baas_client_id: Some("baas-2".into()),
            ..with_id
        };
        assert_eq!(enriched.apply(&other_id, SystemTime::now()), None);

        let declined = walk(fresh(), &[seen(Status::IdvDeclined, "IDV_DECLINED")]);
        assert_eq!(
            declined.apply(
                &seen(Status::IdvApproved, "IDV_APPROVED"),
                SystemTime::now()
            ),
            None
        );
    }

    #[test]
    fn unknown_status_is_kept_and_later_known_statuses_follow_it() {
        let review = walk(
            fresh(),
            &[seen(Status::ComplianceReview, "COMPLIANCE_REVIEW")],
        );
        let other = review
            .apply(
                &seen(Status::Other, "DOCUMENTS_REQUESTED"),
                SystemTime::now(),
            )
            .expect("unknown status is a visible change");
        assert_eq!(other.status, Status::Other);
        assert_eq!(other.upstream_status, "DOCUMENTS_REQUESTED");
        assert_eq!(
            other.apply(
                &seen(Status::Other, "DOCUMENTS_REQUESTED"),
                SystemTime::now()
            ),
            None
        );
        // Not earlier than where it was before the unknown status...
        assert_eq!(
            other.apply(
                &seen(Status::IdvApproved, "IDV_APPROVED"),
                SystemTime::now()
            ),
            None
        );
        assert_eq!(
            other.apply(
                &seen(Status::ComplianceReview, "COMPLIANCE_REVIEW"),
                SystemTime::now()
            ),
            None
        );
        // ...but anything later.
        let issued = other
            .apply(
                &seen(Status::AccountIssued, "ACCOUNT_ISSUED"),
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(issued.status, Status::AccountIssued);
        assert_eq!(issued.version, other.version + 1);
    }

    #[test]
    fn learning_the_person_id_is_a_change() {
        let mut app = fresh();
        app.person_id = None;
        let next = app.apply(
            &seen(Status::IdvTokenGenerated, "IDV_TOKEN_GENERATED"),
            SystemTime::now(),
        );
        assert_eq!(next.unwrap().person_id.as_deref(), Some("person-1"));
    }
}
