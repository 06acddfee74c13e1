//! Which webhooks go out when: the delivery switches (deliver, hold, drop, duplicate, reorder),
//! the queue of held webhooks and the delivery log. The HTTP side is in `delivery`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::recorder::LOG_CAPACITY;
use crate::shared::lock;
use crate::status::Status;

/// What happens to a webhook when its status change occurs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Send it (with retries).
    #[default]
    Deliver,
    /// Keep it until [`crate::Sandbox::release_webhooks`].
    Hold,
    /// Discard it; the delivery log shows it as dropped.
    Drop,
}

/// `PUT /_sandbox/webhooks`: the delivery switches. Missing fields take their defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WebhookDelivery {
    pub mode: DeliveryMode,
    /// Extra copies of every webhook sent (the same body, event id and timestamp).
    pub duplicate: u32,
    /// Hold each application's webhooks until it reaches a terminal status (or until
    /// released), then deliver them newest first.
    pub reorder: bool,
}

/// The order in which held webhooks are released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseOrder {
    /// Oldest status change first.
    #[default]
    Fifo,
    /// Newest status change first.
    Reverse,
}

/// Body of `POST /_sandbox/webhooks/release`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Release {
    pub order: ReleaseOrder,
}

/// Answer of `POST /_sandbox/webhooks/release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// How many held webhooks were sent (copies made by `duplicate` not counted).
    pub released: usize,
}

/// One delivery attempt (or one dropped webhook), as `GET /_sandbox/webhooks` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLogEntry {
    pub application_id: Uuid,
    pub status: Status,
    /// 1 for the first try, up to 7 after six retries; 0 for a dropped webhook.
    pub attempt: u32,
    /// The receiver's status code, when it answered.
    pub answer_status: Option<u16>,
    /// The start of the receiver's body (at most 1 KiB), when it answered.
    pub answer_body: Option<String>,
    /// `null` for a successful delivery; otherwise why it failed (`"dropped"` when dropped).
    pub error: Option<String>,
    /// When the attempt ended (RFC 3339, UTC, milliseconds).
    pub at: String,
}

impl DeliveryLogEntry {
    pub(crate) fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// A webhook ready to send: body and timestamp are fixed when the status changes.
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    /// Order of the status changes, for releasing held webhooks.
    pub(crate) seq: u64,
    pub(crate) application_id: Uuid,
    pub(crate) status: Status,
    pub(crate) url: String,
    /// `x-connectpay-timestamp`: the time of the change.
    pub(crate) timestamp: String,
    pub(crate) body: Bytes,
}

/// What to do with webhooks after a status change or a release.
#[derive(Debug, Default)]
#[must_use = "a dispatch must be handed to Shared::dispatch"]
pub(crate) struct Dispatch {
    /// To send now, in this order.
    pub(crate) deliver: Vec<Notification>,
    /// Extra copies of each.
    pub(crate) copies: u32,
    pub(crate) dropped: Vec<Notification>,
}

/// Webhooks between their status change and their first delivery attempt.
#[derive(Default)]
pub(crate) struct Outbox {
    config: WebhookDelivery,
    next_seq: u64,
    held: Vec<Notification>,
    reordering: HashMap<Uuid, Vec<Notification>>,
}

