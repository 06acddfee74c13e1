//! The store's interface on SQLite: each method hands over to the module that implements it.

use std::time::{Duration, SystemTime};

use super::{SqliteStore, applications, inline_reads::Bind};
use crate::{
    domain::{Application, ApplicationId},
    store::{Event, Store, StoreError},
};

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_application(
        &self,
        application: Application,
        session: &secrecy::SecretString,
        schedule: &crate::domain::poll::PollSchedule,
    ) -> Result<crate::store::Applied, StoreError> {
        self.insert_application_impl(application, session, schedule)
            .await
    }

    async fn current(&self, id: &ApplicationId) -> Result<Option<Event>, StoreError> {
        self.one(applications::BY_ID, &[Bind::Text(id.as_str())])
            .await
    }

    async fn current_of(&self, ids: &[ApplicationId]) -> Result<Vec<Event>, StoreError> {
        self.current_of_impl(ids).await
    }

    async fn latest_for_reference(
        &self,
        owner: &str,
        external_reference: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.one(
            applications::LATEST_BY_REFERENCE,
            &[Bind::Text(owner), Bind::Text(external_reference)],
        )
        .await
    }

    async fn latest_for_person(&self, person_id: &str) -> Result<Option<Event>, StoreError> {
        self.one(applications::LATEST_BY_PERSON, &[Bind::Text(person_id)])
            .await
    }

    async fn application_for_session(
        &self,
        session: &secrecy::SecretString,
    ) -> Result<Option<Event>, StoreError> {
        self.application_for_session_impl(session).await
    }

    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &crate::domain::Observation,
        source: crate::store::Source,
        schedule: &crate::domain::poll::PollSchedule,
    ) -> Result<Option<crate::store::Applied>, StoreError> {
        self.apply_impl(id, seen, source, schedule).await
    }

    async fn events_after(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_after_impl(id, after, limit).await
    }

    async fn all_events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.all_events_after_impl(after, limit).await
    }

    async fn events_at(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
        self.events_at_impl(seqs).await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.last_seq_impl().await
    }

    async fn waiting_longest(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.waiting_longest_impl(limit).await
    }

    async fn log_horizon(&self) -> Result<u64, StoreError> {
        self.log_horizon_impl().await
    }

    async fn take_due_polls(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.take_due_polls_impl(now, lease, limit).await
    }

    async fn postpone_poll(&self, id: &ApplicationId, at: SystemTime) -> Result<(), StoreError> {
        self.postpone_poll_impl(id, at).await
    }

    async fn record_notification(
        &self,
        entry: &crate::store::InboxEntry,
    ) -> Result<bool, StoreError> {
        self.record_notification_impl(entry).await
    }

    async fn take_notifications(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<crate::store::InboxRow>, StoreError> {
        self.take_notifications_impl(owner, lease, limit).await
    }

    async fn finish_notifications(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.finish_notifications_impl(ids).await
    }

    async fn postpone_notifications(
        &self,
        ids: &[i64],
        until: SystemTime,
    ) -> Result<(), StoreError> {
        self.postpone_notifications_impl(ids, until).await
    }

    async fn inbox_backlog(&self) -> Result<(u64, Option<SystemTime>), StoreError> {
        self.inbox_backlog_impl().await
    }

    async fn begin_request(
        &self,
        key: &crate::store::RequestKey,
        fingerprint: &[u8],
        owner: &str,
        stale_after: Duration,
    ) -> Result<crate::store::Begin, StoreError> {
        self.begin_request_impl(key, fingerprint, owner, stale_after)
            .await
    }

    async fn finish_request(
        &self,
        key: &crate::store::RequestKey,
        outcome: Option<&crate::store::StoredOutcome>,
    ) -> Result<(), StoreError> {
        self.finish_request_impl(key, outcome).await
    }

    async fn delete_events_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.delete_events_before_impl(cutoff).await
    }

    async fn delete_requests_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.delete_requests_before_impl(cutoff).await
    }

    async fn erase_application(&self, id: &ApplicationId) -> Result<bool, StoreError> {
        self.erase_application_impl(id).await
    }

    async fn erase_finished_before(
        &self,
        cutoff: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.erase_finished_before_impl(cutoff, limit).await
    }
}
