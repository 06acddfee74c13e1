//! Keeps the store's history bounded: finished applications past their retention are erased, events older
//! than theirs deleted (resume tokens that old then fail with `RESUME_TOKEN_EXPIRED`), and idempotency
//! records older than theirs. (An operator erases one application at once with `erase`.)

use std::{sync::Arc, time::SystemTime};

use super::{Onboarding, pause};

/// Finished applications erased per transaction.
const ERASE_BATCH: usize = 200;

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
        if !self.settings.finished_retention.is_zero() {
            let cutoff = now - self.settings.finished_retention;
            loop {
                match self.store.erase_finished_before(cutoff, ERASE_BATCH).await {
                    Ok(0) => break,
                    Ok(erased) => {
                        tracing::info!(erased, "finished applications past retention erased");
                        if erased < ERASE_BATCH as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not erase finished applications");
                        break;
                    }
                }
            }
        }
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
