//! [`BreakerLayer`]: its constructors, setters and [`Layer`] impl.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, StatusCode, Uri};
use tower_layer::Layer;
use tower_scale_core::{ConfigError, DefaultRefusal};

use crate::breaker::{CircuitBreaker, Permit};
use crate::config::BreakerConfig;
use crate::keyed::KeyedBreakers;
use crate::outcome::Rejected;
use crate::policy::{ClassifyResponse, ServerErrorsAsFailures};
use crate::service::Breaker;

type KeyFn = Arc<dyn Fn(&Uri, &HeaderMap) -> String + Send + Sync>;

/// The breaker (or the keyed breakers) a layer's services ask.
#[derive(Clone)]
pub(crate) enum Breakers {
    Single(CircuitBreaker),
    Keyed(KeyedBreakers, KeyFn),
}

impl Breakers {
    /// Asks the request's breaker for a permit.
    #[inline]
    pub(crate) fn try_acquire(&self, uri: &Uri, headers: &HeaderMap) -> Result<Permit, Rejected> {
        match self {
            Self::Single(breaker) => breaker.try_acquire(),
            Self::Keyed(breakers, key) => breakers.get(&key(uri, headers)).try_acquire(),
        }
    }
}

/// Applies a circuit breaker to an HTTP service: while the breaker is open the layer answers
/// at once without calling the inner service.
///
/// The answer comes from a [`Refuse`](tower_scale_core::Refuse) policy
/// ([`refuse_with`](Self::refuse_with); default [`DefaultRefusal`]: the layer's status, 503
/// unless [`status`](Self::status) says otherwise, and an empty body) given the reason
/// `"circuit-open"` and the [`Rejected`] as its detail; the layer then adds `Retry-After`
/// (whole seconds, rounded up) when the open period's end is known and the response has none.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_breaker::{BreakerConfig, BreakerLayer, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
/// let app = Router::new()
///     .route("/flaky", get(|| async { "ok" }))
///     .layer(BreakerLayer::new(breaker.clone()));
/// breaker.force_open(); // an operator switch
/// let res = app.oneshot(Request::get("/flaky").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
#[derive(Clone)]
pub struct BreakerLayer<C = ServerErrorsAsFailures, R = DefaultRefusal> {
    breakers: Breakers,
    classify: C,
    refuse: R,
    status: StatusCode,
}

impl<C, R> fmt::Debug for BreakerLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl BreakerLayer {
    /// A layer around one breaker (share the breaker to trip or reset it from outside).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self::with_breakers(Breakers::Single(breaker))
    }

    /// A layer around a new breaker built from `config` (named `default` in metrics; use
    /// [`new`](Self::new) with [`CircuitBreaker::named`] to name it or to keep a handle).
    pub fn from_config(config: &BreakerConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(CircuitBreaker::new(config.clone())?))
    }

    /// A layer with one breaker per key, the key computed from the request's URI and
    /// headers (e.g. the downstream host, or the path).
    pub fn keyed<K>(breakers: KeyedBreakers, key: K) -> Self
    where
        K: Fn(&Uri, &HeaderMap) -> String + Send + Sync + 'static,
    {
        Self::with_breakers(Breakers::Keyed(breakers, Arc::new(key)))
    }

    fn with_breakers(breakers: Breakers) -> Self {
        Self {
            breakers,
            classify: ServerErrorsAsFailures,
            refuse: DefaultRefusal::new(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl<C, R> BreakerLayer<C, R> {
    /// Replaces the classifier.
    #[must_use]
    pub fn classify_with<C2: ClassifyResponse>(self, classify: C2) -> BreakerLayer<C2, R> {
        BreakerLayer {
            breakers: self.breakers,
            classify,
            refuse: self.refuse,
            status: self.status,
        }
    }

    /// Replaces the answer to rejected calls: a closure `Fn(&Refusal<'_>) -> Response<B>`
    /// (the [`Rejected`] is `refusal.get::<Rejected>()`) or a [`DefaultRefusal`] with a body.
    #[must_use]
    pub fn refuse_with<R2>(self, refuse: R2) -> BreakerLayer<C, R2> {
        BreakerLayer {
            breakers: self.breakers,
            classify: self.classify,
            refuse,
            status: self.status,
        }
    }

    /// The status of a rejection, as the refusal carries it (503 by default).
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for BreakerLayer<C, R> {
    type Service = Breaker<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(
            inner,
            self.breakers.clone(),
            self.classify.clone(),
            self.refuse.clone(),
            self.status,
        )
    }
}
