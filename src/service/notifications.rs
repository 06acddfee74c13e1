//! ConnectPay's notifications: recorded, then confirmed.
//!
//! A notification is recorded in the store's inbox before the sender gets its `OK`, so a crash cannot lose
//! it; workers then take the recorded notifications, one GET per application however many piled up for it,
//! and publish only what ConnectPay's GET says — a leaked webhook token cannot forge a status. When the
//! store cannot take a notification, the sender still gets its `OK` (ConnectPay switches a subscription off
//! after 100 failures): the application is polled at once instead, and the failure is logged for alerting.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Onboarding, Via, pause};
use crate::{
    domain::{Application, ApplicationId, Deadline, Observation},
    store::{InboxEntry, InboxRow, Source},
    telemetry::{context, metrics},
};

/// What a notification names and claims. The claim is never published; it only spares recording news
/// about an application that has already ended.
#[derive(Debug, Clone, Default)]
pub struct Notification {
    pub application_id: Option<ApplicationId>,
    pub person_id: Option<String>,
    pub claimed: Option<Observation>,
    /// `x-connectpay-timestamp`, as sent.
    pub sent_at: Option<String>,
    pub event_id: Option<String>,
    /// The delivery's trace context, so that its processing links to it.
    pub trace_context: Option<String>,
}

/// What became of a notification (for logs, metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded for confirmation.
    Recorded,
    /// The same notification was recorded before.
    Duplicate,
    /// The application has already ended: nothing to confirm.
    AlreadyKnown,
    /// The store could not take it: the application is polled instead.
    Degraded,
}

/// What becomes of a group of recorded notifications once it has been handled.
struct Verdict {
    /// Cleared from the inbox: confirmed, given up on, or about no application of this gateway.
    finished: Vec<i64>,
    /// Taken again after this pause.
    retry: Option<(Vec<InboxRow>, Duration)>,
}

impl Verdict {
    fn finished(rows: &[InboxRow]) -> Self {
        Verdict {
            finished: rows.iter().map(|r| r.id).collect(),
            retry: None,
        }
    }
}

/// How long a notification about an application the gateway does not know is kept: the submit's answer
/// may still be on its way when a quick IDV decision is notified.
const UNKNOWN_GRACE: Duration = Duration::from_secs(30);
/// Notifications taken per round of one inbox loop.
const BATCH: usize = 32;
/// Inbox loops per process. Each takes a batch, confirms it and clears it; with several, batches overlap,
/// so a notification that arrives while one batch waits for ConnectPay or the store finds a loop free
/// instead of waiting for the whole batch to end.
pub(super) const INBOX_LOOPS: usize = 4;
/// How often a worker with nothing to do looks for notifications that no wake-up announces: postponed
/// ones come due, and a dead replica's leases run out.
const IDLE_LOOK: Duration = Duration::from_millis(500);
/// After this many failed confirmations a notification is dropped; the poller catches up instead.
const MAX_ATTEMPTS: u32 = 8;

