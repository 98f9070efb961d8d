use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::{CircuitBreaker, Outcome, Permit, Rejected};
use crate::config::{BreakerConfig, ConfigError};
use crate::group::Group;

/// Decides what a response means for the downstream's health.
pub trait ClassifyResponse: Clone {
    /// The outcome of a call that returned `status` and `headers`. (Errors of the inner
    /// service are always failures.)
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;
}

/// The default classifier: 5xx responses are failures, carrying their `Retry-After` (in
/// seconds) so it can set the open period; every other response is a success.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerErrorsAsFailures;

impl ClassifyResponse for ServerErrorsAsFailures {
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if status.is_server_error() {
            Outcome::Failure {
                retry_after: retry_after(headers),
            }
        } else {
            Outcome::Success
        }
    }
}

impl<F> ClassifyResponse for F
where
    F: Fn(StatusCode, &HeaderMap) -> Outcome + Clone,
{
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        self(status, headers)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the services this protects).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What the layer answers when the breaker rejects a call.
pub trait Fallback<B>: Clone {
    /// The response for a rejected call.
    fn respond(&self, rejected: &Rejected) -> Response<B>;
}

/// The default answer: `503 Service Unavailable` (configurable) with `Retry-After` (whole
/// seconds, rounded up) when the open period's end is known, and an empty body.
#[derive(Clone, Copy, Debug)]
pub struct DefaultFallback {
    status: StatusCode,
}

impl Default for DefaultFallback {
    fn default() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl<B: Default> Fallback<B> for DefaultFallback {
    fn respond(&self, rejected: &Rejected) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = self.status;
        if let Some(wait) = rejected.retry_after() {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

impl<B, F> Fallback<B> for F
where
    F: Fn(&Rejected) -> Response<B> + Clone,
{
    fn respond(&self, rejected: &Rejected) -> Response<B> {
        self(rejected)
    }
}

/// One breaker per key (downstream host, route), created on first use from one config, with
/// the number of keys bounded: past `max_keys` the least recently used breaker is dropped.
///
/// Metrics are per group, never per key, since keys may come from clients: the gauge
/// [`BREAKER_KEYS`](crate::BREAKER_KEYS)`{breaker=<name>, state=<state>}` counts the group's
/// live breakers in each state (a dropped breaker leaves the count), and
/// `breaker_transitions_total` carries the group's name ([`named`](Self::named); default
/// `keyed`) in its `breaker` label. A keyed breaker registers no `breaker_state` series. The key of a
/// transition is in its `tracing` event.
#[derive(Clone)]
pub struct KeyedBreakers {
    config: BreakerConfig,
    group: Arc<Group>,
    breakers: moka::sync::Cache<String, CircuitBreaker>,
}

impl fmt::Debug for KeyedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("keys", &self.breakers.entry_count())
            .finish_non_exhaustive()
    }
}

impl KeyedBreakers {
    /// Breakers built from `config`, at most `max_keys` of them, named `keyed` in metrics.
    pub fn new(config: BreakerConfig, max_keys: u64) -> Result<Self, ConfigError> {
        Self::named("keyed", config, max_keys)
    }

    /// Breakers built from `config`, at most `max_keys` of them, whose metrics carry
    /// `breaker = name` (e.g. the downstream they guard).
    pub fn named(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        max_keys: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if max_keys == 0 {
            return Err(ConfigError("max_keys: must be at least 1".to_owned()));
        }
        Ok(Self {
            config,
            group: Arc::new(Group::new(name.into())),
            breakers: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .eviction_listener(|_key, breaker: CircuitBreaker, _cause| breaker.retire())
                .build(),
        })
    }

    /// The breaker of `key`.
    pub fn get(&self, key: &str) -> CircuitBreaker {
        self.breakers.get_with_by_ref(key, || {
            CircuitBreaker::in_group(key, self.config.clone(), Arc::clone(&self.group))
                .unwrap_or_else(|_| unreachable!("the config was validated in KeyedBreakers::new"))
        })
    }

    /// The number of keys held (approximate until moka's pending work runs).
    pub fn len(&self) -> u64 {
        self.breakers.run_pending_tasks();
        self.breakers.entry_count()
    }

