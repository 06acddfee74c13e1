//! Versions recorded by other replicas reach this process's watchers: at once through the store's
//! notifications (PostgreSQL `LISTEN`), and, as a safety net for any notification lost on the way, through
//! a periodic read of the log's newest entries.

use std::sync::Arc;

use super::{Onboarding, pause};

/// Entries read per round of the safety net.
const TAIL_BATCH: usize = 1000;

impl Onboarding {
    pub(super) async fn run_change_feed(self: Arc<Self>) {
        let mut listened = match self.store.listen(self.stopping.clone()).await {
            Ok(receiver) => receiver,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes; reading the log only");
                None
            }
        };
        let mut tail = loop {
            match self.store.last_seq().await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's position");
                    if !pause(&self.stopping, self.settings.tail_interval).await {
                        return;
                    }
                }
            }
        };
        loop {
            let heard = async {
                match listened.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stopping.cancelled() => return,
                change = heard => match change {
                    Some(change) => self.watchers.notify(&change.application_id, change.seq),
                    // The listener stopped: the safety net carries on alone.
                    None => listened = None,
                },
                () = tokio::time::sleep(self.settings.tail_interval) => {
                    match self.store.all_events_after(tail, TAIL_BATCH).await {
                        Ok(events) => {
                            for event in events {
                                tail = event.seq;
                                self.watchers.notify(&event.application.id, event.seq);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the log's newest entries"),
                    }
                }
            }
        }
    }
}
