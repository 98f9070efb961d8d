use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_scale_core::PrivateMark;
use tower_service::Service;

use super::body::{Buffered, ResponseBody, buffer};
use super::key::{CacheKey, DefaultKey, MakeCacheKey};
use super::policy::{
    BASE_FIELD, Lifetimes, Rules, coding_matches, etag_matches, is_unstored, named_by_connection,
    negotiated_coding, storable, variant_field, vary_names,
};
use super::values::{self, HitStatuses};
use crate::cache::{Coordinated, flight_key, millis};
use crate::entry::{ADDED_HEADERS, Entry, EntryBody, Freshness, StoredResponse, headers_fit};
use crate::flight::{Join, Leader, Outcome};
use crate::{BoxError, Cache, Error};

/// The `Cache-Status` response header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Tags of a response set by a handler as a response extension, in addition to the tag
/// header; purged together with [`Cache::invalidate_tag`].
///
/// ```
/// use axum::{Extension, response::IntoResponse};
/// use tower_scale_cache::CacheTags;
///
/// async fn product() -> impl IntoResponse {
///     (Extension(CacheTags(vec!["product:7".into(), "catalog".into()])), "{\"id\":7}")
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTags(pub Vec<String>);

/// The serde form of a [`ResponseCacheLayer`]'s settings.
///
/// ```
/// use tower_scale_cache::{Cache, ResponseCacheConfig, ResponseCacheLayer};
///
/// let config: ResponseCacheConfig = serde_json::from_str(r#"{
///     "ttl": "60s", "stale_while_revalidate": "10s", "public": true
/// }"#).unwrap();
/// let layer = ResponseCacheLayer::from_config(Cache::memory(), &config).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ResponseCacheConfig {
    /// Lifetime of responses without `s-maxage`/`max-age` (or of all responses with
    /// `override_origin_ttl`). Default none: only responses with a lifetime are stored.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Use `ttl` even when the response has `s-maxage`/`max-age`. Default false.
    pub override_origin_ttl: bool,
    /// Stale-while-revalidate window of responses without the directive. Default 0.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window of responses without the directive. Default 0.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Largest body stored; larger bodies stream through uncached. Default 1 MiB.
    pub max_body_size: usize,
    /// Statuses that may be stored. Default 200, 203, 204, 300, 301, 308, 404, 405, 410, 414,
    /// 501 (RFC 9110's heuristically cacheable statuses).
    pub statuses: Vec<u16>,
    /// Look up and store responses to requests with `Authorization` (only responses marked
    /// `public`, `s-maxage` or `must-revalidate`, RFC 9111 §3.5). Default false: bypass.
    pub cache_authorized: bool,
    /// The route is public: requests with `Cookie` use the cache. Default false: bypass.
    pub public: bool,
    /// Response header listing the response's tags (space or comma separated); removed
    /// before the response leaves. Default `surrogate-key`.
    pub tag_header: Option<String>,
    /// The cache's name in `Cache-Status`. Default `tower-scale`.
    pub name: String,
    /// A successful response to an unsafe method (any but `GET`, `HEAD`, `OPTIONS`, `TRACE`)
    /// purges its URI and the `Location`, `Content-Location` URIs on its origin. Default true.
    pub invalidate_on_unsafe: bool,
    /// Query parameters left out of the key (e.g. `utm_source`); they are also removed from
    /// the request the inner service sees when its response may be stored.
    pub ignore_query_params: Vec<String>,
    /// Most `Vary` variants stored per resource (URI); a response that would be one more is
    /// served, not stored. Default 16.
    pub max_variants: usize,
    /// Longest cache key, in bytes; a request with a longer one bypasses the cache. Default
    /// 1024.
    pub max_key_length: usize,
    /// Most query parameters; a request with more bypasses the cache. Default 32.
    pub max_query_params: usize,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self {
            ttl: None,
            override_origin_ttl: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            max_body_size: 1024 * 1024,
            statuses: vec![200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501],
            cache_authorized: false,
            public: false,
            tag_header: Some("surrogate-key".to_owned()),
            name: values::DEFAULT_NAME.to_owned(),
            invalidate_on_unsafe: true,
            ignore_query_params: Vec::new(),
            max_variants: 16,
            max_key_length: 1024,
            max_query_params: 32,
        }
    }
}

#[derive(Clone, Debug)]
struct Settings {
    route_ttl: Option<u64>,
    override_origin_ttl: bool,
    swr_ms: u64,
    sie_ms: u64,
    max_body: usize,
    statuses: Arc<[u16]>,
    cache_authorized: bool,
    public: bool,
    tag_header: Option<HeaderName>,
    name: Arc<str>,
    /// `Cache-Status` values of fresh hits, computed once.
    hit_statuses: Arc<HitStatuses>,
    invalidate_on_unsafe: bool,
    max_variants: usize,
    max_key_length: usize,
    max_query_params: usize,
}

