//! The use cases, written against the adapters: submit an IDV session, read an application, submit the
//! KYC data, take ConnectPay's notifications, watch an application. Every piece of news from ConnectPay goes
//! through the store's `apply`, which runs the status machine, so no source can move an application
//! backwards; every new version wakes the application's watchers.

mod fanout;
mod notifications;
mod watch;

use std::{sync::Arc, time::Duration, time::SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use fanout::Watchers;
pub use notifications::{Notification, Outcome};
pub use watch::{ResumeToken, WatchEvent, WatchItem};

use crate::{
    connectpay::{CallKind, ConnectPayClient, UpstreamError, client::Reported},
    domain::{
        Application, ApplicationId, Deadline, Error, PersonalKyc, Status,
        error::{ErrorKind, Reason},
        submission::IdvSubmission,
    },
    store::{Event, Store, StoreError},
};

/// How a caller names an application.
#[derive(Debug, Clone)]
pub enum ApplicationKey {
    Id(ApplicationId),
    /// The most recent application created for this external reference.
    ExternalReference(String),
}

/// Which ConnectPay endpoint to read an application from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The application GET (falling back to the IDV GET where ConnectPay keeps the IDV stage apart).
    Application,
    /// The IDV status GET, by person: what an IDV notification that names only the person calls for.
    Idv,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The IDV providers callers may name.
    pub providers: Vec<String>,
    /// A watch stream with nothing to say sends a heartbeat this often.
    pub heartbeat_interval: Duration,
    /// Confirming a notification with ConnectPay may take this long.
    pub confirmation_timeout: Duration,
    /// Confirmations running at once.
    pub confirmation_concurrency: usize,
}

pub struct Onboarding {
    connectpay: Arc<ConnectPayClient>,
    store: Arc<dyn Store>,
    watchers: Arc<Watchers>,
    confirmations: notifications::Confirmations,
    confirm_queue: mpsc::UnboundedSender<ApplicationId>,
    settings: Settings,
    stopping: CancellationToken,
}

impl Onboarding {
    /// Builds the use cases and starts their background work (notification confirmations), which stops
    /// with `stopping`.
    pub fn start(
        connectpay: Arc<ConnectPayClient>,
        store: Arc<dyn Store>,
        settings: Settings,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        let (confirm_queue, queue) = mpsc::unbounded_channel();
        let concurrency = settings.confirmation_concurrency;
        let this = Arc::new(Onboarding {
            connectpay,
            store,
            watchers: Arc::new(Watchers::default()),
            confirmations: Default::default(),
            confirm_queue,
            settings,
            stopping,
        });
        tokio::spawn(this.clone().run_confirmations(queue, concurrency));
        this
    }

    /// The IDV providers callers may name.
    pub fn providers(&self) -> &[String] {
        &self.settings.providers
    }

    /// The registry of open watch streams.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
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
        let applied = self
            .store
            .insert_application(created)
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
        key: ApplicationKey,
        deadline: Deadline,
    ) -> Result<Application, Error> {
        let known = self.known(&key).await?;
        self.refresh(known, Via::Application, deadline).await
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
            known = self.refresh(known, Via::Application, deadline).await?;
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

    async fn known_event(&self, key: &ApplicationKey) -> Result<Event, Error> {
        let found = match key {
            ApplicationKey::Id(id) => self.store.current(id).await,
            ApplicationKey::ExternalReference(reference) => {
                self.store.latest_for_reference(reference).await
            }
        };
        found
            .map_err(|e| store_failed(e, CallKind::Read))?
            .ok_or_else(Error::application_not_found)
    }

    async fn known(&self, key: &ApplicationKey) -> Result<Application, Error> {
        Ok(self.known_event(key).await?.application)
    }

    /// Reads the application from ConnectPay and records the answer. In the IDV stage, newer ConnectPay
    /// versions know it only by its person, so a `404` there is asked again of the IDV status endpoint.
    async fn refresh(
        &self,
        known: Application,
        via: Via,
        deadline: Deadline,
    ) -> Result<Application, Error> {
        let read = |e: UpstreamError| e.into_domain(CallKind::Read, "");
        let person_id = known
            .person_id
            .clone()
            .filter(|_| known.status.is_idv_stage());
        let reported = match (via, person_id) {
            (Via::Idv, Some(person_id)) => self
                .connectpay
                .get_idv_status(&person_id, deadline)
                .await
                .map_err(read)?,
            (_, person_id) => match self.connectpay.get_application(&known.id, deadline).await {
                Ok(reported) => reported,
                Err(UpstreamError::Status { code: 404, .. }) if person_id.is_some() => self
                    .connectpay
                    .get_idv_status(person_id.as_deref().unwrap_or_default(), deadline)
                    .await
                    .map_err(read)?,
                Err(e) => return Err(read(e)),
            },
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
        self.published(&applied.event, applied.changed);
        Ok(applied.event.application)
    }

    /// A recorded version reaches the watchers.
    fn published(&self, event: &Event, changed: bool) {
        if changed {
            let app = &event.application;
            tracing::info!(
                application_id = %app.id,
                status = %app.status,
                version = app.version,
                "application changed"
            );
            self.watchers.notify(&app.id, event.seq);
        }
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
