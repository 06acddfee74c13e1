//! Admission control in front of every RPC: a rate limit per caller and a bound on unary calls in
//! flight. Over either, a call is answered at once — `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, with a retry
//! delay — instead of queueing until every caller times out. Health and reflection are never held back:
//! Kubernetes' probes must see the truth, especially under load.

use std::{
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service};

use super::status::to_status;
use crate::domain::{
    Error,
    error::{Detail, ErrorKind, Reason},
};

/// Who is calling; set by authentication (when callers are authenticated), read here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller(pub String);

impl Caller {
    pub fn of<B>(request: &http::Request<B>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "anonymous".to_owned(), |c| c.0.clone())
    }
}

/// A shed call comes back after this long.
const RETRY_SHED_AFTER: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct AdmissionLayer {
    state: Arc<State>,
}

struct State {
    unary: Arc<Semaphore>,
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
}

impl AdmissionLayer {
    /// `rate_per_caller` 0 means no rate limit.
    pub fn new(max_in_flight: usize, rate_per_caller: u32, burst: u32) -> Self {
        let per_caller = NonZeroU32::new(rate_per_caller).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        AdmissionLayer {
            state: Arc::new(State {
                unary: Arc::new(Semaphore::new(max_in_flight.max(1))),
                per_caller,
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    state: Arc<State>,
}

/// RPCs that are never held back.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Streams live for hours: they are bounded per connection (`max_concurrent_streams`), not here.
fn is_stream(path: &str) -> bool {
    path.ends_with("/WatchApplication") || path.ends_with("/WatchApplications")
}

fn refused(error: Error) -> http::Response<Body> {
    to_status(&error).into_http()
}

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if exempt(path) {
            return Box::pin(self.inner.call(request));
        }
        if let Some(limiter) = &self.state.per_caller {
            let caller = Caller::of(&request);
            if let Err(not_until) = limiter.check_key(&caller) {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                tracing::debug!(caller, "rate limited");
                let error = Error::new(ErrorKind::ResourceExhausted, Reason::RateLimited)
                    .with_detail(Detail::RetryAfter(wait.max(Duration::from_millis(1))));
                return Box::pin(futures::future::ready(Ok(refused(error))));
            }
        }
        if is_stream(path) {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.state.unary.clone().try_acquire_owned() else {
            tracing::warn!("at capacity: shedding a call");
            let error = Error::new(ErrorKind::Unavailable, Reason::Overloaded)
                .with_detail(Detail::RetryAfter(RETRY_SHED_AFTER));
            return Box::pin(futures::future::ready(Ok(refused(error))));
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(permit);
            answer
        })
    }
}
