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
    /// One breaker per path prefix, longest prefix first; a path under none has no breaker.
    Prefixes(Arc<[(Box<str>, CircuitBreaker)]>),
}

impl Breakers {
    /// Asks the request's breaker for a permit; `None`: no breaker guards this request.
    #[inline]
    pub(crate) fn try_acquire(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Option<Permit>, Rejected> {
        match self {
            Self::Single(breaker) => breaker.try_acquire().map(Some),
            Self::Keyed(breakers, key) => breakers.get(&key(uri, headers)).try_acquire().map(Some),
            Self::Prefixes(routes) => {
                let path = uri.path();
                routes
                    .iter()
                    .find(|(prefix, _)| path_has_prefix(path, prefix))
                    .map(|(_, breaker)| breaker.try_acquire())
                    .transpose()
            }
        }
    }
}

/// Whether `path` is `prefix` or below it, segment by segment: `/api` covers `/api` and
/// `/api/users`, not `/apis`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
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

    /// A layer with one breaker per path prefix (e.g. one per downstream a group of routes
    /// calls): a request is guarded by the breaker of the longest prefix its path is under,
    /// segment by segment (`/api` covers `/api` and `/api/users`, not `/apis`); a request under
    /// none passes unguarded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
    /// use tower::ServiceExt;
    /// use tower_scale_breaker::{BreakerConfig, BreakerLayer, CircuitBreaker};
    ///
    /// let payments = CircuitBreaker::named("/payments", BreakerConfig::default()).unwrap();
    /// let app = Router::new()
    ///     .route("/payments/{id}", get(|| async { "paid" }))
    ///     .route("/hello", get(|| async { "hello" }))
    ///     .layer(BreakerLayer::by_path_prefix([("/payments", payments.clone())]));
    /// payments.force_open();
    /// let get = |uri| Request::get(uri).body(Body::empty()).unwrap();
    /// let res = app.clone().oneshot(get("/payments/7")).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// let res = app.oneshot(get("/hello")).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn by_path_prefix<I, P>(routes: I) -> Self
    where
        I: IntoIterator<Item = (P, CircuitBreaker)>,
        P: Into<Box<str>>,
    {
        let mut routes: Vec<(Box<str>, CircuitBreaker)> =
            routes.into_iter().map(|(p, b)| (p.into(), b)).collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self::with_breakers(Breakers::Prefixes(routes.into()))
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

#[cfg(test)]
mod tests {
    use super::path_has_prefix;

    #[test]
    fn prefixes_match_whole_segments() {
        for (path, prefix, covered) in [
            ("/api", "/api", true),
            ("/api/users", "/api", true),
            ("/apis", "/api", false),
            ("/api/users", "/api/", true),
            ("/", "/", true),
            ("/x", "/", true),
            ("/other", "/api", false),
        ] {
            assert_eq!(
                path_has_prefix(path, prefix),
                covered,
                "{path} under {prefix}"
            );
        }
    }
}
