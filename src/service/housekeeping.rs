//! Keeps the store's history bounded: events older than the retention (resume tokens that old then fail
//! with `RESUME_TOKEN_EXPIRED`) and idempotency records older than theirs.

use std::{sync::Arc, time::SystemTime};

use super::{Onboarding, pause};

impl Onboarding {
    pub(super) async fn run_housekeeping(self: Arc<Self>) {
        loop {
            self.clean_up().await;
            if !pause(&self.stopping, self.settings.cleanup_interval).await {
                return;
            }
        }
    }

    async fn clean_up(&self) {
        let now = SystemTime::now();
        match self
            .store
            .delete_events_before(now - self.settings.event_retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "events past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete old events"),
        }
        match self
            .store
            .delete_requests_before(now - self.settings.request_retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "idempotency records past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete old idempotency records"),
        }
    }
}