impl Settings {
    fn from_config(c: &ResponseCacheConfig) -> Result<Self, Error> {
        let tag_header =
            match &c.tag_header {
                None => None,
                Some(h) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    Error::Config(format!("tag_header: {h:?} is not a header name"))
                })?),
            };
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            return Err(Error::Config(format!("name: {:?} is not a token", c.name)));
        }
        if c.statuses.iter().any(|s| StatusCode::from_u16(*s).is_err()) {
            return Err(Error::Config("statuses: not an HTTP status".into()));
        }
        Ok(Self {
            route_ttl: c.ttl.map(millis),
            override_origin_ttl: c.override_origin_ttl,
            swr_ms: millis(c.stale_while_revalidate),
            sie_ms: millis(c.stale_if_error),
            max_body: c.max_body_size,
            statuses: c.statuses.clone().into(),
            cache_authorized: c.cache_authorized,
            public: c.public,
            tag_header,
            name: c.name.as_str().into(),
            hit_statuses: HitStatuses::for_name(&c.name),
            invalidate_on_unsafe: c.invalidate_on_unsafe,
            max_variants: c.max_variants,
            max_key_length: c.max_key_length,
            max_query_params: c.max_query_params,
        })
    }

    fn rules(&self, authorized: bool) -> Rules<'_> {
        Rules {
            statuses: &self.statuses,
            route_ttl: self.route_ttl,
            override_origin_ttl: self.override_origin_ttl,
            swr_ms: self.swr_ms,
            sie_ms: self.sie_ms,
            authorized,
        }
    }
}

/// Caches `GET`/`HEAD` responses in a [`Cache`], following RFC 9111 for a shared cache.
///
/// This layer applies the [`ResponseCache`] middleware. See the [crate docs](crate) for the
/// rules, and the guide for the layer order (outside compression).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use axum::{Router, body::Body, http::Request, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_cache::{Cache, ResponseCacheLayer};
///
/// let app = Router::new()
///     .route("/items/{id}", get(|| async { "{\"id\":1}" }))
///     .layer(ResponseCacheLayer::new(Cache::memory()).ttl(Duration::from_secs(60)));
/// let get = || Request::get("/items/1").body(Body::empty()).unwrap();
/// let first = app.clone().oneshot(get()).await.unwrap();
/// assert_eq!(first.headers()["cache-status"], "tower-scale; fwd=uri-miss; stored");
/// let second = app.oneshot(get()).await.unwrap();
/// // `ttl=` counts the seconds left on the system clock: 60, or 59 past a second boundary.
/// let status = second.headers()["cache-status"].to_str().unwrap();
/// assert!(status.starts_with("tower-scale; hit; ttl="), "{status}");
/// # }
/// ```
pub struct ResponseCacheLayer<K = DefaultKey> {
    /// Built once; [`Layer::layer`] only clones the `Arc` (setters copy it when shared).
    shared: Arc<Shared<K>>,
}

impl<K> Clone for ResponseCacheLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> std::fmt::Debug for ResponseCacheLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.shared.cache)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer<DefaultKey> {
    /// A layer storing in `cache`, with the default settings of [`ResponseCacheConfig`].
    pub fn new(cache: Cache) -> Self {
        match Self::from_config(cache, &ResponseCacheConfig::default()) {
            Ok(layer) => layer,
            Err(e) => unreachable!("the default settings are valid: {e}"),
        }
    }

    /// A layer from a [`ResponseCacheConfig`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming an invalid field.
    pub fn from_config(cache: Cache, config: &ResponseCacheConfig) -> Result<Self, Error> {
        let mut key = DefaultKey::new();
        for p in &config.ignore_query_params {
            key = key.ignore_query_param(p.as_str());
        }
        Ok(Self {
            shared: Arc::new(Shared {
                cache,
                settings: Settings::from_config(config)?,
                key: Arc::new(key),
            }),
        })
    }
}

impl<K> ResponseCacheLayer<K> {
    /// The cache (to purge: [`Cache::invalidate`] with a key, [`Cache::invalidate_tag`]).
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    fn settings_mut(&mut self) -> &mut Settings {
        &mut Arc::make_mut(&mut self.shared).settings
    }

