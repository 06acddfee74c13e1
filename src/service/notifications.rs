//! ConnectPay's notifications, as hints.
//!
//! A webhook only says "look at this application": the gateway confirms with ConnectPay's own GET before
//! anything reaches a watcher, so a leaked webhook token cannot forge a status. Only applications the
//! gateway created are confirmed (no request amplification), news the gateway already has costs nothing,
//! and hints that pile up for one application while its confirmation waits or runs cost one more GET at
//! most.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::sync::{Semaphore, mpsc};

use super::{Onboarding, Via};
use crate::domain::{ApplicationId, Deadline, Observation};

/// What a notification names and claims. The claim is never published; it only spares a GET when it is
/// news the gateway already has.
#[derive(Debug, Clone, Default)]
pub struct Notification {
    pub application_id: Option<ApplicationId>,
    pub person_id: Option<String>,
    pub claimed: Option<Observation>,
}

/// What became of a notification (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A confirmation was queued (or merged into one already waiting).
    Queued,
    /// The claim is something the gateway already recorded: nothing to confirm.
    AlreadyKnown,
    /// Not an application this gateway created: ignored, and ConnectPay is not asked.
    UnknownApplication,
}

/// Confirmations waiting or running, per application.
#[derive(Default)]
pub(super) struct Confirmations {
    pending: Mutex<HashMap<ApplicationId, Pending>>,
}

impl Confirmations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ApplicationId, Pending>> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    running: bool,
    /// Another hint arrived while the GET was in flight: its answer may predate that news.
    again: bool,
    /// Some hint named the application (not just the person): read the application itself.
    via_application: bool,
    failures: u32,
}

/// Failed confirmations are tried again this many times, with growing pauses; the poller is the backstop.
const MAX_FAILURES: u32 = 5;

impl Onboarding {
    /// Takes a notification. Never fails: whatever happens, the sender gets its `OK`.
    pub async fn notify(self: &Arc<Self>, notification: Notification) -> Outcome {
        let found = match (&notification.application_id, &notification.person_id) {
            (Some(id), _) => self.store.current(id).await,
            (None, Some(person)) => self.store.latest_for_person(person).await,
            (None, None) => Ok(None),
        };
        let current = match found {
            Ok(Some(current)) => current.application,
            Ok(None) => return Outcome::UnknownApplication,
            Err(e) => {
                tracing::error!(error = %e, "store failure while taking a notification");
                return Outcome::UnknownApplication;
            }
        };
        if let Some(claimed) = &notification.claimed {
            // Only the status and the account id matter here; the person id is not news worth a GET.
            let claim = Observation {
                person_id: None,
                ..claimed.clone()
            };
            if current.apply(&claim, SystemTime::now()).is_none() {
                return Outcome::AlreadyKnown;
            }
        }
        self.queue_confirmation(current.id, notification.application_id.is_some());
        Outcome::Queued
    }

    fn queue_confirmation(&self, id: ApplicationId, via_application: bool) {
        let mut pending = self.confirmations.lock();
        match pending.get_mut(&id) {
            Some(p) => {
                p.via_application |= via_application;
                if p.running {
                    p.again = true;
                }
            }
            None => {
                pending.insert(
                    id.clone(),
                    Pending {
                        running: false,
                        again: false,
                        via_application,
                        failures: 0,
                    },
                );
                let _ = self.confirm_queue.send(id);
            }
        }
    }

    /// Runs confirmations, at most `concurrency` at a time, until the gateway stops.
    pub(super) async fn run_confirmations(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<ApplicationId>,
        concurrency: usize,
    ) {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        loop {
            let id = tokio::select! {
                () = self.stopping.cancelled() => return,
                id = queue.recv() => match id { Some(id) => id, None => return },
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.confirm(id).await;
                drop(slot);
            });
        }
    }

    async fn confirm(self: &Arc<Self>, id: ApplicationId) {
        let via_application = {
            let mut pending = self.confirmations.lock();
            let Some(p) = pending.get_mut(&id) else {
                return;
            };
            p.running = true;
            p.again = false;
            p.via_application
        };
        let result = async {
            let known = self.known(&super::ApplicationKey::Id(id.clone())).await?;
            let via = if via_application {
                Via::Application
            } else {
                Via::Idv
            };
            let deadline = Deadline::after(self.settings.confirmation_timeout);
            self.refresh(known, via, deadline).await
        }
        .await;
        let retry_in = {
            let mut pending = self.confirmations.lock();
            let Some(p) = pending.get_mut(&id) else {
                return;
            };
            p.running = false;
            match result {
                Ok(_) if p.again => Some(Duration::ZERO),
                Ok(_) => {
                    pending.remove(&id);
                    return;
                }
                Err(e) => {
                    p.failures += 1;
                    if p.failures > MAX_FAILURES {
                        tracing::warn!(application_id = %id, reason = %e.reason, "giving up confirming a notification");
                        pending.remove(&id);
                        return;
                    }
                    tracing::info!(application_id = %id, reason = %e.reason, "confirming a notification failed; will retry");
                    Some(Duration::from_millis(200) * 2u32.pow(p.failures))
                }
            }
        };
        if let Some(delay) = retry_in {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = this.confirm_queue.send(id);
            });
        }
    }
}
