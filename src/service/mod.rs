//! The use cases, written against the adapters: submit an IDV session, read an application, submit the
//! KYC data (onboarding.rs, with idempotency.rs), take ConnectPay's notifications (notifications.rs), poll
//! what nobody told the gateway about (poller.rs), watch an application (watch.rs, fanout.rs) and keep the
//! store's history bounded (housekeeping.rs).
//!
//! Every piece of news from ConnectPay goes through the store's `apply`, which runs the status machine in
//! the same transaction as the write, so no source can move an application backwards; every new version
//! wakes the application's watchers.

mod changes;
mod fanout;
mod finals;
mod housekeeping;
mod idempotency;
mod notifications;
mod onboarding;
mod poller;
mod recent;
mod watch;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use fanout::Watchers;
pub use notifications::{Notification, Outcome};
pub use watch::{ResumeToken, WatchEvent, WatchItem};

use crate::{
    connectpay::{CallKind, ConnectPayClient, UpstreamError, client::Reported},
    domain::{
        Application, ApplicationId, Deadline, Error,
        error::{ErrorKind, Reason},
        poll::PollSchedule,
    },
    store::{Event, Source, Store, StoreError},
    telemetry::metrics,
};

/// How a caller names an application.
#[derive(Debug, Clone)]
pub enum ApplicationKey {
    Id(ApplicationId),
    /// The most recent application created for this external reference.
    ExternalReference(String),
}

/// Who is calling, and until when they wait.
#[derive(Debug, Clone)]
pub struct Call {
    /// The caller's identity: scopes idempotency keys and external references, and owns what it creates.
    pub caller: String,
    pub deadline: Deadline,
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
    /// Confirming a notification or polling may take this long.
    pub upstream_timeout: Duration,
    /// Notifications confirmed at once; 0 records them without processing (maintenance, tests).
    pub notification_workers: usize,
    /// How long a worker holds the notifications it took; a dead replica's are taken over after this.
    pub inbox_lease: Duration,
    pub poll: PollSchedule,
    /// Polls per second at most, so a backlog never floods ConnectPay.
    pub poll_rate: f64,
    /// How long finished applications are kept (zero: forever).
    pub finished_retention: Duration,
    /// How long events are kept for resuming watches.
    pub event_retention: Duration,
    /// How long idempotency keys are remembered.
    pub request_retention: Duration,
    pub cleanup_interval: Duration,
    /// How often the log is read for versions other processes recorded (a safety net under LISTEN).
    pub tail_interval: Duration,
}

pub struct Onboarding {
    connectpay: Arc<ConnectPayClient>,
    store: Arc<dyn Store>,
    watchers: Arc<Watchers>,
    /// The newest events recorded here, read by woken watch streams before the store.
    recent: recent::RecentEvents,
    /// Applications seen final: news about them is answered without reading the store.
    finals: finals::FinalApplications,
    settings: Settings,
    /// Names this process in leases and idempotency records.
    instance: String,
    /// A notification was recorded: wake the inbox workers.
    inbox_wake: Notify,
    /// Confirmations in flight, shared by the inbox loops: `notification_workers` at once in all, so a
    /// loop with a large batch may use what the others leave idle.
    confirming: Semaphore,
    /// Confirmed notifications, for the finisher to clear from the inbox.
    finished: mpsc::UnboundedSender<i64>,
    /// Applications to poll at once because their notification could not be recorded.
    urgent_polls: Mutex<HashSet<ApplicationId>>,
    poll_wake: Notify,
    stopping: CancellationToken,
}