    /// Lifetime of responses without `s-maxage`/`max-age`: the route's TTL.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings_mut().route_ttl = Some(millis(ttl));
        self
    }

    /// Use the route's TTL even when the response has `s-maxage`/`max-age`.
    #[must_use]
    pub fn override_origin_ttl(mut self, yes: bool) -> Self {
        self.settings_mut().override_origin_ttl = yes;
        self
    }

    /// Stale-while-revalidate window of responses without the directive: a stale response
    /// is served at once while one background request refreshes it.
    #[must_use]
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.settings_mut().swr_ms = millis(window);
        self
    }

    /// Stale-if-error window of responses without the directive: a stale response is served
    /// when the origin fails or answers 5xx.
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.settings_mut().sie_ms = millis(window);
        self
    }

    /// Largest body stored (default 1 MiB); larger bodies stream through uncached.
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.settings_mut().max_body = bytes;
        self
    }

    /// Statuses that may be stored.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.settings_mut().statuses = statuses.into_iter().map(|s| s.as_u16()).collect();
        self
    }

    /// Use the cache for requests with `Authorization` (RFC 9111 §3.5 rules apply).
    #[must_use]
    pub fn cache_authorized(mut self, yes: bool) -> Self {
        self.settings_mut().cache_authorized = yes;
        self
    }

    /// Mark the route public: requests with `Cookie` use the cache.
    #[must_use]
    pub fn public(mut self, yes: bool) -> Self {
        self.settings_mut().public = yes;
        self
    }

    /// The response header carrying tags (default `surrogate-key`); `None` for none.
    #[must_use]
    pub fn tag_header(mut self, name: Option<HeaderName>) -> Self {
        self.settings_mut().tag_header = name;
        self
    }

    /// Whether a successful unsafe request (any method but `GET`, `HEAD`, `OPTIONS`, `TRACE`)
    /// purges its URI and the same-origin `Location`/`Content-Location` URIs (default true).
    #[must_use]
    pub fn invalidate_on_unsafe(mut self, yes: bool) -> Self {
        self.settings_mut().invalidate_on_unsafe = yes;
        self
    }

    /// Most `Vary` variants stored per resource (default 16); a response that would be one
    /// more is served, not stored (`Cache-Status` `detail=too-many-variants`).
    #[must_use]
    pub fn max_variants(mut self, n: usize) -> Self {
        self.settings_mut().max_variants = n;
        self
    }

    /// Longest cache key in bytes (default 1024); a request with a longer one bypasses the
    /// cache (`detail=key-too-long`).
    #[must_use]
    pub fn max_key_length(mut self, bytes: usize) -> Self {
        self.settings_mut().max_key_length = bytes;
        self
    }

    /// Most query parameters (default 32); a request with more bypasses the cache
    /// (`detail=too-many-params`).
    #[must_use]
    pub fn max_query_params(mut self, n: usize) -> Self {
        self.settings_mut().max_query_params = n;
        self
    }

    /// Replaces the key function.
    #[must_use]
    pub fn key_with<K2: MakeCacheKey>(self, key: K2) -> ResponseCacheLayer<K2> {
        ResponseCacheLayer {
            shared: Arc::new(Shared {
                cache: self.shared.cache.clone(),
                settings: self.shared.settings.clone(),
                key: Arc::new(key),
            }),
        }
    }
}

impl<S, K> Layer<S> for ResponseCacheLayer<K> {
    type Service = ResponseCache<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K> {
    cache: Cache,
    settings: Settings,
    key: Arc<K>,
}

impl<K> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            settings: self.settings.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

/// The response cache middleware; see [`ResponseCacheLayer`].
pub struct ResponseCache<S, K = DefaultKey> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: Clone, K> Clone for ResponseCache<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, K> std::fmt::Debug for ResponseCache<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .field("cache", &self.shared.cache)
            .finish_non_exhaustive()
    }
}

impl<S, K> ResponseCache<S, K> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response future of [`ResponseCache`].
pub struct ResponseFuture<B, E> {
    inner: BoxedResponse<B, E>,
}

type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: MakeCacheKey,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes with this request; a clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        // Which path the request takes is decided here, before any future exists: each path
        // is a future of its own, so that a lookup's (allocated for every request) holds only
        // what a hit needs.
        let s = &shared.settings;
        let method = req.method();
        let headers = req.headers();
        let bypass_detail = if method != Method::GET && method != Method::HEAD {
            return ResponseFuture {
                inner: Box::pin(unsafe_method(shared, inner, req)),
            };
        } else if !s.public && headers.contains_key(header::COOKIE) {
            Some("fwd=bypass; detail=cookie")
        } else if !s.cache_authorized && headers.contains_key(header::AUTHORIZATION) {
            Some("fwd=bypass; detail=authorization")
        } else {
            None
        };
        if let Some(detail) = bypass_detail {
            return ResponseFuture {
                inner: Box::pin(bypass(shared, inner, req, detail)),
            };
        }
        let (parts, body) = req.into_parts();
        let key = shared.key.make_cache_key(&parts);
        let refused = match &key {
            None => Some("fwd=bypass; detail=key"),
            Some(key) if key.as_str().len() > s.max_key_length => {
                Some("fwd=bypass; detail=key-too-long")
            }
            Some(_) if too_many_params(parts.uri.query(), s.max_query_params) => {
                Some("fwd=bypass; detail=too-many-params")
            }
            Some(_) => None,
        };
        let (Some(key), None) = (key, refused) else {
            let req = Request::from_parts(parts, body);
            let detail = refused.unwrap_or("fwd=bypass; detail=key");
            return ResponseFuture {
                inner: Box::pin(bypass(shared, inner, req, detail)),
            };
        };
        ResponseFuture {
            inner: Box::pin(handle(shared, inner, parts, body, key)),
        }
    }
}

/// What the leader of a miss hands its followers.
enum HttpOutcome {
    Stored {
        entry: Arc<Entry>,
        names: Arc<[HeaderName]>,
        field: String,
    },
    Pass,
}

