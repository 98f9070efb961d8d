use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::key::{Key, KeyExtractor, PeerIp};
use crate::quota::{Quota, QuotaError};
use crate::store::{Decision, MemoryStore, Store, StoreError, policy_key};

/// Builds the response of a request the layer refuses (429 over the limit, the missing-key
/// status, 503 when the store fails closed). The layer adds `Retry-After` and the `RateLimit`
/// fields afterwards. Implemented for closures
/// `Fn(StatusCode, Option<&Decision>) -> Response<B>`.
pub trait Rejection<B>: Clone + Send + Sync + 'static {
    /// The response for a refused request.
    fn respond(&self, status: StatusCode, decision: Option<&Decision>) -> Response<B>;
}

/// The default rejection: the status and an empty body.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyRejection;

impl<B: Default> Rejection<B> for EmptyRejection {
    fn respond(&self, status: StatusCode, _decision: Option<&Decision>) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = status;
        res
    }
}

impl<B, F> Rejection<B> for F
where
    F: Fn(StatusCode, Option<&Decision>) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, status: StatusCode, decision: Option<&Decision>) -> Response<B> {
        self(status, decision)
    }
}

/// Decides, once the response is known, whether a request counts against the quota: for a
/// policy set with [`count_if`](RateLimitLayer::count_if), such as counting only failed
/// logins. Implemented for closures `Fn(StatusCode) -> bool`. A request whose service returns
/// an error (no response) does not count.
pub trait CountPolicy: Clone + Send + Sync + 'static {
    /// Whether a request answered with `status` counts.
    fn counts(&self, status: StatusCode) -> bool;
}

/// The default: every request counts, when it is admitted (before the service is called).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountAll;

impl CountPolicy for CountAll {
    fn counts(&self, _status: StatusCode) -> bool {
        true
    }
}

impl<F> CountPolicy for F
where
    F: Fn(StatusCode) -> bool + Clone + Send + Sync + 'static,
{
    fn counts(&self, status: StatusCode) -> bool {
        self(status)
    }
}

/// What to do with a request that has no key (no API key header, no user id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingKey {
    /// Answer with this status (e.g. 400 or 401) without calling the service.
    Reject(StatusCode),
    /// Count it in one bucket shared by every keyless request.
    Shared,
}

/// What to do when the store fails (Redis down, slow, or answering garbage).
///
/// A failing store costs a request at most the backend's `command_timeout` (and nothing once
/// the backend's circuit breaker has opened), whichever mode is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// The default: decide locally, in an in-memory limiter (governor) holding this
    /// instance's share of each quota: its rate and burst divided by
    /// [`fallback_instances`](RateLimitLayer::fallback_instances) (default 1: the whole quota
    /// on every instance). With the instance count set, the fleet as a whole stays near the
    /// quota while Redis is away; once Redis answers again, it decides again.
    #[default]
    FailOpen,
    /// Admit every request while the store fails (availability first, no limit at all).
    Admit,
    /// Answer `503 Service Unavailable`.
    FailClosed,
}

/// An error building the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No quota was given.
    #[error("a rate-limit policy needs at least one quota")]
    NoQuota,
    /// A quota is invalid.
    #[error("quota {index}: {source}")]
    Quota {
        /// Which quota.
        index: usize,
        /// Why.
        source: QuotaError,
    },
    /// A header name in the config is invalid.
    #[error("invalid header name {0:?}")]
    Header(String),
    /// The policy name cannot be used in headers.
    #[error("policy name {0:?} must be non-empty ASCII letters, digits, '-' or '_'")]
    Name(String),
    /// A trusted proxy is neither an address nor a CIDR range.
    #[error(
        "invalid trusted proxy {0:?}: expected an address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32"
    )]
    TrustedProxy(String),
    /// A `client_ip` key in a config gives both or neither of `trusted_hops` and
    /// `trusted_proxies`.
    #[error("a client_ip key needs exactly one of trusted_hops and trusted_proxies")]
    ClientIpTrust,
    /// `fallback_instances` must be at least 1.
    #[error("fallback_instances must be at least 1 (the number of instances sharing the quota)")]
    FallbackInstances,
}

