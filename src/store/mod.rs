//! Where the gateway keeps what it knows: applications, their event log, the webhook inbox, idempotency
//! records, poller bookkeeping and the OAuth pair. Identifiers, statuses and bookkeeping only — never KYC
//! data; IDV session ids and request fingerprints only as keyed hashes; the OAuth pair only sealed.
//!
//! One trait, so the use cases do not care which backend holds the state. The status machine runs inside
//! `apply`, in the same transaction as the write, so concurrent news about one application cannot
//! interleave; every new version is appended to the event log under a global sequence in commit order.

mod crypto;
mod outcome;
pub mod postgres;
mod rows;
mod sealed_pair;
pub mod sqlite;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use secrecy::SecretString;

pub use crypto::{StoreKey, StoreKeyError};
pub use outcome::StoredOutcome;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::domain::{Application, ApplicationId, Observation, poll::PollSchedule};

#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// One version of an application, at its position in the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The log's global sequence: strictly increasing in commit order.
    pub seq: u64,
    pub application: Application,
}

/// The outcome of recording news about an application.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The current version (new, or unchanged).
    pub event: Event,
    /// Whether a new version was appended.
    pub changed: bool,
}

/// A version recorded somewhere: enough to wake the right watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub application_id: ApplicationId,
}

/// Where news came from. A poll reschedules the next poll whatever it found; other news only when it
/// changed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Poll,
    Other,
}

/// An authenticated notification, as recorded: parsed identifiers and the claim, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Equal for deliveries of the same notification (ConnectPay delivers at least once).
    pub dedupe_key: [u8; 32],
    pub application_id: Option<ApplicationId>,
    pub person_id: Option<String>,
    pub claimed_status: Option<String>,
    /// `x-connectpay-timestamp`, as sent.
    pub sent_at: Option<String>,
    /// The delivery's W3C `traceparent`, for linking its processing to it.
    pub trace_context: Option<String>,
    /// The notification named the application (not only the person).
    pub via_application: bool,
}

/// A recorded notification taken for processing.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: i64,
    pub entry: InboxEntry,
    pub received_at: SystemTime,
    pub attempts: u32,
}

/// An idempotency key: per caller and method (AIP-155).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub caller: String,
    pub method: &'static str,
    pub request_id: String,
}

/// What the idempotency record says about a request.
#[derive(Debug, Clone)]
pub enum Begin {
    /// First time: go ahead (the record now says in progress, owned by the caller of `begin_request`).
    Proceed,
    /// An earlier attempt's outcome is unknown (or its owner vanished): find out what happened before
    /// acting (the record is now owned by this attempt).
    Reconcile,
    /// Another attempt is running right now.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
    /// The first definite outcome.
    Done(StoredOutcome),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Applications and the event log.

    /// Records a newly created application as its first event, with the hash of its IDV session. If one
    /// with the same id exists (ConnectPay answered the same id twice), the news is applied to it instead.
    async fn insert_application(
        &self,
        application: Application,
        session: &SecretString,
        schedule: &PollSchedule,
    ) -> Result<Applied, StoreError>;

    async fn current(&self, id: &ApplicationId) -> Result<Option<Event>, StoreError>;

    /// The current versions of those of `ids` that exist, in no particular order: many applications in
    /// one read.
    async fn current_of(&self, ids: &[ApplicationId]) -> Result<Vec<Event>, StoreError>;

    /// The current version of the most recently created application of `owner` for an external
    /// reference (each caller has its own references).
    async fn latest_for_reference(
        &self,
        owner: &str,
        external_reference: &str,
    ) -> Result<Option<Event>, StoreError>;

    /// The current version of the most recently created application of a ConnectPay person.
    async fn latest_for_person(&self, person_id: &str) -> Result<Option<Event>, StoreError>;

    /// The application created from this IDV session, if any.
    async fn application_for_session(
        &self,
        session: &SecretString,
    ) -> Result<Option<Event>, StoreError>;

