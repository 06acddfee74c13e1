//! The applications this process has seen become final (`Application::is_final`: nothing ConnectPay says
//! can change them any more), so that news about them is answered at once, without reading the store.
//!
//! Every notification naming an application used to read it before being recorded, to drop news about a
//! finished one; for an application still in progress — nearly every notification — that read decided
//! nothing, and on PostgreSQL it was a third of the statements a notification cost (BENCHMARKS.md §10). It
//! is only ever a shortcut: news about an application not remembered here is recorded and confirmed, and
//! confirming news about a final application changes nothing. Forgetting one (a restart, or more final
//! applications than this holds) costs a GET, never a wrong answer.

use std::{collections::HashSet, sync::Mutex};

use crate::domain::{Application, ApplicationId};

/// Applications per generation: at most twice this is remembered, under 10 MiB of ids.
const GENERATION: usize = 50_000;

#[derive(Default)]
pub struct FinalApplications {
    inner: Mutex<Generations>,
}

/// The newest applications in `current`; when it is full, it becomes `previous` and the older ones go.
#[derive(Default)]
struct Generations {
    current: HashSet<ApplicationId>,
    previous: HashSet<ApplicationId>,
}

impl FinalApplications {
    fn inner(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Every critical section leaves both sets whole: a poisoned lock still guards usable sets.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `app` if it is final.
    pub fn saw(&self, app: &Application) {
        if !app.is_final() {
            return;
        }
        let mut generations = self.inner();
        if generations.current.contains(&app.id) || generations.previous.contains(&app.id) {
            return;
        }
        if generations.current.len() >= GENERATION {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.current.insert(app.id.clone());
    }

    /// Whether `id` was seen final.
    pub fn contains(&self, id: &ApplicationId) -> bool {
        let generations = self.inner();
        generations.current.contains(id) || generations.previous.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::domain::{Observation, Status};

    fn app(n: usize, status: Status, baas_client_id: Option<&str>) -> Application {
        let seen = Observation {
            status,
            upstream_status: status.as_str().to_owned(),
            person_id: None,
            baas_client_id: baas_client_id.map(str::to_owned),
        };
        Application::created(
            ApplicationId::parse(&format!("app-{n}")).unwrap(),
            "caller".into(),
            format!("ref-{n}"),
            seen,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn remembers_only_final_applications() {
        let finals = FinalApplications::default();
        finals.saw(&app(1, Status::IdvApproved, None));
        finals.saw(&app(2, Status::ApplicationDeclined, None));
        // An issued account may still learn its baasClientId.
        finals.saw(&app(3, Status::AccountIssued, None));
        finals.saw(&app(4, Status::AccountIssued, Some("baas-4")));
        let remembered: Vec<usize> = (1..=4)
            .filter(|n| finals.contains(&app(*n, Status::IdvApproved, None).id))
            .collect();
        assert_eq!(remembered, [2, 4]);
    }

    #[test]
    fn forgets_the_oldest_generation_when_full() {
        let finals = FinalApplications::default();
        for n in 0..2 * GENERATION + 1 {
            finals.saw(&app(n, Status::IdvDeclined, None));
        }
        let id = |n: usize| app(n, Status::IdvDeclined, None).id;
        assert!(!finals.contains(&id(0)), "the first generation is gone");
        assert!(finals.contains(&id(GENERATION)));
        assert!(finals.contains(&id(2 * GENERATION)));
    }
}
