//! Versions recorded by other replicas reach this process's watchers: at once through the store's
//! notifications (PostgreSQL `LISTEN`), read into memory once for all of a process's streams, and, as a
//! safety net for any notification lost on the way, through a periodic read of the log's newest entries.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Onboarding, pause};
use crate::store::Change;

/// Entries read per round of the safety net.
const TAIL_BATCH: usize = 1000;
/// Changes heard at most announced together.
const ANNOUNCE_BATCH: usize = 512;

impl Onboarding {
    /// Wakes the watchers of a change heard, with every other change already heard. Versions not in
    /// memory are read first, once for all of them, so that the woken streams find them there instead
    /// of each reading the store: another replica's, and this process's own when the store's
    /// notification overtakes the writer's publication of it.
    async fn announce(&self, first: Change, more: Option<&mut mpsc::Receiver<Change>>) {
        let mut changes = vec![first];
        if let Some(receiver) = more {
            while let Ok(change) = receiver.try_recv() {
                changes.push(change);
                if changes.len() == ANNOUNCE_BATCH {
                    break;
                }
            }
        }
        // This process's own changes are usually published by their writers, woken by the same commit,
        // as soon as they run: let them run first, so that only what they have not published is read.
        tokio::task::yield_now().await;
        let missing = self.recent.missing(changes.iter().map(|c| c.seq));
        if !missing.is_empty() {
            match self.store.events_at(&missing).await {
                Ok(events) => events.iter().for_each(|event| {
                    self.recent.remember(event);
                    self.finals.saw(&event.application);
                }),
                // The woken streams read the store themselves.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the versions other writers announced")
                }
            }
        }
        for change in changes {
            self.watchers.notify(&change.application_id, change.seq);
        }
    }

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
                    Some(change) => self.announce(change, listened.as_mut()).await,
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
