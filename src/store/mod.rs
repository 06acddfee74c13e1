//! Where the gateway keeps what it knows about applications: identifiers, statuses and versions, never
//! KYC data.
//!
//! One trait, so the use cases do not care which backend holds the state. The status machine runs inside
//! `apply`, atomically with the write, so concurrent news about one application cannot interleave.

mod memory;

use async_trait::async_trait;

pub use memory::MemoryStore;

use crate::domain::{Application, ApplicationId, Observation};

#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable: {0}")]
pub struct StoreError(pub String);

/// The outcome of applying news to an application.
#[derive(Debug, Clone)]
pub struct Applied {
    pub application: Application,
    /// Whether a new version was recorded.
    pub changed: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a newly created application. If one with the same id exists (ConnectPay answered the same
    /// id twice), the new one's news is applied to it instead, and the stored result returned.
    async fn insert_application(&self, application: Application)
    -> Result<Application, StoreError>;

    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError>;

    /// The most recently created application for an external reference.
    async fn latest_for_reference(
        &self,
        external_reference: &str,
    ) -> Result<Option<Application>, StoreError>;

    /// Runs the status machine on what ConnectPay said; `None` for an application the store does not hold.
    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &Observation,
    ) -> Result<Option<Applied>, StoreError>;
}
