//! The serde config of the response cache, and the validated settings a layer runs with.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tower_scale_core::millis;

use super::policy::Rules;
use super::values::{self, HitStatuses};
use crate::ConfigError;

/// The serde form of a [`ResponseCacheLayer`](crate::ResponseCacheLayer)'s settings.
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
    /// 501 (RFC 9110's heuristically cacheable statuses). With `any_status`, only the
    /// statuses stored without an explicit lifetime (the route's `ttl`, heuristics).
    pub statuses: Vec<u16>,
    /// Store a response of any final status but 206 and 304 when it has an explicit lifetime
    /// (`s-maxage`, `max-age`, `Expires`, a targeted field), as RFC 9111 §3 allows. Default
    /// false: `statuses` only.
    pub any_status: bool,
    /// Heuristic freshness (RFC 9111 §4.2.2): a response with `Last-Modified` and no explicit
    /// lifetime (of a status in `statuses`, or `public`) is fresh for a tenth of the time since
    /// it was modified. Default false.
    pub heuristic: bool,
    /// The longest heuristic lifetime. Default 1 day.
    #[serde(with = "humantime_serde")]
    pub heuristic_max: Duration,
    /// How long a stale response with a validator (`ETag`, `Last-Modified`) is kept past its
    /// stale windows, to be revalidated with a conditional request (a `304` refreshes it).
    /// With it, `no-cache` responses with a validator are stored and revalidated on every use.
    /// Default 0: not kept, `no-cache` responses not stored.
    #[serde(with = "humantime_serde")]
    pub revalidate_for: Duration,
    /// Read `CDN-Cache-Control` (RFC 9213): when valid, it replaces `Cache-Control` and
    /// `Expires` for this cache. Default true.
    pub cdn_cache_control: bool,
    /// A targeted field of your own (e.g. `edge-cache-control`), read before
    /// `CDN-Cache-Control`. Default none. Targeted fields are not passed downstream.
    pub targeted_field: Option<String>,
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
            any_status: false,
            heuristic: false,
            heuristic_max: Duration::from_secs(86_400),
            revalidate_for: Duration::ZERO,
            cdn_cache_control: true,
            targeted_field: None,
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

impl ResponseCacheConfig {
    /// The "standards" preset: the defaults plus what RFC 9111 lets a shared cache do beyond
    /// them: heuristic freshness, any status with an explicit lifetime, and stale responses
    /// with a validator kept an hour for revalidation.
    ///
    /// ```
    /// let c = tower_scale_cache::ResponseCacheConfig::standards();
    /// assert!(c.heuristic && c.any_status);
    /// ```
    pub fn standards() -> Self {
        Self {
            any_status: true,
            heuristic: true,
            revalidate_for: Duration::from_secs(3600),
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Settings {
    route_ttl: Option<u64>,
    override_origin_ttl: bool,
    swr_ms: u64,
    sie_ms: u64,
    max_body: usize,
    statuses: Arc<[u16]>,
    any_status: bool,
    heuristic_max_secs: Option<u64>,
    keep_ms: u64,
    /// Targeted fields in the order they are read.
    targeted: Arc<[HeaderName]>,
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
    pub(super) fn from_config(c: &ResponseCacheConfig) -> Result<Self, ConfigError> {
        let tag_header = match &c.tag_header {
            None => None,
            Some(h) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::new("tag_header", format_args!("{h:?} is not a header name"))
            })?),
        };
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            return Err(ConfigError::new(
                "name",
                format_args!("{:?} is not a token", c.name),
            ));
        }
        if c.statuses.iter().any(|s| StatusCode::from_u16(*s).is_err()) {
            return Err(ConfigError::new("statuses", "not an HTTP status"));
        }
        let mut targeted = Vec::new();
        if let Some(f) = &c.targeted_field {
            targeted.push(HeaderName::from_bytes(f.as_bytes()).map_err(|_| {
                ConfigError::new("targeted_field", format_args!("{f:?} is not a header name"))
            })?);
        }
        if c.cdn_cache_control {
            targeted.push(CDN_CACHE_CONTROL);
        }
        Ok(Self {
            route_ttl: c.ttl.map(millis),
            override_origin_ttl: c.override_origin_ttl,
            swr_ms: millis(c.stale_while_revalidate),
            sie_ms: millis(c.stale_if_error),
            max_body: c.max_body_size,
            statuses: c.statuses.clone().into(),
            any_status: c.any_status,
            heuristic_max_secs: c.heuristic.then_some(c.heuristic_max.as_secs()),
            keep_ms: millis(c.revalidate_for),
            targeted: targeted.into(),
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

    /// Why a `GET`/`HEAD` request is not looked up because of its credentials (`Cookie` on a
    /// route that is not public, `Authorization` unless allowed): its `Cache-Status`.
    #[inline]
    pub(super) fn bypass(&self, headers: &HeaderMap) -> Option<&'static str> {
        if !self.public && headers.contains_key(header::COOKIE) {
            Some("fwd=bypass; detail=cookie")
        } else if !self.cache_authorized && headers.contains_key(header::AUTHORIZATION) {
            Some("fwd=bypass; detail=authorization")
        } else {
            None
        }
    }

    /// Why a request with a key of `key_len` bytes and `query` is not looked up (a key or a
    /// query over the limits): its `Cache-Status`.
    #[inline]
    pub(super) fn key_refusal(&self, key_len: usize, query: Option<&str>) -> Option<&'static str> {
        if key_len > self.max_key_length {
            Some("fwd=bypass; detail=key-too-long")
        } else if too_many_params(query, self.max_query_params) {
            Some("fwd=bypass; detail=too-many-params")
        } else {
            None
        }
    }