/// What a lookup found.
struct Found {
    entry: Option<Arc<Entry>>,
    names: Option<Arc<[HeaderName]>>,
    /// The field looked up: the base field (no allocation) or a variant.
    field: Cow<'static, str>,
    vary_miss: bool,
}

fn status(name: &str, detail: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}; {detail}"))
        .unwrap_or_else(|_| HeaderValue::from_static("tower-scale"))
}

fn with_status<B>(mut res: Response<B>, value: HeaderValue) -> Response<B> {
    res.headers_mut().append(CACHE_STATUS, value);
    res
}

/// Whether `query` has more than `max` (non-empty) parameters.
fn too_many_params(query: Option<&str>, max: usize) -> bool {
    // Fewer bytes than `max + 1` parameters take: nothing to count.
    query.is_some_and(|q| q.len() > 2 * max && q.split('&').filter(|p| !p.is_empty()).count() > max)
}

/// Whether a response of `status` may carry `Content-Length` (not 1xx, 204 or 304, RFC 9110
/// §8.6).
fn may_have_content_length(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// A `GET`/`HEAD` request with a key: the lookup, then a fresh hit served here or the rest
/// in [`forward`].
async fn handle<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    inner: S,
    parts: Parts,
    body: ReqBody,
    key: CacheKey,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: MakeCacheKey,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    // The paths that may call the origin run in a boxed future of their own, so that this
    // future stays the size a hit needs: what the lookup found lives only inside this block
    // (a local of the function would be kept in the future across the forward's `await`).
    let forwarded = {
        // A failing store is a miss: the origin answers, still once for concurrent requests.
        let (found, store_down) = match shared.find(key.as_str(), &parts.headers).await {
            Ok(found) => (found, false),
            Err(e) => {
                tracing::debug!(error = %e, "cache store unavailable; forwarding");
                let found = Found {
                    entry: None,
                    names: None,
                    field: Cow::Borrowed(BASE_FIELD),
                    vary_miss: false,
                };
                (found, true)
            }
        };
        let now = shared.cache.now_ms();
        if let Some(entry) = &found.entry
            && let Freshness::Fresh(left) = entry.freshness(now)
        {
            let status = shared.settings.hit_statuses.get(left / 1000);
            let Some(entry) = found.entry else {
                unreachable!("checked above")
            };
            return Ok(shared.respond(entry, &parts, now, status));
        }
        let req = Request::from_parts(parts, body);
        Box::pin(forward(shared, inner, req, key, found, store_down, now))
    };
    forwarded.await
}

/// A request the cache does not look up: the origin's response, passed through.
async fn bypass<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    mut inner: S,
    req: Request<ReqBody>,
    detail: &'static str,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: MakeCacheKey,
{
    Ok(shared.pass(inner.call(req).await?, detail))
}

/// A successful (2xx, 3xx) response to an unsafe method (any but `GET`, `HEAD`, `OPTIONS`,
/// `TRACE`) purges the request's key and the same-origin URIs its response names once the
/// origin answered; other methods pass through.
async fn unsafe_method<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: MakeCacheKey,
{
    // Every method but the safe ones (RFC 9110 §9.2.1), unknown ones included.
    let purge = shared.settings.invalidate_on_unsafe
        && !matches!(*req.method(), Method::OPTIONS | Method::TRACE);
    let (parts, body) = req.into_parts();
    let target = if purge {
        let host = request_host(&parts).map(str::to_owned);
        shared
            .key
            .make_cache_key(&parts)
            .map(|key| (key, parts.uri.clone(), host))
    } else {
        None
    };
    let res = inner.call(Request::from_parts(parts, body)).await?;
    if let Some((key, uri, host)) = target
        && (res.status().is_success() || res.status().is_redirection())
    {
        shared
            .purge_after_unsafe(key.as_str(), &uri, host.as_deref(), res.headers())
            .await;
    }
    Ok(shared.pass(res, "fwd=method"))
}