    /// Runs the status machine on what ConnectPay said and reschedules the next poll; `None` for an
    /// application the store does not hold.
    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &Observation,
        source: Source,
        schedule: &PollSchedule,
    ) -> Result<Option<Applied>, StoreError>;

    /// The application's versions recorded after `after` (a sequence), oldest first, at most `limit`.
    async fn events_after(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// Every application's versions recorded after `after`, in sequence (commit) order, at most `limit`.
    async fn all_events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// The versions recorded at those of `seqs` the log still holds, in sequence order.
    async fn events_at(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError>;

    /// The newest sequence recorded.
    async fn last_seq(&self) -> Result<u64, StoreError>;

    /// Sequences at or below this were deleted by retention: resume tokens that old have expired.
    async fn log_horizon(&self) -> Result<u64, StoreError>;

    /// Non-terminal applications, the longest unchanged first: what operators look at when news stops.
    async fn waiting_longest(&self, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Versions recorded by other processes sharing the store, as they commit, until `stop`; `None` when
    /// the store is not shared. Best effort: a periodic read of the log covers anything missed.
    async fn listen(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>, StoreError> {
        let _ = stop;
        Ok(None)
    }

    // The poller.

    /// Non-terminal applications whose next poll is due, taken for `lease` (their next poll moves past
    /// it, so no other poller takes them meanwhile).
    async fn take_due_polls(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// A poll failed: try again at `at`.
    async fn postpone_poll(&self, id: &ApplicationId, at: SystemTime) -> Result<(), StoreError>;

    // The webhook inbox.

    /// Records a notification; `false` when the same notification was already recorded.
    async fn record_notification(&self, entry: &InboxEntry) -> Result<bool, StoreError>;

    /// Takes up to `limit` recorded notifications that are due and not leased, leasing them to `owner`.
    async fn take_notifications(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError>;

    /// The notifications were confirmed (or are not worth confirming): forget them.
    async fn finish_notifications(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// The notifications could not be confirmed now: release them until `until`.
    async fn postpone_notifications(
        &self,
        ids: &[i64],
        until: SystemTime,
    ) -> Result<(), StoreError>;

    /// How many notifications wait, and since when the oldest.
    async fn inbox_backlog(&self) -> Result<(u64, Option<SystemTime>), StoreError>;

    // Idempotency.

    /// Looks the key up and, when the caller may act, marks the request in progress on its behalf.
    /// `fingerprint` is the request's canonical content (hashed, never stored).
    async fn begin_request(
        &self,
        key: &RequestKey,
        fingerprint: &[u8],
        owner: &str,
        stale_after: Duration,
    ) -> Result<Begin, StoreError>;

    /// Records the request's outcome: definite (`Some`, replayed to later attempts) or unknown (`None`).
    async fn finish_request(
        &self,
        key: &RequestKey,
        outcome: Option<&StoredOutcome>,
    ) -> Result<(), StoreError>;

    // Housekeeping.

    /// Deletes events recorded before `cutoff` and moves the log horizon; returns how many went.
    async fn delete_events_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;

    /// Deletes idempotency records created before `cutoff`.
    async fn delete_requests_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;

    // Erasure.

    /// Deletes everything held about one application — the application, its events, its waiting
    /// notifications, the idempotency records whose outcome it is; `false` when there was none.
    async fn erase_application(&self, id: &ApplicationId) -> Result<bool, StoreError>;

    /// Erases up to `limit` applications that reached a terminal status before `cutoff`; returns how
    /// many.
    async fn erase_finished_before(
        &self,
        cutoff: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

/// Which backend a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Microseconds since the epoch: how the store writes times.
pub(crate) fn micros(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_micros(micros: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// A backend's migrations as the store runs them. A store a later version has migrated holds migrations
/// this version does not know: it applies its own and opens, so that rolling back to it works
/// (docs/kubernetes.md, Upgrading). Migrations add what a later version needs and leave what earlier ones
/// read.
fn rollback_tolerant(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(true);
    migrator
}