struct Policy {
    name: String,
    quotas: Vec<Quota>,
    store: Arc<dyn Store>,
    headers: bool,
    missing_key: MissingKey,
    on_store_error: OnStoreError,
    /// Decides while the store fails ([`OnStoreError::FailOpen`]): this instance's share.
    fallback: MemoryStore,
    fallback_instances: u32,
    fallback_quotas: Vec<Quota>,
    dry_run: bool,
    /// Set by `count_if`: admit by `peek`, count after the response by `consume`.
    count_after: bool,
    cost: u32,
    policy_header: HeaderValue,
    /// `"<name>";r=`, the start of every `RateLimit` field.
    ratelimit_prefix: Box<[u8]>,
    /// The largest burst: `r=` never says more.
    max_burst: u32,
    counters: Counters,
    /// Keys the shared store rejected for at least `min_wait`: rejected locally until then,
    /// without a round trip.
    local_block: Option<LocalBlock>,
}

/// One instance's share of `q` when `instances` share it: the rate divided (the period
/// multiplied) and the burst divided, rounded down but never below 1 nor below a cost the
/// whole quota admits (so a request that fits the quota is not "never admissible" locally).
fn local_share(q: &Quota, instances: u32, cost: u32) -> Quota {
    let burst = q.max_burst();
    Quota {
        count: q.count,
        period: q.period.checked_mul(instances).unwrap_or(Duration::MAX),
        burst: Some((burst / instances).max(1).max(cost.min(burst))),
    }
}

/// Which store call decides.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Admit and count at once.
    Check,
    /// Admit without counting (`count_if`).
    Peek,
    /// Count after the response (`count_if`).
    Consume,
}

struct LocalBlock {
    min_wait: Duration,
    until: moka::sync::Cache<Key, tokio::time::Instant>,
}

impl LocalBlock {
    fn new(min_wait: Duration, max_keys: u64) -> Self {
        Self {
            min_wait,
            until: moka::sync::Cache::builder()
                .max_capacity(max_keys.max(1))
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }
}

/// A copy of the policy's configuration for a layer configured while its policy is shared
/// (with a clone of the layer, or a service it built): the same store, with a local state of
/// its own, a fallback limiter and a list of blocked keys, both empty (the fallback limiter
/// takes its quotas on first use, and the copy's may differ).
impl Clone for Policy {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            quotas: self.quotas.clone(),
            store: Arc::clone(&self.store),
            headers: self.headers,
            missing_key: self.missing_key,
            on_store_error: self.on_store_error,
            fallback: MemoryStore::new(FALLBACK_KEYS),
            fallback_instances: self.fallback_instances,
            fallback_quotas: self.fallback_quotas.clone(),
            dry_run: self.dry_run,
            count_after: self.count_after,
            cost: self.cost,
            policy_header: self.policy_header.clone(),
            ratelimit_prefix: self.ratelimit_prefix.clone(),
            max_burst: self.max_burst,
            counters: Counters::new(&self.name),
            local_block: self.local_block.as_ref().map(|block| {
                LocalBlock::new(
                    block.min_wait,
                    block.until.policy().max_capacity().unwrap_or(1),
                )
            }),
        }
    }
}

/// Keys the fallback limiter holds at most.
const FALLBACK_KEYS: u64 = 100_000;

/// Metric handles, resolved once per policy (install the recorder before building layers).
/// Each request counts once: `allowed` / `rejected` by the store, `fallback_allowed` /
/// `fallback_rejected` by the local share while the store fails, `store_error` when the store
/// failed and the request was admitted or refused without a decision (`Admit`, `FailClosed`).
struct Counters {
    allowed: metrics::Counter,
    rejected: metrics::Counter,
    store_error: metrics::Counter,
    fallback_allowed: metrics::Counter,
    fallback_rejected: metrics::Counter,
}

