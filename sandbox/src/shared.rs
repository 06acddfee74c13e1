//! The state every handler, script and delivery shares, and the set of background tasks.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::SandboxConfig;
use crate::delivery::Deliverer;
use crate::recorder::{Counters, RequestLog};
use crate::state::World;
use crate::webhooks::DeliveryLog;

/// One running sandbox. Locks are only ever taken briefly and never across an `.await`; when
/// two are needed, `world` is taken before `tasks`.
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) world: Mutex<World>,
    pub(crate) requests: RequestLog,
    pub(crate) counters: Counters,
    pub(crate) deliveries: DeliveryLog,
    pub(crate) deliverer: Deliverer,
    pub(crate) tasks: Tasks,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the state consistent
/// before anything can panic, and a test double must not die of a panic elsewhere.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Scripted progressions and webhook deliveries. They are owned here, not detached, so that
/// shutting a sandbox down (or dropping it) stops them instead of leaking them.
pub(crate) struct Tasks {
    inner: Mutex<TaskSet>,
    /// Spawning goes through the sandbox's runtime, so control methods work from any thread.
    runtime: Handle,
}

struct TaskSet {
    set: JoinSet<()>,
    closed: bool,
}

impl Tasks {
    pub(crate) fn new(runtime: Handle) -> Tasks {
        Tasks {
            inner: Mutex::new(TaskSet {
                set: JoinSet::new(),
                closed: false,
            }),
            runtime,
        }
    }

    /// Spawns `future`; after [`Tasks::close`] it is dropped instead.
    pub(crate) fn spawn<F>(&self, future: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.inner);
        if tasks.closed {
            return None;
        }
        // Reap finished tasks so a long run does not accumulate their results.
        while tasks.set.try_join_next().is_some() {}
        Some(tasks.set.spawn_on(future, &self.runtime))
    }

    /// Aborts every task and refuses new ones.
    pub(crate) fn close(&self) {
        let mut tasks = lock(&self.inner);
        tasks.closed = true;
        tasks.set.abort_all();
    }
}