/// Everything but a fresh hit: stale entries, misses (single flight, lock, store), `HEAD`
/// misses.
async fn forward<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    inner: S,
    req: Request<ReqBody>,
    key: CacheKey,
    found: Found,
    store_down: bool,
    now: u64,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: MakeCacheKey,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let mut inner = inner;
    let (mut parts, body) = req.into_parts();
    // What the key leaves out must not reach the origin of a response that may be stored.
    shared.key.strip_unkeyed(&mut parts);
    let cache = &shared.cache;
    let group = key.as_str();
    let mut stale = None;
    if let Some(entry) = found.entry {
        match entry.freshness(now) {
            Freshness::Fresh(left) => {
                let status = shared.settings.hit_statuses.get(left / 1000);
                return Ok(shared.respond(entry, &parts, now, status));
            }
            Freshness::Stale(by) if entry.can_revalidate_stale(now) => {
                if parts.method == Method::GET
                    && let Join::Leader(leader) =
                        cache.inner.flights.join(flight_key(group, &found.field))
                {
                    let req = rebuild::<ReqBody>(&parts);
                    let shared = Arc::clone(&shared);
                    let group = group.to_owned();
                    let names = found.names.clone();
                    let stale = Arc::clone(&entry);
                    tokio::spawn(async move {
                        let (parts, body) = req.into_parts();
                        let miss = Miss {
                            group: &group,
                            names,
                            stale: Some(stale),
                            verb: "fwd=stale",
                            store_down: false,
                        };
                        drop(shared.lead(inner, parts, body, miss, leader).await);
                    });
                }
                let detail = format!(
                    "hit; ttl=-{}; detail=stale-while-revalidate",
                    by.div_ceil(1000)
                );
                return Ok(shared.serve(&entry, &parts, &detail));
            }
            Freshness::Stale(_) if entry.can_serve_on_error(now) => stale = Some(entry),
            Freshness::Stale(_) => {}
        }
    }
    if parts.method == Method::HEAD {
        let res = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(shared.pass(res, "fwd=uri-miss; detail=head"));
    }
    let (miss, verb) = match (store_down, found.vary_miss) {
        (true, _) => ("miss", "fwd=miss; detail=store-unavailable"),
        (false, true) => ("vary-miss", "fwd=vary-miss"),
        (false, false) => ("uri-miss", "fwd=uri-miss"),
    };
    let mut fkey = flight_key(group, &found.field);
    loop {
        match cache.inner.flights.join(fkey) {
            Join::Leader(leader) => {
                let miss = Miss {
                    group,
                    names: found.names,
                    stale,
                    verb,
                    store_down,
                };
                return shared.lead(inner, parts, body, miss, leader).await;
            }
            Join::Follower(f) => {
                let Some(outcome) = f.wait().await else {
                    fkey = flight_key(group, &found.field);
                    continue;
                };
                match outcome.downcast_ref::<HttpOutcome>() {
                    Some(HttpOutcome::Stored {
                        entry,
                        names,
                        field,
                    }) => {
                        let mine = variant_field(names, &parts.headers);
                        if mine == *field {
                            let detail = format!("fwd={miss}; collapsed");
                            return Ok(shared.serve(entry, &parts, &detail));
                        }
                        // Another variant was fetched: wait for (or lead) ours.
                        fkey = flight_key(group, &mine);
                    }
                    _ => {
                        let res = inner.call(Request::from_parts(parts, body)).await?;
                        return Ok(
                            shared.pass(res, &format!("fwd={miss}; collapsed; detail=uncacheable"))
                        );
                    }
                }
            }
        }
    }
}

/// A miss being fetched by its leader.
struct Miss<'a> {
    group: &'a str,
    /// The `Vary` names known for the group.
    names: Option<Arc<[HeaderName]>>,
    /// A stale entry usable if the origin fails.
    stale: Option<Arc<Entry>>,
    /// How `Cache-Status` names the forward: `fwd=uri-miss`, `fwd=vary-miss`, `fwd=miss`
    /// (store unavailable), or `fwd=stale` for a stale-while-revalidate refresh.
    verb: &'static str,
    /// The store failed the lookup: no lock, no store, one origin call for all waiters.
    store_down: bool,
}

