//! [`RetryPolicy`]: a `tower::retry::Policy` with backoff, jitter, a budget and replayable bodies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Sleep;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use crate::policy::retry_after;

/// A `tower::retry::Policy` for HTTP clients: exponential backoff with full jitter, a maximum
/// number of attempts, tower's retry budget (so retries cannot multiply load into a storm),
/// idempotent methods only by default, the server's `Retry-After` honoured, and request bodies
/// replayed up to a size cap.
///
/// Use it with tower's own retry layer: `tower::retry::RetryLayer::new(RetryPolicy::new())`.
/// It retries transport errors and `429`, `502`, `503`, `504` responses by default
/// ([`retry_on`](Self::retry_on) changes the statuses). The request body must be `Clone`
/// (`Full<Bytes>`, `String`, ...) and its exact size known and at most
/// [`max_replay_body`](Self::max_replay_body); other requests are sent once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use http::{Request, Response, StatusCode};
/// use tower::{Service, ServiceExt, retry::RetryLayer};
/// use tower_scale_breaker::RetryPolicy;
///
/// let attempts = Arc::new(AtomicUsize::new(0));
/// let counter = attempts.clone();
/// let flaky = tower::service_fn(move |_req: Request<String>| {
///     let n = counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
///         Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
///     }
/// });
/// let mut client = tower::ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::new().max_attempts(3)))
///     .service(flaky);
/// let res = client.ready().await.unwrap().call(Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(attempts.load(Ordering::SeqCst), 3);
/// # }
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    max_replay_body: u64,
    idempotent_only: bool,
    retry_on: Arc<[StatusCode]>,
    budget: Arc<TpsBudget>,
    /// Attempts made so far for the request this clone of the policy serves.
    attempt: u32,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base", &self.base)
            .field("max_backoff", &self.max_backoff)
            .field("max_replay_body", &self.max_replay_body)
            .field("idempotent_only", &self.idempotent_only)
            .field("retry_on", &self.retry_on)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// Defaults: 3 attempts in all, backoff from 100 ms up to 5 s with full jitter, at most
    /// 30 s for a `Retry-After`, bodies up to 64 KiB replayed, idempotent methods only, and a
    /// budget of 20% extra load over 10 s with 10 retries per second always allowed.
    pub fn new() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            max_replay_body: 64 * 1024,
            idempotent_only: true,
            retry_on: Arc::from(
                [
                    StatusCode::TOO_MANY_REQUESTS,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::GATEWAY_TIMEOUT,
                ]
                .as_slice(),
            ),
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            attempt: 0,
        }
    }

    /// Attempts in all, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Backoff of the first retry's jitter range; it doubles with each retry up to `max`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The longest `Retry-After` honoured; a longer one is not retried.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The largest request body replayed; larger (or unknown-size) bodies are sent once.
    #[must_use]
    pub fn max_replay_body(mut self, bytes: u64) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// Whether only idempotent methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`)
    /// are retried (default `true`).
    #[must_use]
    pub fn idempotent_only(mut self, only: bool) -> Self {
        self.idempotent_only = only;
        self
    }

    /// The response statuses that are retried.
    #[must_use]
    pub fn retry_on(mut self, statuses: &[StatusCode]) -> Self {
        self.retry_on = Arc::from(statuses);
        self
    }

    /// Replaces the retry budget (shared by every clone of the policy).
    #[must_use]
    pub fn budget(mut self, budget: TpsBudget) -> Self {
        self.budget = Arc::new(budget);
        self
    }

    /// Full jitter: a uniform wait in `[0, min(max, base × 2^retry))`.
    fn jittered(&self, retry: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_backoff);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::random_range(0..nanos))
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B, ResB, E> Policy<Request<B>, Response<ResB>, E> for RetryPolicy
where
    B: Body + Clone,
{
    type Future = Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<ResB>, E>,
    ) -> Option<Self::Future> {
        self.attempt += 1;
        let wait = match result {
            Ok(res) if !self.retry_on.contains(&res.status()) => {
                return None;
            }
            Ok(res) => match retry_after(res.headers()) {
                Some(d) if d > self.max_retry_after => return None,
                Some(d) => Some(d),
                None => None,
            },
            Err(_) => None,
        };
        if self.attempt >= self.max_attempts || !self.budget.withdraw() {
            return None;
        }
        let wait = wait.unwrap_or_else(|| self.jittered(self.attempt - 1));
        tracing::debug!(attempt = self.attempt, ?wait, "retrying request");
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if self.attempt == 0 {
            // Every first attempt earns retry budget, retryable or not.
            self.budget.deposit();
        }
        if self.idempotent_only && !idempotent(req.method()) {
            return None;
        }
        match req.body().size_hint().exact() {
            Some(n) if n <= self.max_replay_body => {}
            _ => return None,
        }
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}
