//! The reconciliation poller: every non-terminal application the gateway created is read again on its
//! schedule (see `domain::poll`), so an application whose notifications never arrive still reaches its
//! terminal status on every watch. Polls are paced to a configured rate, so a backlog never floods
//! ConnectPay; applications whose notification could not be recorded are polled first.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{Onboarding, Via, pause};
use crate::{
    domain::{ApplicationId, Deadline},
    store::Source,
    telemetry::metrics,
};

/// Due applications taken per round, and how long one is held before another poller may take it.
const BATCH: usize = 32;
const LEASE: Duration = Duration::from_secs(120);
/// After a failed poll, the next try.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl Onboarding {
    /// Polls `id` as soon as possible (its notification could not be recorded).
    pub(super) fn poll_urgently(&self, id: ApplicationId) {
        self.urgent_polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.poll_wake.notify_one();
    }

    pub(super) async fn run_poller(self: Arc<Self>) {
        let spacing = Duration::from_secs_f64(1.0 / self.settings.poll_rate.max(0.001));
        // Check for due polls often enough for the shortest interval configured.
        let idle = (self.settings.poll.idv_interval / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            let urgent: Vec<ApplicationId> = self
                .urgent_polls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            let due = match self
                .store
                .take_due_polls(SystemTime::now(), LEASE, BATCH)
                .await
            {
                Ok(due) => due.into_iter().map(|event| event.application.id).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the poll schedule");
                    Vec::new()
                }
            };
            if urgent.is_empty() && due.is_empty() {
                tokio::select! {
                    () = self.stopping.cancelled() => return,
                    () = self.poll_wake.notified() => {}
                    () = tokio::time::sleep(idle) => {}
                }
                continue;
            }
            for (id, is_urgent) in urgent
                .into_iter()
                .map(|id| (id, true))
                .chain(due.into_iter().map(|id| (id, false)))
            {
                if !self.poll(id, is_urgent).await || !pause(&self.stopping, spacing).await {
                    return;
                }
            }
        }
    }

    /// One poll; `false` when the gateway is stopping.
    async fn poll(&self, id: ApplicationId, urgent: bool) -> bool {
        if self.stopping.is_cancelled() {
            return false;
        }
        let result = async {
            let known = self.stored(&id).await?;
            if known.status.is_terminal() {
                return Ok::<bool, crate::domain::Error>(false);
            }
            let deadline = Deadline::after(self.settings.upstream_timeout);
            let before = known.version;
            let after = self
                .refresh(known, Via::Application, Source::Poll, deadline)
                .await?;
            Ok(after.version != before)
        }
        .await;
        let outcome = match &result {
            // A poll that finds news means a notification was lost (or is late): worth watching.
            Ok(true) => "changed",
            Ok(false) => "unchanged",
            Err(_) => "failed",
        };
        metrics::metrics()
            .polls
            .get_or_create(&metrics::Outcome { outcome })
            .inc();
        if let Err(e) = result {
            tracing::info!(application_id = %id, reason = %e.reason, "poll failed; will retry");
            if urgent {
                // The store may still be failing: keep it urgent, but not in a tight loop.
                self.urgent_polls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
                return pause(&self.stopping, Duration::from_secs(1)).await;
            }
            let _ = self
                .store
                .postpone_poll(&id, SystemTime::now() + RETRY_AFTER_FAILURE)
                .await;
        }
        true
    }
}