/// A request like `parts` (method, URI, version, headers, extensions), with an empty body.
fn rebuild<B: Default>(parts: &Parts) -> Request<B> {
    let mut req = Request::new(B::default());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

impl<K: MakeCacheKey> Shared<K> {
    /// The entry for a request: through the `Vary` names remembered for the group (one read),
    /// else the group's base field (a response, or the `Vary` marker and then the variant).
    async fn find(&self, group: &str, headers: &HeaderMap) -> Result<Found, crate::StoreError> {
        let cache = &self.cache;
        let known = cache.inner.vary_names(group);
        if let Some(names) = &known {
            let field = variant_field(names, headers);
            if let Some(e) = cache.lookup(group, &field).await?
                && matches!(e.body, EntryBody::Response(_))
            {
                return Ok(Found {
                    entry: Some(e),
                    names: known.clone(),
                    field: field.into(),
                    vary_miss: false,
                });
            }
        }
        let base = cache.lookup(group, BASE_FIELD).await?;
        let Some(base) = base else {
            return Ok(Found {
                entry: None,
                field: known.as_ref().map_or(Cow::Borrowed(BASE_FIELD), |n| {
                    Cow::Owned(variant_field(n, headers))
                }),
                names: known,
                vary_miss: false,
            });
        };
        match &base.body {
            EntryBody::Response(_) => Ok(Found {
                entry: Some(base),
                names: None,
                field: Cow::Borrowed(BASE_FIELD),
                vary_miss: false,
            }),
            EntryBody::Vary(names) => {
                let names: Arc<[HeaderName]> = names.to_vec().into();
                let field = variant_field(&names, headers);
                let same = known.as_deref() == Some(&*names);
                if !same {
                    cache.inner.remember_vary(group, Arc::clone(&names));
                }
                let entry = if same {
                    None
                } else {
                    cache
                        .lookup(group, &field)
                        .await?
                        .filter(|e| matches!(e.body, EntryBody::Response(_)))
                };
                Ok(Found {
                    vary_miss: entry.is_none(),
                    entry,
                    names: Some(names),
                    field: field.into(),
                })
            }
            EntryBody::Value(_) => Ok(Found {
                entry: None,
                names: None,
                field: Cow::Borrowed(BASE_FIELD),
                vary_miss: false,
            }),
        }
    }

    /// A response from the origin, passed through.
    fn pass<B>(&self, res: Response<B>, detail: &str) -> Response<ResponseBody<B>> {
        let mut res = res.map(ResponseBody::stream);
        self.strip_tags(res.headers_mut());
        with_status(res, status(&self.settings.name, detail))
    }

    fn strip_tags(&self, headers: &mut HeaderMap) {
        if let Some(h) = &self.settings.tag_header {
            headers.remove(h);
        }
    }

    /// A response from a stored entry: `304` when it is a 2xx response `If-None-Match` matches.
    fn serve<B>(
        &self,
        entry: &Arc<Entry>,
        parts: &Parts,
        detail: &str,
    ) -> Response<ResponseBody<B>> {
        let status = status(&self.settings.name, detail);
        self.respond(Arc::clone(entry), parts, self.cache.now_ms(), status)
    }

    /// A response from a stored entry with the `Cache-Status` value `cache_status`. The
    /// entry's headers and body are moved into the response when nothing else holds the entry
    /// (a hit read from Redis), else copied into a map sized for them and the two headers
    /// added here (header values and the body share their bytes with the entry either way).
    fn respond<B>(
        &self,
        entry: Arc<Entry>,
        parts: &Parts,
        now: u64,
        cache_status: HeaderValue,
    ) -> Response<ResponseBody<B>> {
        let age = values::age(entry.age_secs(now));
        let EntryBody::Response(stored) = &entry.body else {
            unreachable!("only responses are served")
        };
        // The stored `ETag` is looked up only for a conditional request; only a 2xx response
        // is "not modified" (RFC 9110 §13.1.2).
        if let Some(inm) = parts.headers.get(header::IF_NONE_MATCH)
            && stored.status.is_success()
            && etag_matches(inm, stored.headers.get(header::ETAG))
        {
            let mut res = Response::new(ResponseBody::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            let h = res.headers_mut();
            for name in [
                header::CACHE_CONTROL,
                header::CONTENT_LOCATION,
                header::DATE,
                header::ETAG,
                header::EXPIRES,
                header::VARY,
            ] {
                for v in stored.headers.get_all(&name) {
                    h.append(name.clone(), v.clone());
                }
            }
            h.insert(header::AGE, age);
            return with_status(res, cache_status);
        }
        let head = parts.method == Method::HEAD;
        let (status, mut headers, body) = match Arc::try_unwrap(entry) {
            Ok(Entry {
                body: EntryBody::Response(stored),
                ..
            }) => (stored.status, stored.headers, stored.body),
            Ok(_) => unreachable!("only responses are served"),
            Err(shared) => {
                let EntryBody::Response(stored) = &shared.body else {
                    unreachable!("only responses are served")
                };
                let mut headers = HeaderMap::with_capacity(stored.headers.len() + ADDED_HEADERS);
                for (name, value) in &stored.headers {
                    headers.append(name.clone(), value.clone());
                }
                (stored.status, headers, stored.body.clone())
            }
        };
        headers.insert(header::AGE, age);
        headers.append(CACHE_STATUS, cache_status);
        let body = if head {
            ResponseBody::empty()
        } else {
            ResponseBody::full(body)
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        res
    }

    /// The leader of a miss: takes the cross-instance lock (if on), calls the origin, stores
    /// what may be stored, and hands the outcome to the followers.
    async fn lead<S, ReqBody, ResBody>(
        &self,
        mut inner: S,
        mut parts: Parts,
        body: ReqBody,
        miss: Miss<'_>,
        leader: Leader,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        let cache = &self.cache;
        let group = miss.group;
        let field = miss.names.as_ref().map_or_else(
            || BASE_FIELD.to_owned(),
            |n| variant_field(n, &parts.headers),
        );
        let finish = |leader: Leader, o: HttpOutcome| leader.finish(Arc::new(o) as Outcome);
        let verb = miss.verb;
        let coordinated = if miss.store_down {
            Coordinated::Fetch(None)
        } else {
            cache
                .coordinate(group, &field, miss.stale.is_some(), || async {
                    let found = self.find(group, &parts.headers).await.ok()?;
                    found.entry
                })
                .await
        };
        let token = match coordinated {
            Coordinated::Fetch(token) => token,
            Coordinated::Filled(entry) => {
                let names = self.names_of(group);
                let res = self.serve(&entry, &parts, &format!("{verb}; collapsed"));
                let field = variant_field(&names, &parts.headers);
                finish(
                    leader,
                    HttpOutcome::Stored {
                        entry,
                        names,
                        field,
                    },
                );
                return Ok(res);
            }
            Coordinated::ServeStale => {
                let Some(stale) = miss.stale else {
                    unreachable!("ServeStale needs a stale entry")
                };
                let names = self.names_of(group);
                let res = self.serve(&stale, &parts, "hit; detail=stale-locked");
                let field = variant_field(&names, &parts.headers);
                finish(
                    leader,
                    HttpOutcome::Stored {
                        entry: stale,
                        names,
                        field,
                    },
                );
                return Ok(res);
            }
        };
        let authorized = parts.headers.contains_key(header::AUTHORIZATION);
        let req_headers = parts.headers.clone();
        let method = parts.method.clone();
        // A layer inside (sessions) sets the mark when it makes the response personal.
        let mark = PrivateMark::get_or_insert(&mut parts.extensions);
        let called = inner.call(Request::from_parts(parts, body)).await;
        let stale_for_error = |now: u64| {
            miss.stale
                .as_ref()
                .filter(|e| e.can_serve_on_error(now))
                .cloned()
        };
        let res = match called {
            Ok(res) => res,
            Err(e) => {
                cache.unlock(group, &field, token).await;
                if let Some(stale) = stale_for_error(cache.now_ms()) {
                    let (p, _) = Request::new(()).into_parts();
                    let mut p = p;
                    p.method = method;
                    p.headers = req_headers;
                    let res = self.serve(&stale, &p, "fwd=stale; detail=stale-if-error");
                    finish(leader, HttpOutcome::Pass);
                    return Ok(res);
                }
                finish(leader, HttpOutcome::Pass);
                return Err(e);
            }
        };
        if res.status().is_server_error()
            && let Some(stale) = stale_for_error(cache.now_ms())
        {
            cache.unlock(group, &field, token).await;
            let (mut p, _) = Request::new(()).into_parts();
            p.method = method;
            p.headers = req_headers;
            let detail = format!(
                "fwd=stale; fwd-status={}; detail=stale-if-error",
                res.status().as_u16()
            );
            finish(leader, HttpOutcome::Pass);
            return Ok(self.serve(&stale, &p, &detail));
        }
        let (mut rparts, rbody) = res.into_parts();
        let verdict = if mark.is_set() {
            Err("private")
        } else {
            storable(
                &self.settings.rules(authorized),
                rparts.status,
                &rparts.headers,
            )
        };
        let lifetimes = match verdict {
            Ok((lifetimes, _)) => lifetimes,
            Err(reason) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res = Response::from_parts(rparts, rbody);
                return Ok(self.pass(res, &format!("{verb}; detail={reason}")));
            }
        };
        let names: Arc<[HeaderName]> = vary_names(&rparts.headers).unwrap_or_default().into();
        // A variant keyed by the request's negotiated coding holds a response in that coding
        // (or identity): another one (a compression layer preferring differently) is not stored.
        let refused = if !headers_fit(&rparts.headers) {
            Some("header-too-large")
        } else if names.contains(&header::ACCEPT_ENCODING)
            && !coding_matches(
                rparts.headers.get(header::CONTENT_ENCODING),
                negotiated_coding(&req_headers),
            )
        {
            Some("content-encoding")
        } else if !names.is_empty()
            && !miss.store_down
            && miss.stale.is_none()
            && !cache
                .has_room(group, self.settings.max_variants.saturating_add(1))
                .await
        {
            Some("too-many-variants")
        } else {
            None
        };
        if let Some(reason) = refused {
            cache.unlock(group, &field, token).await;
            finish(leader, HttpOutcome::Pass);
            let res = Response::from_parts(rparts, rbody);
            return Ok(self.pass(res, &format!("{verb}; detail={reason}")));
        }
        let buffered = buffer(Box::pin(rbody), self.settings.max_body).await;
        let (bytes, trailers) = match buffered {
            Buffered::Complete(bytes, trailers) => (bytes, trailers),
            Buffered::TooLarge(prefix, rest) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res = Response::from_parts(rparts, ResponseBody::resume(prefix, None, rest));
                return Ok(self.annotate(res, &format!("{verb}; detail=too-large")));
            }
            Buffered::Failed(prefix, error, rest) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res =
                    Response::from_parts(rparts, ResponseBody::resume(prefix, Some(error), rest));
                return Ok(self.annotate(res, &format!("{verb}; detail=body-error")));
            }
        };
        if let Some(trailers) = trailers {
            cache.unlock(group, &field, token).await;
            finish(leader, HttpOutcome::Pass);
            let res =
                Response::from_parts(rparts, ResponseBody::full_with_trailers(bytes, trailers));
            return Ok(self.annotate(res, &format!("{verb}; detail=trailers")));
        }
        let tags = self.tags(&rparts.headers, &rparts.extensions);
        let entry = Arc::new(self.entry(&rparts, bytes.clone(), lifetimes, cache.now_ms()));
        let stored_field = variant_field(&names, &req_headers);
        if miss.store_down {
            // Nothing to write to: the response is shared with the waiting requests only.
        } else if names.is_empty() {
            cache
                .save(group, &[(BASE_FIELD, Arc::clone(&entry))], &tags)
                .await;
        } else {
            let marker = Arc::new(Entry {
                stored_at: entry.stored_at,
                ttl_ms: entry.ttl_ms,
                swr_ms: entry.swr_ms,
                sie_ms: entry.sie_ms,
                body: EntryBody::Vary(names.to_vec().into()),
            });
            cache
                .save(
                    group,
                    &[(BASE_FIELD, marker), (&stored_field, Arc::clone(&entry))],
                    &tags,
                )
                .await;
            cache.inner.remember_vary(group, Arc::clone(&names));
        }
        cache.unlock(group, &field, token).await;
        finish(
            leader,
            HttpOutcome::Stored {
                entry,
                names,
                field: stored_field,
            },
        );
        self.strip_tags(&mut rparts.headers);
        let res = Response::from_parts(rparts, ResponseBody::full(bytes));
        if miss.store_down {
            Ok(self.annotate(res, verb))
        } else {
            Ok(self.annotate(res, &format!("{verb}; stored")))
        }
    }

    fn annotate<B>(
        &self,
        mut res: Response<ResponseBody<B>>,
        detail: &str,
    ) -> Response<ResponseBody<B>> {
        self.strip_tags(res.headers_mut());
        with_status(res, status(&self.settings.name, detail))
    }

    fn names_of(&self, group: &str) -> Arc<[HeaderName]> {
        self.cache
            .inner
            .vary_names(group)
            .unwrap_or_else(|| Arc::new([]))
    }

    fn tags(&self, headers: &HeaderMap, extensions: &http::Extensions) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        if let Some(h) = &self.settings.tag_header {
            for v in headers.get_all(h) {
                if let Ok(v) = v.to_str() {
                    tags.extend(
                        v.split(|c: char| c == ',' || c.is_ascii_whitespace())
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned),
                    );
                }
            }
        }
        if let Some(CacheTags(more)) = extensions.get::<CacheTags>() {
            tags.extend(more.iter().cloned());
        }
        tags.sort();
        tags.dedup();
        tags
    }

    fn entry(&self, parts: &http::response::Parts, body: Bytes, l: Lifetimes, now: u64) -> Entry {
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if is_unstored(name)
                || self.settings.tag_header.as_ref() == Some(name)
                || named_by_connection(&parts.headers, name)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // Stored with the entry, a hit's `Content-Length` is a slice of the bytes read (else
        // a server or router would format it for every hit); a `HEAD` hit carries it too.
        if !headers.contains_key(header::CONTENT_LENGTH) && may_have_content_length(parts.status) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let age = parts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Entry {
            stored_at: now,
            ttl_ms: l.ttl_ms,
            swr_ms: l.swr_ms,
            sie_ms: l.sie_ms,
            body: EntryBody::Response(StoredResponse {
                status: parts.status,
                age,
                headers,
                body,
            }),
        }
    }

    /// Purges the target URI of a successful unsafe request, and the `Location` and
    /// `Content-Location` URIs it names when they are on the request's origin (RFC 9111 §4.4).
    /// Failures are logged.
    async fn purge_after_unsafe(
        &self,
        key: &str,
        uri: &http::Uri,
        host: Option<&str>,
        headers: &HeaderMap,
    ) {
        let mut groups = vec![key.to_owned()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(reference) = headers.get(&name).and_then(|v| v.to_str().ok())
                && let Some(target) = same_origin_target(reference, uri.path(), host)
                && let Ok(req) = Request::get(target.as_str()).body(())
            {
                let (mut parts, ()) = req.into_parts();
                if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
                    parts.headers.insert(header::HOST, host);
                }
                if let Some(k) = self.key.make_cache_key(&parts) {
                    groups.push(k.as_str().to_owned());
                }
            }
        }
        groups.sort();
        groups.dedup();
        for g in &groups {
            if let Err(e) = self.cache.invalidate(g).await {
                tracing::warn!(error = %e, key = %g, "cache purge after an unsafe request failed");
            }
        }
    }
}

