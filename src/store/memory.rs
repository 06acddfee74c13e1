//! The in-memory store: state lives as long as the process.

use std::{collections::HashMap, sync::Mutex, time::SystemTime};

use async_trait::async_trait;

use super::{Applied, Event, Store, StoreError};
use crate::domain::{Application, ApplicationId, Observation};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The event log; an event's sequence is its index + 1.
    log: Vec<Event>,
    /// Per application, the positions of its events in the log, oldest first.
    by_application: HashMap<ApplicationId, Vec<usize>>,
    /// Per external reference and per person, applications in creation order.
    by_reference: HashMap<String, Vec<ApplicationId>>,
    by_person: HashMap<String, Vec<ApplicationId>>,
}

impl State {
    fn current(&self, id: &ApplicationId) -> Option<&Event> {
        let position = *self.by_application.get(id)?.last()?;
        self.log.get(position)
    }

    fn append(&mut self, application: Application) -> Event {
        let event = Event {
            seq: self.log.len() as u64 + 1,
            application,
        };
        let app = &event.application;
        let positions = self.by_application.entry(app.id.clone()).or_default();
        if positions.is_empty() {
            self.by_reference
                .entry(app.external_reference.clone())
                .or_default()
                .push(app.id.clone());
        }
        positions.push(self.log.len());
        // The person id may arrive with a later version; index it once it is known.
        if let Some(person) = &app.person_id {
            let ids = self.by_person.entry(person.clone()).or_default();
            if !ids.contains(&app.id) {
                ids.push(app.id.clone());
            }
        }
        self.log.push(event.clone());
        event
    }

    fn apply(&mut self, id: &ApplicationId, seen: &Observation) -> Option<Applied> {
        let current = self.current(id)?;
        Some(match current.application.apply(seen, SystemTime::now()) {
            None => Applied {
                event: current.clone(),
                changed: false,
            },
            Some(next) => Applied {
                event: self.append(next),
                changed: true,
            },
        })
    }

    fn latest(&self, ids: Option<&Vec<ApplicationId>>) -> Option<Event> {
        ids.and_then(|ids| ids.last())
            .and_then(|id| self.current(id))
            .cloned()
    }
}

impl MemoryStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update completes under the lock without panicking in between, so a poisoned lock (a
        // panic elsewhere while holding it) still guards consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_application(&self, application: Application) -> Result<Applied, StoreError> {
        let mut state = self.state();
        if state.current(&application.id).is_some() {
            let seen = Observation {
                status: application.status,
                upstream_status: application.upstream_status,
                person_id: application.person_id,
                baas_client_id: application.baas_client_id,
            };
            let id = application.id;
            return Ok(state.apply(&id, &seen).expect("present"));
        }
        Ok(Applied {
            event: state.append(application),
            changed: true,
        })
    }

    async fn current(&self, id: &ApplicationId) -> Result<Option<Event>, StoreError> {
        Ok(self.state().current(id).cloned())
    }

    async fn latest_for_reference(
        &self,
        external_reference: &str,
    ) -> Result<Option<Event>, StoreError> {
        let state = self.state();
        Ok(state.latest(state.by_reference.get(external_reference)))
    }

    async fn latest_for_person(&self, person_id: &str) -> Result<Option<Event>, StoreError> {
        let state = self.state();
        Ok(state.latest(state.by_person.get(person_id)))
    }

    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &Observation,
    ) -> Result<Option<Applied>, StoreError> {
        Ok(self.state().apply(id, seen))
    }

    async fn events_after(
        &self,
        id: &ApplicationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        let Some(positions) = state.by_application.get(id) else {
            return Ok(Vec::new());
        };
        // Sequences are positions + 1, so the first position past `after` is found by binary search.
        let start = positions.partition_point(|&p| (p as u64 + 1) <= after);
        Ok(positions[start..]
            .iter()
            .take(limit)
            .map(|&p| state.log[p].clone())
            .collect())
    }
}
