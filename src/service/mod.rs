//! The use cases, written against the adapters: submit an IDV session, read an application, submit the
//! KYC data. Every piece of news from ConnectPay goes through the store's `apply`, which runs the status
//! machine, so no source can move an application backwards.

use std::{sync::Arc, time::SystemTime};

use crate::{
    connectpay::{CallKind, ConnectPayClient, UpstreamError, client::Reported},
    domain::{
        Application, ApplicationId, Deadline, Error, PersonalKyc, Status,
        error::{ErrorKind, Reason},
        submission::IdvSubmission,
    },
    store::{Store, StoreError},
};

/// How a caller names an application.
#[derive(Debug, Clone)]
pub enum ApplicationKey {
    Id(ApplicationId),
    /// The most recent application created for this external reference.
    ExternalReference(String),
}

pub struct Onboarding {
    connectpay: Arc<ConnectPayClient>,
    store: Arc<dyn Store>,
    providers: Vec<String>,
}

impl Onboarding {
    pub fn new(
        connectpay: Arc<ConnectPayClient>,
        store: Arc<dyn Store>,
        providers: Vec<String>,
    ) -> Self {
        Onboarding {
            connectpay,
            store,
            providers,
        }
    }

    /// The IDV providers callers may name.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    pub async fn submit_idv_session(
        &self,
        submission: IdvSubmission,
        deadline: Deadline,
    ) -> Result<Application, Error> {
        let reported = self
            .connectpay
            .submit_idv_session(&submission, deadline)
            .await
            .map_err(|e| e.into_domain(CallKind::Submit, "session_id"))?;
        let id = reported
            .application_id
            .expect("the client refuses a submit answer without an application id");
        let created = Application::created(
            id,
            submission.external_reference,
            reported.observation,
            SystemTime::now(),
        );
        let application = self
            .store
            .insert_application(created)
            .await
            .map_err(|e| store_failed(e, CallKind::Submit))?;
        tracing::info!(
            application_id = %application.id,
            status = %application.status,
            "IDV session submitted"
        );
        Ok(application)
    }

    /// Asks ConnectPay (the source of truth) and records what it says.
    pub async fn get_application(
        &self,
        key: ApplicationKey,
        deadline: Deadline,
    ) -> Result<Application, Error> {
        let known = self.known(&key).await?;
        self.refresh(known, deadline).await
    }

    pub async fn initiate_onboarding(
        &self,
        id: ApplicationId,
        kyc: PersonalKyc,
        deadline: Deadline,
    ) -> Result<Application, Error> {
        let mut known = self.known(&ApplicationKey::Id(id)).await?;
        // Statuses only move forward, so a status past IDV_APPROVED is final news: no need to ask.
        // An earlier one may be stale, and ConnectPay decides.
        if known.status.is_terminal() || !known.last_known_status.is_idv_stage() {
            return Err(Error::wrong_state(format!(
                "the application is {}; KYC data is accepted only while it is {}",
                known.status,
                Status::IdvApproved
            )));
        }
        if known.person_id.is_none() {
            known = self.refresh(known, deadline).await?;
        }
        let person_id = known
            .person_id
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::FailedPrecondition, Reason::PersonIdUnknown))?;
        let reported = self
            .connectpay
            .initiate_application(&known.id, &person_id, &kyc, deadline)
            .await
            .map_err(|e| e.into_domain(CallKind::Submit, "kyc"))?;
        let application = self.record(&known, reported, CallKind::Submit).await?;
        tracing::info!(
            application_id = %application.id,
            status = %application.status,
            "KYC data submitted"
        );
        Ok(application)
    }

    async fn known(&self, key: &ApplicationKey) -> Result<Application, Error> {
        let found = match key {
            ApplicationKey::Id(id) => self.store.application(id).await,
            ApplicationKey::ExternalReference(reference) => {
                self.store.latest_for_reference(reference).await
            }
        };
        found
            .map_err(|e| store_failed(e, CallKind::Read))?
            .ok_or_else(Error::application_not_found)
    }

    /// Reads the application from ConnectPay. In the IDV stage, newer ConnectPay versions know it only by
    /// its person, so a `404` there is asked again of the IDV status endpoint.
    async fn refresh(&self, known: Application, deadline: Deadline) -> Result<Application, Error> {
        let read = |e: UpstreamError| e.into_domain(CallKind::Read, "");
        let reported = match self.connectpay.get_application(&known.id, deadline).await {
            Ok(reported) => reported,
            Err(UpstreamError::Status { code: 404, .. })
                if known.status.is_idv_stage() && known.person_id.is_some() =>
            {
                let person_id = known.person_id.as_deref().unwrap_or_default();
                self.connectpay
                    .get_idv_status(person_id, deadline)
                    .await
                    .map_err(read)?
            }
            Err(e) => return Err(read(e)),
        };
        self.record(&known, reported, CallKind::Read).await
    }

    async fn record(
        &self,
        known: &Application,
        reported: Reported,
        kind: CallKind,
    ) -> Result<Application, Error> {
        if reported
            .application_id
            .as_ref()
            .is_some_and(|id| *id != known.id)
        {
            // News about another application is no news about this one.
            tracing::warn!(application_id = %known.id, "ConnectPay answered about a different application");
            return Ok(known.clone());
        }
        let applied = self
            .store
            .apply(&known.id, &reported.observation)
            .await
            .map_err(|e| store_failed(e, kind))?
            .ok_or_else(Error::application_not_found)?;
        if applied.changed {
            tracing::info!(
                application_id = %known.id,
                status = %applied.application.status,
                version = applied.application.version,
                "application changed"
            );
        }
        Ok(applied.application)
    }
}

/// A store failure after a submit reached ConnectPay leaves the outcome unknown to the caller.
fn store_failed(e: StoreError, kind: CallKind) -> Error {
    tracing::error!(error = %e, "store failure");
    let code = match kind {
        CallKind::Read => ErrorKind::Unavailable,
        CallKind::Submit => ErrorKind::Unknown,
    };
    Error::new(code, Reason::StoreUnavailable)
}