/// The request's host: the URI's authority, else its `Host` field.
fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok())
}

/// The path and query `reference` (a `Location` or `Content-Location` value) names, resolved
/// against the request's `path`, when it is on the request's origin: a path (absolute or
/// relative), or an `http`/`https` URI or network-path reference (`//host/path`) whose
/// authority is the request's `host` (compared case-insensitively). `None` for another origin,
/// another scheme, or no host to compare with.
fn same_origin_target(reference: &str, path: &str, host: Option<&str>) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or("").trim();
    let rest = if let Some(net) = reference.strip_prefix("//") {
        Some(net)
    } else if let Some((scheme, rest)) = reference.split_once(':')
        && !scheme.contains(['/', '?'])
    {
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        Some(rest.strip_prefix("//")?)
    } else {
        None
    };
    let target = match rest {
        Some(rest) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, target) = rest.split_at(end);
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
                return None;
            }
            if target.starts_with('/') {
                target.to_owned()
            } else {
                format!("/{target}")
            }
        }
        None if reference.starts_with('/') => reference.to_owned(),
        None if reference.is_empty() => return None,
        None if reference.starts_with('?') => format!("{path}{reference}"),
        None => {
            // A relative path: from the request path's last segment on.
            let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{dir}{reference}")
        }
    };
    Some(target)
}
