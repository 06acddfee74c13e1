//! The in-memory store: state lives as long as the process.

use std::{collections::HashMap, sync::Mutex, time::SystemTime};

use async_trait::async_trait;

use super::{Applied, Store, StoreError};
use crate::domain::{Application, ApplicationId, Observation};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    applications: HashMap<ApplicationId, Application>,
    /// Per external reference, its applications in creation order.
    by_reference: HashMap<String, Vec<ApplicationId>>,
}

impl MemoryStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied state behind (every update is a single
        // insert), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_application(
        &self,
        application: Application,
    ) -> Result<Application, StoreError> {
        let mut state = self.state();
        if let Some(existing) = state.applications.get(&application.id).cloned() {
            let seen = Observation {
                status: application.status,
                upstream_status: application.upstream_status,
                person_id: application.person_id,
                baas_client_id: application.baas_client_id,
            };
            let next = existing.apply(&seen, SystemTime::now()).unwrap_or(existing);
            state.applications.insert(next.id.clone(), next.clone());
            return Ok(next);
        }
        state
            .by_reference
            .entry(application.external_reference.clone())
            .or_default()
            .push(application.id.clone());
        state
            .applications
            .insert(application.id.clone(), application.clone());
        Ok(application)
    }

    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError> {
        Ok(self.state().applications.get(id).cloned())
    }

    async fn latest_for_reference(
        &self,
        external_reference: &str,
    ) -> Result<Option<Application>, StoreError> {
        let state = self.state();
        Ok(state
            .by_reference
            .get(external_reference)
            .and_then(|ids| ids.last())
            .and_then(|id| state.applications.get(id))
            .cloned())
    }

    async fn apply(
        &self,
        id: &ApplicationId,
        seen: &Observation,
    ) -> Result<Option<Applied>, StoreError> {
        let mut state = self.state();
        let Some(current) = state.applications.get(id) else {
            return Ok(None);
        };
        Ok(Some(match current.apply(seen, SystemTime::now()) {
            None => Applied {
                application: current.clone(),
                changed: false,
            },
            Some(next) => {
                state.applications.insert(id.clone(), next.clone());
                Applied {
                    application: next,
                    changed: true,
                }
            }
        }))
    }
}
