//! The newest events this process recorded, kept in memory so that woken watch streams can read them
//! without asking the store: one change wakes its application's watchers and every `WatchApplications`
//! stream, and each of them would otherwise read the log for the same few rows.
//!
//! It is only ever a shortcut, never the truth: a stream takes from it only an unbroken run that starts
//! right after what it already has — the next versions of its application, or the next sequence numbers of
//! the log — and reads the store for anything else (events another replica recorded, sequence numbers
//! PostgreSQL skipped, events older than what is kept). Events enter only once committed.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use crate::{domain::ApplicationId, store::Event};

/// Events kept: a few seconds of a busy gateway, a few hundred KiB.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct RecentEvents {
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_seq: BTreeMap<u64, Event>,
    /// Per application: version → sequence number.
    by_application: HashMap<ApplicationId, BTreeMap<u64, u64>>,
}

impl RecentEvents {
    fn inner(&self) -> std::sync::MutexGuard<'_, Recent> {
        // Every critical section leaves both maps consistent: a poisoned lock still guards whole maps.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a committed event, forgetting the oldest beyond the capacity.
    pub fn remember(&self, event: &Event) {
        let mut recent = self.inner();
        recent
            .by_application
            .entry(event.application.id.clone())
            .or_default()
            .insert(event.application.version, event.seq);
        recent.by_seq.insert(event.seq, event.clone());
        while recent.by_seq.len() > CAPACITY {
            let Some((_, oldest)) = recent.by_seq.pop_first() else {
                break;
            };
            let id = &oldest.application.id;
            if let Some(versions) = recent.by_application.get_mut(id) {
                versions.remove(&oldest.application.version);
                if versions.is_empty() {
                    recent.by_application.remove(id);
                }
            }
        }
    }

    /// The application's versions right after `version`, as many as are held without a break (at most
    /// `limit`); empty when the next one is not held.
    /// Those of `seqs` not held here.
    pub fn missing(&self, seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let recent = self.inner();
        seqs.into_iter()
            .filter(|seq| !recent.by_seq.contains_key(seq))
            .collect()
    }

    pub fn after_version(&self, id: &ApplicationId, version: u64, limit: usize) -> Vec<Event> {
        let recent = self.inner();
        let Some(versions) = recent.by_application.get(id) else {
            return Vec::new();
        };
        let mut run = Vec::new();
        let mut next = version + 1;
        while run.len() < limit {
            match versions.get(&next).and_then(|seq| recent.by_seq.get(seq)) {
                Some(event) => run.push(event.clone()),
                None => break,
            }
            next += 1;
        }
        run
    }

    /// The log's entries right after `seq`, as many as are held without a break (at most `limit`); empty
    /// when the next one is not held.
    pub fn after_seq(&self, seq: u64, limit: usize) -> Vec<Event> {
        let recent = self.inner();
        recent
            .by_seq
            .range(seq + 1..)
            .zip(seq + 1..)
            .take_while(|((held, _), expected)| *held == expected)
            .take(limit)
            .map(|((_, event), _)| event.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Application, ApplicationId, Status};

    fn event(id: &str, version: u64, seq: u64) -> Event {
        let application = Application {
            id: ApplicationId::parse(id).unwrap(),
            owner: "caller".into(),
            external_reference: format!("ref-{id}"),
            person_id: None,
            status: Status::IdvTokenGenerated,
            upstream_status: "IDV_TOKEN_GENERATED".into(),
            baas_client_id: None,
            version,
            last_known_status: Status::IdvTokenGenerated,
            create_time: std::time::UNIX_EPOCH,
            update_time: std::time::UNIX_EPOCH,
        };
        Event { seq, application }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn what_is_not_held_is_named() {
        let recent = RecentEvents::default();
        recent.remember(&event("a", 1, 10));
        recent.remember(&event("b", 1, 12));
        assert_eq!(recent.missing([12, 11, 10, 13]), [11, 13]);
    }

    #[test]
    fn only_unbroken_runs_right_after_the_position_are_given() {
        let recent = RecentEvents::default();
        let a = ApplicationId::parse("a").unwrap();
        // Version 2 of "a" was recorded elsewhere (seq 11): it is not held.
        for e in [
            event("a", 1, 10),
            event("b", 1, 12),
            event("a", 3, 13),
            event("a", 4, 14),
        ] {
            recent.remember(&e);
        }
        assert_eq!(seqs(&recent.after_version(&a, 1, 10)), Vec::<u64>::new());
        assert_eq!(seqs(&recent.after_version(&a, 2, 10)), [13, 14]);
        assert_eq!(seqs(&recent.after_version(&a, 2, 1)), [13]);
        assert_eq!(seqs(&recent.after_version(&a, 0, 10)), [10]);
        // The log: 11 is missing, so nothing after 10 is given; after 11, 12 to 14 are.
        assert_eq!(seqs(&recent.after_seq(10, 10)), Vec::<u64>::new());
        assert_eq!(seqs(&recent.after_seq(11, 10)), [12, 13, 14]);
        assert_eq!(seqs(&recent.after_seq(9, 10)), [10]);
        assert_eq!(seqs(&recent.after_seq(14, 10)), Vec::<u64>::new());
    }

    #[test]
    fn the_oldest_are_forgotten_beyond_the_capacity() {
        let recent = RecentEvents::default();
        let total = CAPACITY as u64 + 10;
        for seq in 1..=total {
            recent.remember(&event(&format!("app-{seq}"), 1, seq));
        }
        assert!(recent.after_seq(0, 10).is_empty());
        assert_eq!(seqs(&recent.after_seq(10, 3)), [11, 12, 13]);
        let first = ApplicationId::parse("app-1").unwrap();
        assert!(recent.after_version(&first, 0, 10).is_empty());
        let inner = recent.inner();
        assert_eq!(inner.by_seq.len(), CAPACITY);
        assert_eq!(inner.by_application.len(), CAPACITY);
    }
}
