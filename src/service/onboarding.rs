//! The unary steps: submit an IDV session, read an application, submit the KYC data.

use secrecy::ExposeSecret;

use super::{ApplicationKey, Call, Onboarding, Via, idempotency::Idempotent, store_failed};
use crate::{
    connectpay::CallKind,
    domain::{
        Application, ApplicationId, Error, PersonalKyc, Status,
        error::{ErrorKind, Reason},
        submission::IdvSubmission,
    },
    store::Source,
};

impl Onboarding {
    /// Step 1. Without a request id, the same IDV session submitted again returns its application; with
    /// one, the request is idempotent (see idempotency.rs).
    pub async fn submit_idv_session(
        &self,
        call: &Call,
        submission: IdvSubmission,
    ) -> Result<Application, Error> {
        let fingerprint = [
            submission.external_reference.as_bytes(),
            submission.session_id.expose_secret().as_bytes(),
            submission.provider_id.as_bytes(),
        ]
        .join(&0u8);
        let request = Idempotent::new(
            call,
            "SubmitIdvSession",
            submission.request_id.as_deref(),
            fingerprint,
        );
        self.idempotently(request, || async {
            // Before (re)submitting, the session's application, if the gateway already has it.
            if let Some(existing) = self.application_for_session(call, &submission).await? {
                return Ok(existing);
            }
            self.submit_upstream(call, &submission).await
        })
        .await
    }

    async fn application_for_session(
        &self,
        call: &Call,
        submission: &IdvSubmission,
    ) -> Result<Option<Application>, Error> {
        let found = self
            .store
            .application_for_session(&submission.session_id)
            .await
            .map_err(|e| store_failed(e, CallKind::Read))?;
        match found {
            None => Ok(None),
            Some(event)
                if event.application.owner == call.caller
                    && event.application.external_reference == submission.external_reference =>
            {
                Ok(Some(event.application))
            }
            // The same words whoever submitted it first: nothing about another caller's clients leaks.
            Some(_) => Err(Error::invalid_field(
                "session_id",
                "was already submitted for another client",
            )),
        }
    }

    async fn submit_upstream(
        &self,
        call: &Call,
        submission: &IdvSubmission,
    ) -> Result<Application, Error> {
        let reported = self
            .connectpay
            .submit_idv_session(submission, call.deadline)
            .await
            .map_err(|e| e.into_domain(CallKind::Submit, "session_id"))?;
        let id = reported
            .application_id
            .expect("the client refuses a submit answer without an application id");
        let created = Application::created(
            id,
            call.caller.clone(),
            submission.external_reference.clone(),
            reported.observation,
            crate::domain::now(),
        );
        let applied = self
            .store
            .insert_application(created, &submission.session_id, &self.settings.poll)
            .await
            .map_err(|e| store_failed(e, CallKind::Submit))?;
        self.published(&applied.event, applied.changed);
        let application = applied.event.application;
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
        call: &Call,
        key: ApplicationKey,
    ) -> Result<Application, Error> {
        let known = self.known(&call.caller, &key).await?;
        self.refresh(known, Via::Application, Source::Other, call.deadline)
            .await
    }

    /// Step 5. Idempotent with a request id; an attempt whose outcome is unknown is settled by reading the
    /// application: past the IDV stage, the KYC data went in.
    pub async fn initiate_onboarding(
        &self,
        call: &Call,
        id: ApplicationId,
        request_id: Option<&str>,
        kyc: PersonalKyc,
    ) -> Result<Application, Error> {
        let fingerprint = [id.as_str().as_bytes(), &kyc.canonical_bytes()].join(&0u8);
        let request = Idempotent::new(call, "InitiateOnboarding", request_id, fingerprint);
        let reconcile = || async {
            let known = self
                .known(&call.caller, &ApplicationKey::Id(id.clone()))
                .await?;
            let current = self
                .refresh(known, Via::Application, Source::Other, call.deadline)
                .await?;
            Ok(Some(current).filter(|app| !app.last_known_status.is_idv_stage()))
        };
        self.idempotently_reconciled(request, reconcile, || {
            self.initiate_upstream(call, &id, &kyc)
        })
        .await
    }

    async fn initiate_upstream(
        &self,
        call: &Call,
        id: &ApplicationId,
        kyc: &PersonalKyc,
    ) -> Result<Application, Error> {
        let mut known = self
            .known(&call.caller, &ApplicationKey::Id(id.clone()))
            .await?;
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
            known = self
                .refresh(known, Via::Application, Source::Other, call.deadline)
                .await?;
        }
        let person_id = known
            .person_id
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::FailedPrecondition, Reason::PersonIdUnknown))?;
        let reported = self
            .connectpay
            .initiate_application(&known.id, &person_id, kyc, call.deadline)
            .await
            .map_err(|e| e.into_domain(CallKind::Submit, "kyc"))?;
        let application = self
            .record(&known, reported, Source::Other, CallKind::Submit)
            .await?;
        tracing::info!(
            application_id = %application.id,
            status = %application.status,
            "KYC data submitted"
        );
        Ok(application)
    }
}