    /// The `Cache-Status` of a fresh hit with `secs` seconds left.
    #[inline]
    pub(super) fn hit_status(&self, secs: u64) -> HeaderValue {
        self.hit_statuses.get(secs)
    }

    /// The cache's name in `Cache-Status`.
    #[inline]
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The response header carrying tags, if any.
    #[inline]
    pub(super) fn tag_header(&self) -> Option<&HeaderName> {
        self.tag_header.as_ref()
    }

    /// Whether successful unsafe requests purge.
    #[inline]
    pub(super) fn invalidate_on_unsafe(&self) -> bool {
        self.invalidate_on_unsafe
    }

    /// Most `Vary` variants stored per resource.
    #[inline]
    pub(super) fn max_variants(&self) -> usize {
        self.max_variants
    }

    /// Largest body stored.
    #[inline]
    pub(super) fn max_body(&self) -> usize {
        self.max_body
    }

    pub(super) fn set_ttl(&mut self, ttl: Duration) {
        self.route_ttl = Some(millis(ttl));
    }

    pub(super) fn set_override_origin_ttl(&mut self, yes: bool) {
        self.override_origin_ttl = yes;
    }

    pub(super) fn set_stale_while_revalidate(&mut self, window: Duration) {
        self.swr_ms = millis(window);
    }

    pub(super) fn set_stale_if_error(&mut self, window: Duration) {
        self.sie_ms = millis(window);
    }

    pub(super) fn set_max_body_size(&mut self, bytes: usize) {
        self.max_body = bytes;
    }

    pub(super) fn set_statuses(&mut self, statuses: impl IntoIterator<Item = StatusCode>) {
        self.statuses = statuses.into_iter().map(|s| s.as_u16()).collect();
    }

    pub(super) fn set_cache_authorized(&mut self, yes: bool) {
        self.cache_authorized = yes;
    }

    pub(super) fn set_public(&mut self, yes: bool) {
        self.public = yes;
    }

    pub(super) fn set_tag_header(&mut self, name: Option<HeaderName>) {
        self.tag_header = name;
    }

    pub(super) fn set_invalidate_on_unsafe(&mut self, yes: bool) {
        self.invalidate_on_unsafe = yes;
    }

    pub(super) fn set_max_variants(&mut self, n: usize) {
        self.max_variants = n;
    }

    pub(super) fn set_max_key_length(&mut self, bytes: usize) {
        self.max_key_length = bytes;
    }

    pub(super) fn set_max_query_params(&mut self, n: usize) {
        self.max_query_params = n;
    }

    /// The targeted cache-control fields, never passed downstream.
    #[inline]
    pub(super) fn targeted(&self) -> &[HeaderName] {
        &self.targeted
    }

    pub(super) fn rules(&self, authorized: bool) -> Rules<'_> {
        Rules {
            statuses: &self.statuses,
            any_status: self.any_status,
            heuristic_max_secs: self.heuristic_max_secs,
            keep_ms: self.keep_ms,
            targeted: &self.targeted,
            route_ttl: self.route_ttl,
            override_origin_ttl: self.override_origin_ttl,
            swr_ms: self.swr_ms,
            sie_ms: self.sie_ms,
            authorized,
        }
    }
}

/// The targeted field of CDNs and other server-side shared caches (RFC 9213).
pub(super) const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Whether `query` has more than `max` (non-empty) parameters.
fn too_many_params(query: Option<&str>, max: usize) -> bool {
    // Fewer bytes than `max + 1` parameters take: nothing to count.
    query.is_some_and(|q| q.len() > 2 * max && q.split('&').filter(|p| !p.is_empty()).count() > max)
}
