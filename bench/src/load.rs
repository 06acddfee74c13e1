//! The load generator: open loop (each request starts at its own scheduled time, whether or not earlier ones
//! have answered, so a slow server cannot slow the generator down and hide its own tail), paced by a
//! thread that sleeps to each send time (the OS's high-resolution timers, not the runtime's 1 ms wheel).
//! Latencies go into HDR histograms, in microseconds.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;

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

/// Sends `requests` ticks at `rate` per second from a pacing thread; `on_tick(i)` starts request `i` (it
/// must not block: it spawns). Returns when every tick was sent, with how late the ticks were.
pub async fn paced<F>(rate: f64, requests: u64, mut on_tick: F) -> Latency
where
    F: FnMut(u64),
{
    let (sender, mut ticks) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let interval = Duration::from_secs_f64(1.0 / rate);
    std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(5);
        for i in 0..requests {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if sender.send((i, due)).is_err() {
                return;
            }
        }
    });
    let mut lateness = histogram();
    while let Some((i, due)) = ticks.recv().await {
        let _ = lateness.record((due.elapsed().as_micros() as u64).max(1));
        on_tick(i);
    }
    latency(&lateness, 0)
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
