//! [`RateLimitLayer`]: its constructors and setters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_scale_core::{ConfigError, DefaultRefusal};

use crate::decide::Policy;
use crate::headers::HeaderFields;
use crate::key::{KeyExtractor, PeerIp};
use crate::policy::{CountAll, CountPolicy, MissingKey, OnStoreError};
use crate::quota::Quota;
use crate::service::RateLimit;
#[cfg(doc)]
use crate::store::Decision;
use crate::store::Store;
#[cfg(doc)]
use tower_scale_core::Refuse;

/// Rate limiting as a tower layer: every request is checked against the policy's quotas in
/// the [`Store`] (in memory, or Redis for a limit shared by every instance), keyed by a
/// [`KeyExtractor`] (peer IP by default).
///
/// Over the limit: `429 Too Many Requests` with `Retry-After`. Every response carries the IETF
/// `RateLimit-Policy` and `RateLimit` header fields (switch off with
/// [`headers(false)`](Self::headers)). A cost that can never fit (more than a quota's burst)
/// is answered `429` without `Retry-After`: retrying cannot help.
///
/// Clones of a layer, and the services it builds, share its policy. Configuring a layer whose
/// policy is shared gives that layer a policy of its own, with the same store (the same
/// counts, if the name is the same) but its own fallback limiter and locally blocked keys;
/// the clones and services keep the policy they had.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_ratelimit::{HeaderKey, MemoryStore, Quota, RateLimitLayer};
///
/// let limit = RateLimitLayer::new(MemoryStore::new(100_000), [Quota::per_second(2)])
///     .unwrap()
///     .key_with(HeaderKey("x-api-key".parse().unwrap()));
/// let app = Router::new().route("/", get(|| async { "ok" })).layer(limit);
/// let call = || Request::get("/").header("x-api-key", "k1").body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(call()).await.unwrap().status(), StatusCode::OK);
/// assert_eq!(app.clone().oneshot(call()).await.unwrap().status(), StatusCode::OK);
/// let res = app.oneshot(call()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(res.headers()["retry-after"], "1");
/// # }
/// ```
pub struct RateLimitLayer<K = PeerIp, R = DefaultRefusal, C = CountAll> {
    policy: Arc<Policy>,
    key: K,
    refuse: R,
    count: C,
}

impl<K: Clone, R: Clone, C: Clone> Clone for RateLimitLayer<K, R, C> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            key: self.key.clone(),
            refuse: self.refuse.clone(),
            count: self.count.clone(),
        }
    }
}

impl<K: fmt::Debug, R, C> fmt::Debug for RateLimitLayer<K, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.policy.name())
            .field("quotas", &self.policy.quotas())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A policy named `default` enforcing every quota (e.g. `[per_second(10), per_hour(1000)]`)
    /// in `store`, keyed by peer IP.
    pub fn new(
        store: impl Store,
        quotas: impl IntoIterator<Item = Quota>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            policy: Arc::new(Policy::new(store, quotas.into_iter().collect())?),
            key: PeerIp::default(),
            refuse: DefaultRefusal::new(),
            count: CountAll,
        })
    }
}

impl<K, R, C> RateLimitLayer<K, R, C> {
    /// Changes the policy. A policy shared with a clone of this layer, or with a service it
    /// built, is left to them: this layer gets a copy of its own (see `Policy`'s `Clone`).
    fn edit(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        let policy = Arc::make_mut(&mut self.policy);
        f(policy);
        policy.share_fallback();
        self
    }

    /// The policy's name: keys are namespaced by it, and headers carry it (default `default`),
    /// as does the `policy` label of `ratelimit_decisions_total`. Its series are registered
    /// (at zero) when the layer builds a service, under the name the policy has then.
    pub fn name(self, name: &str) -> Result<Self, ConfigError> {
        let fields = HeaderFields::new(name, self.policy.quotas())?;
        Ok(self.edit(|p| p.set_name(name, fields)))
    }

    /// Replaces the key extractor.
    #[must_use]
    pub fn key_with<K2: KeyExtractor>(self, key: K2) -> RateLimitLayer<K2, R, C> {
        RateLimitLayer {
            policy: self.policy,
            key,
            refuse: self.refuse,
            count: self.count,
        }
    }

    /// Replaces the response of refused requests (e.g. a JSON body for 429): a [`Refuse`]
    /// policy, such as a closure `Fn(&Refusal<'_>) -> Response<B>`. The refusal's reason is
    /// `"rate-limited"` (429, its [`Decision`] readable with `refusal.get::<Decision>()`),
    /// `"missing-key"` ([`MissingKey::Reject`]), `"missing-peer-address"` (a [`PeerIp`] or
    /// `ClientIp` key on a server that gives no peer address; the detail is the explanation,
    /// `refusal.get::<&str>()`) or `"store-unavailable"`
    /// ([`OnStoreError::FailClosed`]). The layer adds `Retry-After` (unless the response has
    /// one) and the `RateLimit` fields afterwards.
    ///
    /// [`Refusal`]: tower_scale_core::Refusal
    #[must_use]
    pub fn refuse_with<R2>(self, refuse: R2) -> RateLimitLayer<K, R2, C> {
        RateLimitLayer {
            policy: self.policy,
            key: self.key,
            refuse,
            count: self.count,
        }
    }

