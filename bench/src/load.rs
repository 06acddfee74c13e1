//! The load generator: open loop (each request starts at its own scheduled time, whether or not earlier ones
//! have answered, so a slow server cannot slow the generator down and hide its own tail), paced by a
//! periodic timer of the kernel's (`timerfd`, high resolution, not the runtime's 1 ms wheel) that the
//! runtime's worker waits on beside its sockets, so a tick costs no hand-over between threads.
//! Latencies go into HDR histograms, in microseconds.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    task::JoinHandle,
};

/// Percentiles of one run of one kind of request.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

pub fn latency(h: &Histogram<u64>, errors: u64) -> Latency {
    Latency {
        requests: h.len() + errors,
        errors,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// Records the outcome of requests made from many tasks.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<(Histogram<u64>, u64)>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            inner: Arc::new(Mutex::new((histogram(), 0))),
        }
    }
}

impl Recorder {
    pub fn record(&self, elapsed: Duration, ok: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            let _ = inner.0.record((elapsed.as_micros() as u64).max(1));
        } else {
            inner.1 += 1;
        }
    }

    pub fn latency(&self) -> Latency {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        latency(&inner.0, inner.1)
    }
}

/// Counts failed requests by what the generator saw (a status, or why no answer came), from many tasks.
#[derive(Clone, Default)]
pub struct Tally {
    counts: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl Tally {
    pub fn count(&self, failure: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(failure)
            .or_default() += 1;
    }

    /// One note per kind of failure: `"{n} {what} failed{how}"`, `how` being the kind.
    pub fn notes(&self, what: &str, how: impl Fn(&str) -> String) -> Vec<String> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(failure, n)| format!("{n} {what} failed{}", how(failure)))
            .collect()
    }
}

/// Sends `requests` ticks at `rate` per second; `on_tick(i, tasks)` starts request `i` (it must not block:
/// it spawns, and puts what it spawned in `tasks`). Returns when every request so started has finished,
/// with how late the ticks were.
///
/// The pacing runs as a task on the runtime's worker, woken by a periodic `timerfd`. Each expiry the timer
/// counts is one due tick, so a worker busy past a tick's time sends it late (and the lateness says so)
/// but never skips it. The requests it spawns are queued on the same worker: an earlier generator, a thread
/// sleeping to each send time and handing each tick to the runtime, woke two more threads per request,
/// which on the driver's shared core cost about as much as the request itself.
pub async fn paced<F>(rate: f64, requests: u64, on_tick: F) -> Result<Latency, std::io::Error>
where
    F: FnMut(u64, &mut Vec<JoinHandle<()>>) + Send + 'static,
{
    tokio::spawn(pace(rate, requests, on_tick))
        .await
        .map_err(std::io::Error::other)?
}

async fn pace<F>(rate: f64, requests: u64, mut on_tick: F) -> Result<Latency, std::io::Error>
where
    F: FnMut(u64, &mut Vec<JoinHandle<()>>),
{
    // Whole nanoseconds: the timer's period, and so the due times below, are exact.
    let period = Duration::from_nanos((1e9 / rate).round().max(1.0) as u64);
    let lead = Duration::from_millis(5);
    let timer = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    let start = Instant::now() + lead;
    timerfd_settime(
        &timer,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_value: timespec(lead),
            it_interval: timespec(period),
        },
    )?;
    // SAFETY: `timer` is an `OwnedFd` moved into the `AsyncFd`: the descriptor stays open, and the same,
    // for as long as the `AsyncFd` holds it.
    let timer = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }?;
    let mut lateness = histogram();
    let mut tasks = Vec::with_capacity(requests as usize);
    let mut due_ticks = 0;
    while due_ticks < requests {
        let mut ready = timer.readable().await?;
        let mut expiries = [0u8; 8];
        match ready.try_io(|timer| Ok(rustix::io::read(timer.get_ref(), &mut expiries)?)) {
            Ok(read) => read?,
            Err(_would_block) => continue,
        };
        // The read took every expiry so far: the timer is not readable until the next. (A tick that
        // expired since keeps its readiness: tokio clears only the readiness this wait saw.)
        ready.clear_ready();
        let now = Instant::now();
        let from = due_ticks;
        due_ticks = (due_ticks + u64::from_ne_bytes(expiries)).min(requests);
        for i in from..due_ticks {
            let due = start + period * i as u32;
            let _ = lateness.record((now.saturating_duration_since(due).as_micros() as u64).max(1));
            on_tick(i, &mut tasks);
        }
    }
    drop(timer);
    for task in tasks {
        let _ = task.await;
    }
    Ok(latency(&lateness, 0))
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// Runs `call` from `workers` loops at once for `duration` (closed loop: each worker waits for its answer):
/// the most the server can answer. Returns answers per second.
pub async fn saturate<F, Fut>(workers: usize, duration: Duration, call: F) -> (f64, Latency)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let recorder = Recorder::default();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (call, recorder) = (call.clone(), recorder.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w as u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = call(i).await;
                recorder.record(sent.elapsed(), ok);
                i += workers as u64;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let latency = recorder.latency();
    let answered = (latency.requests - latency.errors) as f64;
    (answered / started.elapsed().as_secs_f64(), latency)
}
