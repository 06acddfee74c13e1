//! Wakes the watch streams of an application when its event log grows.
//!
//! The fan-out carries no events, only "there is something after sequence N": each stream then reads the
//! log from its own cursor (the newest entries from memory, `recent`, the rest from the store). So a slow stream never holds others back and never loses anything, and the
//! registry holds one small entry per watched application, removed with its last stream.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::watch;

use crate::domain::ApplicationId;

pub struct Watchers {
    channels: Mutex<HashMap<ApplicationId, watch::Sender<u64>>>,
    /// Streams of every application's changes wake on any growth.
    all: watch::Sender<u64>,
    open: AtomicUsize,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            channels: Mutex::default(),
            all: watch::channel(0).0,
            open: AtomicUsize::new(0),
        }
    }
}

impl Watchers {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<ApplicationId, watch::Sender<u64>>> {
        // Each critical section is a single map operation: a poisoned lock still guards a whole map.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream's interest in `id`. Subscribe before reading the log, so that no growth between
    /// the read and the wait goes unnoticed.
    pub fn subscribe(self: &Arc<Self>, id: &ApplicationId) -> Subscription {
        let receiver = self
            .channels()
            .entry(id.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        self.open.fetch_add(1, Ordering::Relaxed);
        Subscription {
            watchers: self.clone(),
            id: id.clone(),
            receiver: Some(receiver),
        }
    }

    /// Registers a stream of every application's changes. Subscribe before reading the log.
    pub fn subscribe_all(self: &Arc<Self>) -> AllSubscription {
        self.open.fetch_add(1, Ordering::Relaxed);
        AllSubscription {
            watchers: self.clone(),
            receiver: self.all.subscribe(),
        }
    }

    /// The log of `id` grew to `seq`. Costs one map lookup when nobody watches.
    pub fn notify(&self, id: &ApplicationId, seq: u64) {
        let grow = |latest: &mut u64| {
            let grew = seq > *latest;
            if grew {
                *latest = seq;
            }
            grew
        };
        if let Some(sender) = self.channels().get(id) {
            sender.send_if_modified(grow);
        }
        self.all.send_if_modified(grow);
    }

    /// Open watch streams.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Applications with at least one open stream.
    pub fn watched_applications(&self) -> usize {
        self.channels().len()
    }
}

/// One stream's registration; dropping it (the stream ended or the caller went away) frees it.
pub struct Subscription {
    watchers: Arc<Watchers>,
    id: ApplicationId,
    /// Always `Some` until dropped: `Drop` releases it under the registry's lock.
    receiver: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// The newest sequence number announced for the application.
    pub fn latest(&self) -> u64 {
        self.receiver.as_ref().map_or(0, |r| *r.borrow())
    }

    /// Waits until the application's log grows past what this subscription last saw.
    pub async fn changed(&mut self) {
        // The sender lives in the registry as long as this subscription does, so this cannot fail; if it
        // did, waiting forever would be wrong, so return and let the stream re-read.
        if let Some(receiver) = &mut self.receiver {
            let _ = receiver.changed().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watchers.open.fetch_sub(1, Ordering::Relaxed);
        let mut channels = self.watchers.channels();
        // Released under the lock, so that of two subscriptions dropped at once, the second one sees the
        // first one gone, and no new subscriber can appear between the count and the removal.
        drop(self.receiver.take());
        if channels
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.id);
        }
    }
}

/// A stream of every application's changes; dropping it frees it.
pub struct AllSubscription {
    watchers: Arc<Watchers>,
    receiver: watch::Receiver<u64>,
}

impl AllSubscription {
    /// The newest sequence number announced for the log.
    pub fn latest(&self) -> u64 {
        *self.receiver.borrow()
    }

    /// Waits until the log grows past what this subscription last saw.
    pub async fn changed(&mut self) {
        let _ = self.receiver.changed().await;
    }
}

impl Drop for AllSubscription {
    fn drop(&mut self) {
        self.watchers.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ApplicationId {
        ApplicationId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn wakes_subscribers_and_forgets_applications_nobody_watches() {
        let watchers = Arc::new(Watchers::default());
        let mut first = watchers.subscribe(&id("a"));
        let second = watchers.subscribe(&id("a"));
        let _other = watchers.subscribe(&id("b"));
        assert_eq!(
            (watchers.open_streams(), watchers.watched_applications()),
            (3, 2)
        );

        watchers.notify(&id("a"), 7);
        tokio::time::timeout(std::time::Duration::from_secs(1), first.changed())
            .await
            .expect("woken");
        // Old news does not wake anyone.
        watchers.notify(&id("a"), 3);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), first.changed())
                .await
                .is_err()
        );

        drop(first);
        assert_eq!(watchers.watched_applications(), 2);
        drop(second);
        assert_eq!(
            (watchers.open_streams(), watchers.watched_applications()),
            (1, 1)
        );
        watchers.notify(&id("a"), 9); // nobody listens: nothing to do, nothing kept
        assert_eq!(watchers.watched_applications(), 1);
    }
}