impl Onboarding {
    /// Builds the use cases and starts their background work (inbox workers, poller, housekeeping), which
    /// stops with `stopping`.
    pub fn start(
        connectpay: Arc<ConnectPayClient>,
        store: Arc<dyn Store>,
        settings: Settings,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        let (finished, finished_queue) = mpsc::unbounded_channel();
        let confirming = Semaphore::new(settings.notification_workers.max(1));
        let this = Arc::new(Onboarding {
            connectpay,
            store,
            watchers: Arc::new(Watchers::default()),
            recent: recent::RecentEvents::default(),
            finals: finals::FinalApplications::default(),
            settings,
            instance: uuid::Uuid::new_v4().to_string(),
            inbox_wake: Notify::new(),
            confirming,
            finished,
            urgent_polls: Mutex::new(HashSet::new()),
            poll_wake: Notify::new(),
            stopping,
        });
        tokio::spawn(this.clone().run_finisher(finished_queue));
        if this.settings.notification_workers > 0 {
            for _ in 0..notifications::INBOX_LOOPS {
                tokio::spawn(this.clone().run_inbox());
            }
        }
        tokio::spawn(this.clone().run_poller());
        tokio::spawn(this.clone().run_change_feed());
        tokio::spawn(this.clone().run_housekeeping());
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

    /// The application `key` names, if `caller` created it: another caller's application is as unknown
    /// to it as one that does not exist (no existence leak).
    async fn known_event(&self, caller: &str, key: &ApplicationKey) -> Result<Event, Error> {
        let found = match key {
            ApplicationKey::Id(id) => self.store.current(id).await,
            ApplicationKey::ExternalReference(reference) => {
                self.store.latest_for_reference(caller, reference).await
            }
        };
        found
            .map_err(|e| store_failed(e, CallKind::Read))?
            .filter(|event| event.application.owner == caller)
            .ok_or_else(Error::application_not_found)
    }

    async fn known(&self, caller: &str, key: &ApplicationKey) -> Result<Application, Error> {
        Ok(self.known_event(caller, key).await?.application)
    }

    /// The application, whoever owns it: for the gateway's own work (notifications, polls).
    async fn stored(&self, id: &ApplicationId) -> Result<Application, Error> {
        self.store
            .current(id)
            .await
            .map_err(|e| store_failed(e, CallKind::Read))?
            .map(|event| event.application)
            .ok_or_else(Error::application_not_found)
    }

    /// Reads the application from ConnectPay and records the answer. In the IDV stage, newer ConnectPay
    /// versions know it only by its person, so a `404` there is asked again of the IDV status endpoint.
    async fn refresh(
        &self,
        known: Application,
        via: Via,
        source: Source,
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
        self.record(&known, reported, source, CallKind::Read).await
    }

    async fn record(
        &self,
        known: &Application,
        reported: Reported,
        source: Source,
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
        // Most reads bring no news. Judged against the application as just read, news of a known status
        // that changes nothing then changes nothing now either (statuses only move forward, and what was
        // learned stays learned), so it need not queue for the store's single writer. Polls still go
        // through: they keep their schedule there. Unknown statuses are left to the store, which judges
        // them against the latest version.
        if source == Source::Other
            && reported.observation.status.rank().is_some()
            && known
                .apply(&reported.observation, crate::domain::now())
                .is_none()
        {
            return Ok(known.clone());
        }
        let applied = self
            .store
            .apply(
                &known.id,
                &reported.observation,
                source,
                &self.settings.poll,
            )
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
            // Kept before the wake, so that a woken stream finds it.
            self.recent.remember(event);
            self.finals.saw(app);
            self.watchers.notify(&app.id, event.seq);
            metrics::metrics()
                .application_changes
                .get_or_create(&metrics::Status {
                    status: app.status.as_str(),
                })
                .inc();
        }
    }

    /// The circuit breaker in front of ConnectPay.
    pub fn upstream_breaker(&self) -> crate::connectpay::BreakerState {
        self.connectpay.breaker_state()
    }

    /// How many notifications wait for confirmation, and since when the oldest.
    pub async fn inbox_backlog(&self) -> Result<(u64, Option<std::time::SystemTime>), Error> {
        self.store
            .inbox_backlog()
            .await
            .map_err(|e| store_failed(e, CallKind::Read))
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

/// Sleeps for `pause`, or less if the gateway stops; `false` when it stopped.
async fn pause(stopping: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = stopping.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}