    /// Counts a request only when `count` says so after its response: e.g. only failed logins
    /// (`.count_if(|status: StatusCode| status == StatusCode::UNAUTHORIZED)`), so a client is
    /// refused after too many failures while its successful requests cost nothing.
    ///
    /// A request is admitted when the store, asked without counting ([`Store::peek`]), finds
    /// room for it; once the response is in, a counted one is counted ([`Store::consume`]).
    /// **Race:** requests in flight together are all admitted on the same state, so
    /// concurrent failures may overshoot the quota by the number in flight (each is counted
    /// only while it still fits). Each decision costs two store calls for a counted request
    /// (one round trip each on Redis) and one otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::post};
    /// use tower::ServiceExt;
    /// use tower_scale_ratelimit::{GlobalKey, MemoryStore, Quota, RateLimitLayer};
    ///
    /// // 3 failed logins per minute; successful ones are not counted.
    /// let limit = RateLimitLayer::new(MemoryStore::new(100_000), [Quota::per_minute(3)])
    ///     .unwrap()
    ///     .key_with(GlobalKey)
    ///     .count_if(|status: StatusCode| status == StatusCode::UNAUTHORIZED);
    /// let app = Router::new()
    ///     .route("/login", post(|body: String| async move {
    ///         if body == "right" { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
    ///     }))
    ///     .layer(limit);
    /// let login = |pw: &'static str| Request::post("/login").body(Body::from(pw)).unwrap();
    /// for _ in 0..5 {
    ///     assert_eq!(app.clone().oneshot(login("right")).await.unwrap().status(), StatusCode::OK);
    /// }
    /// for _ in 0..3 {
    ///     let res = app.clone().oneshot(login("wrong")).await.unwrap();
    ///     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// }
    /// let res = app.oneshot(login("right")).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    /// # }
    /// ```
    #[must_use]
    pub fn count_if<C2: CountPolicy>(self, count: C2) -> RateLimitLayer<K, R, C2> {
        let layer = self.edit(Policy::set_count_after);
        RateLimitLayer {
            policy: layer.policy,
            key: layer.key,
            refuse: layer.refuse,
            count,
        }
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (default `true`).
    #[must_use]
    pub fn headers(self, on: bool) -> Self {
        self.edit(|p| p.set_headers(on))
    }

    /// What to do with keyless requests (default: reject with 400). A key extractor that
    /// needs the peer address on a server that gives none makes every request keyless: the
    /// layer then logs why once and, with the default refusal, answers with that text.
    #[must_use]
    pub fn missing_key(self, missing: MissingKey) -> Self {
        self.edit(|p| p.set_missing_key(missing))
    }

    /// What to do when the store fails (default: [`OnStoreError::FailOpen`], decide locally
    /// on this instance's share of the quota).
    #[must_use]
    pub fn on_store_error(self, mode: OnStoreError) -> Self {
        self.edit(|p| p.set_on_store_error(mode))
    }

    /// How many instances share the quota, for the local limiter that decides while the
    /// shared store fails ([`OnStoreError::FailOpen`]): each instance then admits
    /// `1 / instances` of every quota's rate and burst (the burst rounded down, at least 1).
    /// Set it to the number of instances behind the load balancer; the default, 1, lets each
    /// instance admit the whole quota on its own while Redis is away. Zero is an error.
    ///
    /// ```
    /// use tower_scale_ratelimit::{MemoryStore, Quota, RateLimitLayer};
    ///
    /// // 4 instances: while Redis is down, each admits 25/s with bursts of 25.
    /// let layer = RateLimitLayer::new(MemoryStore::new(1_000), [Quota::per_second(100)])?
    ///     .fallback_instances(4)?;
    /// assert!(RateLimitLayer::new(MemoryStore::new(1_000), [Quota::per_second(100)])?
    ///     .fallback_instances(0)
    ///     .is_err());
    /// # Ok::<(), tower_scale_ratelimit::ConfigError>(())
    /// ```
    pub fn fallback_instances(self, instances: u32) -> Result<Self, ConfigError> {
        if instances == 0 {
            return Err(ConfigError::new(
                "fallback_instances",
                "fallback_instances must be at least 1 (the number of instances sharing the quota)",
            ));
        }
        Ok(self.edit(|p| p.set_fallback_instances(instances)))
    }

    /// Shadow mode: decide, count and set headers, but never reject.
    #[must_use]
    pub fn dry_run(self, on: bool) -> Self {
        self.edit(|p| p.set_dry_run(on))
    }

    /// For a shared store (Redis): when it rejects a key for at least `min_wait`, this
    /// instance rejects that key by itself until the wait is over, so an abusive client far
    /// over its limit does not cost a Redis round trip per request. At most `max_keys` keys are
    /// remembered. (The admitted count is unchanged: those requests would have been rejected.)
    #[must_use]
    pub fn block_locally(self, min_wait: Duration, max_keys: u64) -> Self {
        self.edit(|p| p.set_block_locally(min_wait, max_keys))
    }

    /// Units each request spends (a bulk endpoint may cost more; default 1).
    #[must_use]
    pub fn cost(self, cost: u32) -> Self {
        self.edit(|p| p.set_cost(cost))
    }
}

impl<S, K: Clone, R: Clone, C: Clone> Layer<S> for RateLimitLayer<K, R, C> {
    type Service = RateLimit<S, K, R, C>;

    /// Builds the service; the policy's metric series are registered now, under its name.
    fn layer(&self, inner: S) -> Self::Service {
        self.policy.register_metrics();
        RateLimit::new(
            inner,
            Arc::clone(&self.policy),
            self.key.clone(),
            self.refuse.clone(),
            self.count.clone(),
        )
    }
}
