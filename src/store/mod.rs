//! Where the gateway keeps what it knows about applications: identifiers, statuses and versions, never
//! KYC data.
//!
//! One trait, so the use cases do not care which backend holds the state. The status machine runs inside
//! `apply`, atomically with the write, so concurrent news about one application cannot interleave. Every
//! new version is appended to an event log with a global sequence; watch streams are cursors over it.

mod memory;

use async_trait::async_trait;

pub use memory::MemoryStore;

use crate::domain::{Application, ApplicationId, Observation};

#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable: {0}")]
pub struct StoreError(pub String);

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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a newly created application as its first event. If one with the same id exists (ConnectPay
    /// answered the same id twice), the new one's news is applied to it instead.
    async fn insert_application(&self, application: Application) -> Result<Applied, StoreError>;

    /// The application's current version.
    async fn current(&self, id: &ApplicationId) -> Result<Option<Event>, StoreError>;

    /// The current version of the most recently created application for an external reference.
    async fn latest_for_reference(
        &self,
        external_reference: &str,
    ) -> Result<Option<Event>, StoreError>;

    /// The current version of the most recently created application of a ConnectPay person.
    async fn latest_for_person(&self, person_id: &str) -> Result<Option<Event>, StoreError>;

    /// Runs the status machine on what ConnectPay said; `None` for an application the store does not hold.
    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &Observation,
    ) -> Result<Option<Applied>, StoreError>;

    /// The application's versions recorded after `after` (a sequence), oldest first, at most `limit`.
    async fn events_after(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
}