impl Outbox {
    pub(crate) fn configure(&mut self, config: WebhookDelivery) {
        self.config = config;
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Routes a new webhook by the current switches.
    pub(crate) fn route(&mut self, notification: Notification) -> Dispatch {
        match self.config.mode {
            DeliveryMode::Drop => Dispatch {
                dropped: vec![notification],
                ..Dispatch::default()
            },
            DeliveryMode::Hold => {
                self.held.push(notification);
                Dispatch::default()
            }
            DeliveryMode::Deliver if self.config.reorder => {
                let application_id = notification.application_id;
                let terminal = notification.status.is_terminal();
                self.reordering
                    .entry(application_id)
                    .or_default()
                    .push(notification);
                if !terminal {
                    return Dispatch::default();
                }
                let mut batch = self.reordering.remove(&application_id).unwrap_or_default();
                batch.reverse();
                self.deliver(batch)
            }
            DeliveryMode::Deliver => self.deliver(vec![notification]),
        }
    }

    /// Everything held (by `hold` or by `reorder`), in the order asked for.
    pub(crate) fn release(&mut self, order: ReleaseOrder) -> Dispatch {
        let mut batch = std::mem::take(&mut self.held);
        batch.extend(self.reordering.drain().flat_map(|(_, held)| held));
        batch.sort_by_key(|n| n.seq);
        if order == ReleaseOrder::Reverse {
            batch.reverse();
        }
        self.deliver(batch)
    }

    fn deliver(&self, batch: Vec<Notification>) -> Dispatch {
        Dispatch {
            deliver: batch,
            copies: self.config.duplicate,
            dropped: Vec::new(),
        }
    }
}

/// The delivery log, oldest first, bounded like the request log.
#[derive(Default)]
pub(crate) struct DeliveryLog {
    entries: Mutex<VecDeque<DeliveryLogEntry>>,
}

impl DeliveryLog {
    pub(crate) fn push(&self, entry: DeliveryLogEntry) {
        let mut entries = lock(&self.entries);
        if entries.len() == LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub(crate) fn list(&self) -> Vec<DeliveryLogEntry> {
        lock(&self.entries).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(outbox: &mut Outbox, application_id: Uuid, status: Status) -> Notification {
        Notification {
            seq: outbox.next_seq(),
            application_id,
            status,
            url: "http://127.0.0.1:1/hook".into(),
            timestamp: String::new(),
            body: Bytes::new(),
        }
    }

    fn statuses(dispatch: &Dispatch) -> Vec<Status> {
        dispatch.deliver.iter().map(|n| n.status.clone()).collect()
    }

    #[test]
    fn reorder_holds_until_terminal_then_sends_newest_first() {
        let mut outbox = Outbox::default();
        outbox.configure(WebhookDelivery {
            reorder: true,
            ..WebhookDelivery::default()
        });
        let app = Uuid::new_v4();
        for status in [Status::IdvApproved, Status::ComplianceReview] {
            let n = note(&mut outbox, app, status);
            assert!(outbox.route(n).deliver.is_empty());
        }
        let n = note(&mut outbox, app, Status::AccountIssued);
        let dispatch = outbox.route(n);
        assert_eq!(
            statuses(&dispatch),
            [
                Status::AccountIssued,
                Status::ComplianceReview,
                Status::IdvApproved
            ]
        );
    }

    #[test]
    fn release_sends_everything_held_in_the_order_asked() {
        let mut outbox = Outbox::default();
        outbox.configure(WebhookDelivery {
            mode: DeliveryMode::Hold,
            duplicate: 2,
            reorder: false,
        });
        let app = Uuid::new_v4();
        for status in [Status::IdvApproved, Status::ComplianceReview] {
            let n = note(&mut outbox, app, status);
            assert!(outbox.route(n).deliver.is_empty());
        }
        let dispatch = outbox.release(ReleaseOrder::Reverse);
        assert_eq!(
            statuses(&dispatch),
            [Status::ComplianceReview, Status::IdvApproved]
        );
        assert_eq!(dispatch.copies, 2);
        assert!(outbox.release(ReleaseOrder::Fifo).deliver.is_empty());
    }

    #[test]
    fn drop_mode_drops() {
        let mut outbox = Outbox::default();
        outbox.configure(WebhookDelivery {
            mode: DeliveryMode::Drop,
            ..WebhookDelivery::default()
        });
        let n = note(&mut outbox, Uuid::new_v4(), Status::IdvApproved);
        let dispatch = outbox.route(n);
        assert!(dispatch.deliver.is_empty());
        assert_eq!(dispatch.dropped.len(), 1);
    }
}