impl Counters {
    fn new(policy: &str) -> Self {
        let counter = |decision: &'static str| metrics::counter!("ratelimit_decisions_total", "policy" => policy.to_owned(), "decision" => decision);
        Self {
            allowed: counter("allowed"),
            rejected: counter("rejected"),
            store_error: counter("store_error"),
            fallback_allowed: counter("fallback_allowed"),
            fallback_rejected: counter("fallback_rejected"),
        }
    }
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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
pub struct RateLimitLayer<K = PeerIp, R = EmptyRejection, C = CountAll> {
    policy: Arc<Policy>,
    key: K,
    rejection: R,
    count: C,
}

impl<K: Clone, R: Clone, C: Clone> Clone for RateLimitLayer<K, R, C> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            key: self.key.clone(),
            rejection: self.rejection.clone(),
            count: self.count.clone(),
        }
    }
}

impl<K: fmt::Debug, R, C> fmt::Debug for RateLimitLayer<K, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.policy.name)
            .field("quotas", &self.policy.quotas)
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
    ) -> Result<Self, BuildError> {
        let quotas: Vec<Quota> = quotas.into_iter().collect();
        if quotas.is_empty() {
            return Err(BuildError::NoQuota);
        }
        for (index, q) in quotas.iter().enumerate() {
            q.validate()
                .map_err(|source| BuildError::Quota { index, source })?;
        }
        let mut layer = Self {
            policy: Arc::new(Policy {
                name: String::new(),
                policy_header: HeaderValue::from_static(""),
                ratelimit_prefix: Box::default(),
                max_burst: quotas.iter().map(Quota::max_burst).max().unwrap_or(0),
                quotas,
                store: Arc::new(store),
                headers: true,
                missing_key: MissingKey::Reject(StatusCode::BAD_REQUEST),
                on_store_error: OnStoreError::FailOpen,
                fallback: MemoryStore::new(FALLBACK_KEYS),
                fallback_instances: 1,
                fallback_quotas: Vec::new(),
                dry_run: false,
                count_after: false,
                cost: 1,
                counters: Counters::new("default"),
                local_block: None,
            }),
            key: PeerIp::default(),
            rejection: EmptyRejection,
            count: CountAll,
        };
        layer = layer.name("default")?;
        Ok(layer)
    }
}

impl<K, R, C> RateLimitLayer<K, R, C> {
    /// Changes the policy. A policy shared with a clone of this layer, or with a service it
    /// built, is left to them: this layer gets a copy of its own (see [`Policy::clone`]).
    fn edit(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        let policy = Arc::make_mut(&mut self.policy);
        f(policy);
        policy.fallback_quotas = policy
            .quotas
            .iter()
            .map(|q| local_share(q, policy.fallback_instances, policy.cost))
            .collect();
        self
    }