fn dedupe_key(n: &Notification) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let claimed = n.claimed.as_ref().map(|c| c.upstream_status.as_str());
    for part in [
        n.application_id.as_ref().map(ApplicationId::as_str),
        n.person_id.as_deref(),
        claimed,
        n.sent_at.as_deref(),
        n.event_id.as_deref(),
    ] {
        let part = part.unwrap_or_default().as_bytes();
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

impl Onboarding {
    /// Takes an authenticated notification. Never fails: whatever happens, the sender gets its `OK`.
    pub async fn notify(&self, notification: Notification) -> Outcome {
        let outcome = self.take_notification(notification).await;
        let name = match outcome {
            Outcome::Recorded => "recorded",
            Outcome::Duplicate => "duplicate",
            Outcome::AlreadyKnown => "already_known",
            Outcome::Degraded => "degraded",
        };
        metrics::metrics()
            .webhooks
            .get_or_create(&metrics::Outcome { outcome: name })
            .inc();
        outcome
    }

    async fn take_notification(&self, notification: Notification) -> Outcome {
        let known = match (&notification.application_id, &notification.person_id) {
            // Nothing can change an application seen final (`finals.rs`); news about any other one is
            // recorded and confirmed without reading it first.
            (Some(id), _) if self.finals.contains(id) => return Outcome::AlreadyKnown,
            (Some(_), _) => Ok(None),
            (None, Some(person)) => self.store.latest_for_person(person).await,
            (None, None) => Ok(None),
        };
        // (News naming only a person.) A finished application changes no more (except an issued account
        // learning its id): news about it costs nothing. Anything else is confirmed, however stale its claim
        // looks: deliveries come in any order, so an old claim may still be the only sign that something
        // new happened.
        if let Ok(Some(current)) = &known {
            let enriches = notification.claimed.as_ref().is_some_and(|claimed| {
                let claim = Observation {
                    person_id: None,
                    ..claimed.clone()
                };
                current
                    .application
                    .apply(&claim, SystemTime::now())
                    .is_some()
            });
            if current.application.status.is_terminal() && !enriches {
                return Outcome::AlreadyKnown;
            }
        }
        let entry = InboxEntry {
            dedupe_key: dedupe_key(&notification),
            application_id: notification.application_id.clone(),
            person_id: notification.person_id.clone(),
            claimed_status: notification
                .claimed
                .as_ref()
                .map(|c| c.upstream_status.clone()),
            sent_at: notification.sent_at.clone(),
            trace_context: notification.trace_context.clone(),
            via_application: notification.application_id.is_some(),
        };
        match self.store.record_notification(&entry).await {
            Ok(true) => {
                self.inbox_wake.notify_one();
                Outcome::Recorded
            }
            Ok(false) => Outcome::Duplicate,
            Err(e) => {
                let id = known
                    .ok()
                    .flatten()
                    .map(|e| e.application.id)
                    .or(notification.application_id);
                tracing::error!(error = %e, application_id = ?id.as_ref().map(ToString::to_string),
                    "could not record a notification; polling the application instead");
                if let Some(id) = id {
                    self.poll_urgently(id);
                }
                Outcome::Degraded
            }
        }
    }

    /// Confirms recorded notifications until the gateway stops. Notifications left by a crash are the
    /// first ones taken.
    pub(super) async fn run_inbox(self: Arc<Self>) {
        let mut idle = Duration::ZERO;
        loop {
            if !idle.is_zero() {
                tokio::select! {
                    () = self.stopping.cancelled() => return,
                    () = self.inbox_wake.notified() => {}
                    // Postponed and orphaned (lease expired) notifications come due without a wake-up.
                    () = tokio::time::sleep(idle) => {}
                }
            }
            if self.stopping.is_cancelled() {
                return;
            }
            match self
                .store
                .take_notifications(&self.instance, self.settings.inbox_lease, BATCH)
                .await
            {
                Ok(rows) => {
                    metrics::metrics()
                        .inbox_batch_notifications
                        .observe(rows.len() as f64);
                    // A short batch took everything due: asking again at once would find nothing. A
                    // notification recorded since then has woken a worker (or left the wake-up for the
                    // next one to wait), and the rest come due with the pause.
                    idle = if rows.len() < BATCH {
                        IDLE_LOOK
                    } else {
                        Duration::ZERO
                    };
                    if !rows.is_empty() {
                        self.confirm_batch(rows).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not take recorded notifications");
                    idle = Duration::from_secs(1);
                }
            }
        }
    }

    /// One GET per application, however many of its notifications are in the batch; the confirmed
    /// notifications are cleared together, in one store write.
    async fn confirm_batch(self: &Arc<Self>, rows: Vec<InboxRow>) {
        let workers = self
            .settings
            .notification_workers
            .div_ceil(INBOX_LOOPS)
            .max(1);
        let named = self.name_applications(rows, workers).await;
        let mut groups: HashMap<Option<ApplicationId>, (Option<Application>, Vec<InboxRow>)> =
            HashMap::new();
        for (app, row) in named {
            let group = groups
                .entry(app.as_ref().map(|a| a.id.clone()))
                .or_default();
            group.0 = group.0.take().or(app);
            group.1.push(row);
        }
        let verdicts: Vec<Verdict> = futures::stream::iter(groups.into_values())
            .map(|(app, rows)| async move {
                match app {
                    Some(app) => {
                        // The semaphore is never closed: this holds a slot for the whole confirmation.
                        let _slot = self.confirming.acquire().await;
                        self.confirm(app, rows).await
                    }
                    None => self.unknown(rows),
                }
            })
            .buffer_unordered(BATCH)
            .collect()
            .await;
        for verdict in verdicts {
            self.settle(verdict).await;
        }
    }

    /// The application each row names, if the gateway has it. Rows naming an application are read
    /// together, in one store read; rows naming only a person, one read each, concurrently. Rows the
    /// store could not answer for are postponed and left out.
    async fn name_applications(
        &self,
        rows: Vec<InboxRow>,
        workers: usize,
    ) -> Vec<(Option<Application>, InboxRow)> {
        let (by_id, by_person): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|row| row.entry.application_id.is_some());
        let mut named = Vec::with_capacity(by_id.len() + by_person.len());
        if !by_id.is_empty() {
            let ids: Vec<ApplicationId> = by_id
                .iter()
                .filter_map(|row| row.entry.application_id.clone())
                .collect();
            match self.store.current_of(&ids).await {
                Ok(found) => {
                    let found: HashMap<ApplicationId, Application> = found
                        .into_iter()
                        .map(|event| (event.application.id.clone(), event.application))
                        .collect();
                    found.values().for_each(|app| self.finals.saw(app));
                    for row in by_id {
                        let app = row
                            .entry
                            .application_id
                            .as_ref()
                            .and_then(|id| found.get(id).cloned());
                        named.push((app, row));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store failure while confirming notifications");
                    self.postpone(&by_id, Duration::from_secs(1)).await;
                }
            }
        }
        let by_person: Vec<_> = futures::stream::iter(by_person)
            .map(|row| async move {
                let person = row.entry.person_id.as_deref();
                let found = match person {
                    Some(person) => self.store.latest_for_person(person).await,
                    None => Ok(None),
                };
                (found, row)
            })
            .buffer_unordered(workers)
            .collect()
            .await;
        for (found, row) in by_person {
            match found {
                Ok(found) => named.push((found.map(|event| event.application), row)),
                Err(e) => {
                    tracing::error!(error = %e, "store failure while confirming notifications");
                    self.postpone(&[row], Duration::from_secs(1)).await;
                }
            }
        }
        named
    }

    /// Clears what a verdict finished (through the finisher, which clears many in one write) and
    /// postpones what it retries.
    async fn settle(&self, verdict: Verdict) {
        for id in verdict.finished {
            // The finisher stops only with the gateway: then the lease runs out and the notification is
            // confirmed again, which is harmless (only a GET more).
            let _ = self.finished.send(id);
        }
        if let Some((rows, pause_for)) = verdict.retry {
            self.postpone(&rows, pause_for).await;
        }
    }

    /// Clears finished notifications from the inbox until the gateway stops: whatever finished while
    /// the previous write ran goes in the next one.
    pub(super) async fn run_finisher(self: Arc<Self>, mut finished: mpsc::UnboundedReceiver<i64>) {
        let mut ids = Vec::new();
        loop {
            tokio::select! {
                () = self.stopping.cancelled() => return,
                taken = finished.recv_many(&mut ids, 1024) => if taken == 0 { return },
            }
            if let Err(e) = self.store.finish_notifications(&ids).await {
                // They will be confirmed again once their lease runs out: harmless, only a GET more.
                tracing::warn!(error = %e, "could not clear confirmed notifications");
            }
            ids.clear();
        }
    }

    async fn confirm(&self, known: Application, rows: Vec<InboxRow>) -> Verdict {
        let id = known.id.clone();
        let via = if rows.iter().any(|r| r.entry.via_application) {
            Via::Application
        } else {
            Via::Idv
        };
        // Its own trace, linked to every delivery it confirms.
        let span = tracing::info_span!(
            parent: None,
            "webhook.confirm",
            otel.kind = "internal",
            application_id = %id,
            notifications = rows.len(),
        );
        for row in &rows {
            if let Some(traceparent) = &row.entry.trace_context {
                context::link_to(&span, traceparent);
            }
        }
        let deadline = Deadline::after(self.settings.upstream_timeout);
        let result = self
            .refresh(known, via, Source::Other, deadline)
            .instrument(span)
            .await;
        let confirmed = |outcome: &'static str| {
            metrics::metrics()
                .notifications_confirmed
                .get_or_create(&metrics::Outcome { outcome })
                .inc_by(rows.len() as u64);
        };
        match result {
            Ok(_) => {
                confirmed("confirmed");
                Verdict::finished(&rows)
            }
            Err(e) => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(1);
                if attempts >= MAX_ATTEMPTS {
                    confirmed("dropped");
                    tracing::warn!(application_id = %id, reason = %e.reason,
                        "giving up confirming notifications; the poller will catch up");
                    Verdict::finished(&rows)
                } else {
                    confirmed("retried");
                    tracing::info!(application_id = %id, reason = %e.reason, attempts,
                        "confirming notifications failed; will retry");
                    Verdict {
                        finished: Vec::new(),
                        retry: Some((rows, Duration::from_millis(500) * 2u32.pow(attempts.min(8)))),
                    }
                }
            }
        }
    }

    /// Notifications about no application this gateway created: kept a little while (the submit's answer
    /// may still be on its way), then dropped. ConnectPay is never asked about them.
    fn unknown(&self, rows: Vec<InboxRow>) -> Verdict {
        let now = SystemTime::now();
        let (expired, young): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| now.duration_since(r.received_at).unwrap_or_default() >= UNKNOWN_GRACE);
        if !expired.is_empty() {
            metrics::metrics()
                .notifications_confirmed
                .get_or_create(&metrics::Outcome {
                    outcome: "unknown_application",
                })
                .inc_by(expired.len() as u64);
            tracing::info!(
                count = expired.len(),
                "notifications about applications this gateway did not create; ignored"
            );
        }
        Verdict {
            finished: expired.iter().map(|r| r.id).collect(),
            retry: (!young.is_empty()).then(|| (young, Duration::from_secs(1))),
        }
    }

    async fn postpone(&self, rows: &[InboxRow], pause_for: Duration) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if let Err(e) = self
            .store
            .postpone_notifications(&ids, SystemTime::now() + pause_for)
            .await
        {
            tracing::warn!(error = %e, "could not postpone notifications; their lease will expire instead");
        }
    }

    /// Waits until the inbox is empty (for orderly tests and shutdown), or `within` passes.
    pub async fn drain_inbox(&self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until {
            if matches!(self.store.inbox_backlog().await, Ok((0, _))) {
                return true;
            }
            if !pause(&self.stopping, Duration::from_millis(20)).await {
                return false;
            }
        }
        false
    }
}