    /// Whether no breaker exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type KeyFn = Arc<dyn Fn(&Uri, &HeaderMap) -> String + Send + Sync>;

#[derive(Clone)]
enum Breakers {
    Single(CircuitBreaker),
    Keyed(KeyedBreakers, KeyFn),
}

/// Applies a circuit breaker to an HTTP service: while the breaker is open the layer answers
/// at once (503 + `Retry-After`, or a [`Fallback`]) without calling the inner service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
///
/// let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
/// let app = Router::new()
///     .route("/flaky", get(|| async { "ok" }))
///     .layer(CircuitBreakerLayer::new(breaker.clone()));
/// breaker.force_open(); // an operator switch
/// let res = app.oneshot(Request::get("/flaky").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = ServerErrorsAsFailures, F = DefaultFallback> {
    breakers: Breakers,
    classify: C,
    fallback: F,
}

impl<C, F> fmt::Debug for CircuitBreakerLayer<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// A layer around one breaker (share the breaker to trip or reset it from outside).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breakers: Breakers::Single(breaker),
            classify: ServerErrorsAsFailures,
            fallback: DefaultFallback::default(),
        }
    }

    /// A layer with one breaker per key, the key computed from the request's URI and
    /// headers (e.g. the downstream host, or the path).
    pub fn keyed<K>(breakers: KeyedBreakers, key: K) -> Self
    where
        K: Fn(&Uri, &HeaderMap) -> String + Send + Sync + 'static,
    {
        Self {
            breakers: Breakers::Keyed(breakers, Arc::new(key)),
            classify: ServerErrorsAsFailures,
            fallback: DefaultFallback::default(),
        }
    }
}

impl<C, F> CircuitBreakerLayer<C, F> {
    /// Replaces the classifier.
    pub fn classify_with<C2: ClassifyResponse>(self, classify: C2) -> CircuitBreakerLayer<C2, F> {
        CircuitBreakerLayer {
            breakers: self.breakers,
            classify,
            fallback: self.fallback,
        }
    }

    /// Replaces the answer to rejected calls.
    pub fn fallback<F2>(self, fallback: F2) -> CircuitBreakerLayer<C, F2> {
        CircuitBreakerLayer {
            breakers: self.breakers,
            classify: self.classify,
            fallback,
        }
    }
}

impl<C> CircuitBreakerLayer<C, DefaultFallback> {
    /// The status of the default rejection (503 by default).
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Self {
        self.fallback.status = status;
        self
    }
}

impl<S, C: Clone, F: Clone> Layer<S> for CircuitBreakerLayer<C, F> {
    type Service = CircuitBreakerService<S, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breakers: self.breakers.clone(),
            classify: self.classify.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

/// The middleware built by [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreakerService<S, C = ServerErrorsAsFailures, F = DefaultFallback> {
    inner: S,
    breakers: Breakers,
    classify: C,
    fallback: F,
}

impl<S: fmt::Debug, C, F> fmt::Debug for CircuitBreakerService<S, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, F, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreakerService<S, C, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyResponse,
    F: Fallback<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let acquired = match &self.breakers {
            Breakers::Single(breaker) => breaker.try_acquire(),
            Breakers::Keyed(breakers, key) => {
                breakers.get(&key(req.uri(), req.headers())).try_acquire()
            }
        };
        match acquired {
            Ok(permit) => ResponseFuture {
                kind: Kind::Called {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                    classify: self.classify.clone(),
                },
            },
            Err(rejected) => ResponseFuture {
                kind: Kind::Rejected {
                    res: Some(self.fallback.respond(&rejected)),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreakerService`].
    pub struct ResponseFuture<Fut, C, B> {
        #[pin]
        kind: Kind<Fut, C, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<Fut, C, B> {
        Called { #[pin] fut: Fut, permit: Option<Permit>, classify: C },
        Rejected { res: Option<Response<B>> },
    }
}

impl<Fut, C, B> fmt::Debug for ResponseFuture<Fut, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Fut, C, B, E> Future for ResponseFuture<Fut, C, B>
where
    Fut: Future<Output = Result<Response<B>, E>>,
    C: ClassifyResponse,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                permit,
                classify,
            } => {
                let result = std::task::ready!(fut.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(match &result {
                        Ok(res) => classify.classify(res.status(), res.headers()),
                        Err(_) => Outcome::FAILURE,
                    });
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