    /// The policy's name: keys are namespaced by it, and headers carry it (default `default`).
    pub fn name(self, name: &str) -> Result<Self, BuildError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(BuildError::Name(name.to_owned()));
        }
        let header = self
            .policy
            .quotas
            .iter()
            .map(|q| format!("\"{name}\";q={};w={}", q.count, q.period.as_secs().max(1)))
            .collect::<Vec<_>>()
            .join(", ");
        let header =
            HeaderValue::from_str(&header).map_err(|_| BuildError::Name(name.to_owned()))?;
        Ok(self.edit(|p| {
            p.name = name.to_owned();
            p.policy_header = header;
            p.ratelimit_prefix = format!("\"{name}\";r=").into_bytes().into_boxed_slice();
            p.counters = Counters::new(name);
        }))
    }

    /// Replaces the key extractor.
    pub fn key_with<K2: KeyExtractor>(self, key: K2) -> RateLimitLayer<K2, R, C> {
        RateLimitLayer {
            policy: self.policy,
            key,
            rejection: self.rejection,
            count: self.count,
        }
    }

    /// Replaces the response of refused requests (e.g. a JSON body for 429).
    pub fn rejection_with<R2>(self, rejection: R2) -> RateLimitLayer<K, R2, C> {
        RateLimitLayer {
            policy: self.policy,
            key: self.key,
            rejection,
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
    pub fn count_if<C2: CountPolicy>(self, count: C2) -> RateLimitLayer<K, R, C2> {
        let layer = self.edit(|p| p.count_after = true);
        RateLimitLayer {
            policy: layer.policy,
            key: layer.key,
            rejection: layer.rejection,
            count,
        }
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (default `true`).
    #[must_use]
    pub fn headers(self, on: bool) -> Self {
        self.edit(|p| p.headers = on)
    }

    /// What to do with keyless requests (default: reject with 400).
    #[must_use]
    pub fn missing_key(self, missing: MissingKey) -> Self {
        self.edit(|p| p.missing_key = missing)
    }

    /// What to do when the store fails (default: [`OnStoreError::FailOpen`], decide locally
    /// on this instance's share of the quota).
    #[must_use]
    pub fn on_store_error(self, mode: OnStoreError) -> Self {
        self.edit(|p| p.on_store_error = mode)
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
    /// # Ok::<(), tower_scale_ratelimit::BuildError>(())
    /// ```
    pub fn fallback_instances(self, instances: u32) -> Result<Self, BuildError> {
        if instances == 0 {
            return Err(BuildError::FallbackInstances);
        }
        Ok(self.edit(|p| p.fallback_instances = instances))
    }

    /// Shadow mode: decide, count and set headers, but never reject.
    #[must_use]
    pub fn dry_run(self, on: bool) -> Self {
        self.edit(|p| p.dry_run = on)
    }

    /// For a shared store (Redis): when it rejects a key for at least `min_wait`, this
    /// instance rejects that key by itself until the wait is over, so an abusive client far
    /// over its limit does not cost a Redis round trip per request. At most `max_keys` keys are
    /// remembered. (The admitted count is unchanged: those requests would have been rejected.)
    #[must_use]
    pub fn block_locally(self, min_wait: Duration, max_keys: u64) -> Self {
        self.edit(|p| p.local_block = Some(LocalBlock::new(min_wait, max_keys)))
    }

    /// Units each request spends (a bulk endpoint may cost more; default 1).
    #[must_use]
    pub fn cost(self, cost: u32) -> Self {
        self.edit(|p| p.cost = cost)
    }
}

impl<S, K: Clone, R: Clone, C: Clone> Layer<S> for RateLimitLayer<K, R, C> {
    type Service = RateLimit<S, K, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            policy: Arc::clone(&self.policy),
            key: self.key.clone(),
            rejection: self.rejection.clone(),
            count: self.count.clone(),
        }
    }
}

/// The middleware built by [`RateLimitLayer`].
pub struct RateLimit<S, K = PeerIp, R = EmptyRejection, C = CountAll> {
    inner: S,
    policy: Arc<Policy>,
    key: K,
    rejection: R,
    count: C,
}

impl<S: Clone, K: Clone, R: Clone, C: Clone> Clone for RateLimit<S, K, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
            key: self.key.clone(),
            rejection: self.rejection.clone(),
            count: self.count.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, R, C> fmt::Debug for RateLimit<S, K, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`RateLimit`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        // Decided without I/O (memory store, a live lease) with the header fields off: the
        // service's own future, nothing else (so that it is written in place).
        Passthrough { #[pin] fut: F },
        // Decided without I/O with the header fields on: call the service, then add the
        // headers, written before the call.
        Admitted { #[pin] fut: F, headers: Option<Headers> },
        // Answered by the layer itself.
        Answered { res: Option<Response<B>> },
        // Waiting for the store (Redis).
        Waiting { fut: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>> },
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { fut } => fut.poll(cx),
            KindProj::Admitted { fut, headers } => {
                let mut res = std::task::ready!(fut.poll(cx))?;
                if let Some(headers) = headers.take() {
                    headers.insert(&mut res);
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Answered { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
            KindProj::Waiting { fut } => fut.as_mut().poll(cx),
        }
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` and `RateLimit` fields of one response.
pub(crate) struct Headers {
    policy: HeaderValue,
    ratelimit: Option<HeaderValue>,
}

impl Headers {
    fn insert<B>(self, res: &mut Response<B>) {
        let headers = res.headers_mut();
        headers.reserve(2);
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        if let Some(value) = self.ratelimit {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
}

impl Policy {
    /// The header fields for `d`, when they are on.
    #[inline]
    fn headers_for(&self, d: Option<&Decision>) -> Option<Headers> {
        self.headers.then(|| Headers {
            policy: self.policy_header.clone(),
            ratelimit: d.and_then(|d| self.ratelimit_header(d)),
        })
    }

    /// `"<name>";r=<remaining>;t=<seconds>`, written without `format!` (once per response).
    fn ratelimit_header(&self, d: &Decision) -> Option<HeaderValue> {
        let mut numbers = itoa::Buffer::new();
        let remaining = numbers.format(d.remaining.min(self.max_burst));
        let mut buf = Vec::with_capacity(self.ratelimit_prefix.len() + remaining.len() + 23);
        buf.extend_from_slice(&self.ratelimit_prefix);
        buf.extend_from_slice(remaining.as_bytes());
        buf.extend_from_slice(b";t=");
        buf.extend_from_slice(numbers.format(secs_ceil(d.reset)).as_bytes());
        HeaderValue::from_maybe_shared(bytes::Bytes::from(buf)).ok()
    }

    fn add_headers<B>(&self, res: &mut Response<B>, d: Option<&Decision>) {
        if let Some(headers) = self.headers_for(d) {
            headers.insert(res);
        }
    }

    fn reject<B>(
        &self,
        rejection: &impl Rejection<B>,
        status: StatusCode,
        d: Option<&Decision>,
    ) -> Response<B> {
        let mut res = rejection.respond(status, d);
        if let Some(d) = d.filter(|d| !d.never) {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(secs_ceil(d.retry_after).max(1)),
            );
        }
        self.add_headers(&mut res, d);
        res
    }

    /// Counts `decision` and answers `429` when it rejects (unless in dry-run mode).
    fn enforce<B>(
        &self,
        rejection: &impl Rejection<B>,
        decision: Decision,
        allowed: &metrics::Counter,
        rejected: &metrics::Counter,
    ) -> Result<Option<Decision>, Response<B>> {
        if decision.allowed {
            allowed.increment(1);
        } else {
            rejected.increment(1);
            if !self.dry_run {
                return Err(self.reject(rejection, StatusCode::TOO_MANY_REQUESTS, Some(&decision)));
            }
        }
        Ok(Some(decision))
    }

    /// `Ok(decision)` to call the service (with the headers of `decision`), or the answer.
    fn judge<B>(
        &self,
        rejection: &impl Rejection<B>,
        key: &Key,
        op: Op,
        result: Result<Decision, StoreError>,
    ) -> Result<Option<Decision>, Response<B>> {
        match result {
            Ok(d) => self.enforce(
                rejection,
                d,
                &self.counters.allowed,
                &self.counters.rejected,
            ),
            Err(e) => {
                tracing::warn!(policy = %self.name, error = %e, "rate-limit store failed");
                match self.on_store_error {
                    OnStoreError::FailOpen => {
                        let d = self.local_decision(&policy_key(&self.name, key), op);
                        let c = &self.counters;
                        self.enforce(rejection, d, &c.fallback_allowed, &c.fallback_rejected)
                    }
                    OnStoreError::Admit => {
                        self.counters.store_error.increment(1);
                        Ok(None)
                    }
                    OnStoreError::FailClosed => {
                        self.counters.store_error.increment(1);
                        Err(self.reject(rejection, StatusCode::SERVICE_UNAVAILABLE, None))
                    }
                }
            }
        }
    }

    /// The local limiter's decision, on this instance's share of the quotas.
    fn local_decision(&self, key: &str, op: Op) -> Decision {
        let (quotas, cost) = (&self.fallback_quotas, self.cost);
        match op {
            Op::Check => self.fallback.decide::<true>(&Key::from(key), quotas, cost),
            Op::Peek => self.fallback.decide_counted(key, quotas, cost, false),
            Op::Consume => self.fallback.decide_counted(key, quotas, cost, true),
        }
    }

    /// A 429 for a key this instance remembers as blocked ([`block_locally`](
    /// RateLimitLayer::block_locally)), unless in dry-run mode.
    fn blocked<B>(&self, rejection: &impl Rejection<B>, key: &Key) -> Option<Response<B>> {
        let until = self.local_block.as_ref()?.until.get(key)?;
        let now = tokio::time::Instant::now();
        if until <= now {
            return None;
        }
        let decision = Decision::rejected(until - now);
        self.counters.rejected.increment(1);
        (!self.dry_run)
            .then(|| self.reject(rejection, StatusCode::TOO_MANY_REQUESTS, Some(&decision)))
    }

    /// Counts a request of a `count_if` policy after a response that counts; the decision
    /// when it was counted (for the headers).
    async fn consume(&self, key: &str) -> Option<Decision> {
        let d = match self.store.consume(key, &self.quotas, self.cost).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(policy = %self.name, error = %e, "rate-limit store failed");
                match self.on_store_error {
                    OnStoreError::FailOpen => self.local_decision(key, Op::Consume),
                    OnStoreError::Admit | OnStoreError::FailClosed => return None,
                }
            }
        };
        d.allowed.then_some(d)
    }
}

impl<S, K, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, R, C>
where
    R: Rejection<ResBody>,
    C: CountPolicy,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    K: KeyExtractor,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = &self.policy;
        let answered = |res| ResponseFuture {
            kind: Kind::Answered { res: Some(res) },
        };
        let key = match (self.key.extract(&req), policy.missing_key) {
            (Some(key), _) => key,
            (None, MissingKey::Shared) => Key::from_static("<keyless>"),
            (None, MissingKey::Reject(status)) => {
                return answered(policy.reject(&self.rejection, status, None));
            }
        };
        if let Some(res) = policy.blocked(&self.rejection, &key) {
            return answered(res);
        }
        // Decided in this process (memory, a live lease): no boxed future, no clone of the
        // inner service.
        let store = &policy.store;
        let local = if policy.count_after {
            None
        } else if policy.headers {
            store.check_local(&policy.name, &key, &policy.quotas, policy.cost)
        } else {
            store.admit_local(&policy.name, &key, &policy.quotas, policy.cost)
        };
        if let Some(d) = local {
            let c = &policy.counters;
            let decision = match policy.enforce(&self.rejection, d, &c.allowed, &c.rejected) {
                Ok(decision) => decision,
                Err(res) => return answered(res),
            };
            if !policy.headers {
                return ResponseFuture {
                    kind: Kind::Passthrough {
                        fut: self.inner.call(req),
                    },
                };
            }
            let headers = policy.headers_for(decision.as_ref());
            let fut = self.inner.call(req);
            return ResponseFuture {
                kind: Kind::Admitted { fut, headers },
            };
        }
        self.call_store(key, req)
    }
}

impl<S, K, R, C> RateLimit<S, K, R, C> {
    /// A request the store decides by I/O (Redis, a spent lease): one boxed future.
    #[inline(never)]
    fn call_store<ReqBody, ResBody>(
        &mut self,
        key: Key,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        R: Rejection<ResBody>,
        C: CountPolicy,
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        let policy = &self.policy;
        // The service that was polled ready handles this request later; a clone takes its
        // place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = Arc::clone(policy);
        let rejection = self.rejection.clone();
        let count = self.count.clone();
        ResponseFuture {
            kind: Kind::Waiting {
                fut: Box::pin(async move {
                    let (op, result, full_key) = if policy.count_after {
                        let full_key = policy_key(&policy.name, &key);
                        let result = policy
                            .store
                            .peek(&full_key, &policy.quotas, policy.cost)
                            .await;
                        (Op::Peek, result, Some(full_key))
                    } else {
                        let result = policy
                            .store
                            .check_key(&policy.name, &key, &policy.quotas, policy.cost)
                            .await;
                        (Op::Check, result, None)
                    };
                    if let (Some(block), Ok(d)) = (&policy.local_block, &result)
                        && !d.allowed
                        && !d.never
                        && d.retry_after >= block.min_wait
                    {
                        block
                            .until
                            .insert(key.clone(), tokio::time::Instant::now() + d.retry_after);
                    }
                    let mut decision = match policy.judge(&rejection, &key, op, result) {
                        Ok(decision) => decision,
                        Err(res) => return Ok(res),
                    };
                    let mut res = inner.call(req).await?;
                    if let Some(full_key) = &full_key
                        && count.counts(res.status())
                        && let Some(counted) = policy.consume(full_key).await
                    {
                        decision = Some(counted);
                    }
                    policy.add_headers(&mut res, decision.as_ref());
                    Ok(res)
                }),
            },
        }
    }
}
