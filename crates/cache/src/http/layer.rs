//! `ResponseCacheLayer`: its constructors and setters, and the state its services share.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderName;
use tower_layer::Layer;

use super::config::{ResponseCacheConfig, Settings};
use super::key::{DefaultKey, MakeCacheKey};
use super::service::ResponseCache;
use crate::{Cache, ConfigError};

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

    /// A layer storing in `cache`, with the settings of a [`ResponseCacheConfig`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming an invalid field.
    pub fn from_config(cache: Cache, config: &ResponseCacheConfig) -> Result<Self, ConfigError> {
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
        self.settings_mut().set_ttl(ttl);
        self
    }

    /// Use the route's TTL even when the response has `s-maxage`/`max-age`.
    #[must_use]
    pub fn override_origin_ttl(mut self, yes: bool) -> Self {
        self.settings_mut().set_override_origin_ttl(yes);
        self
    }

    /// Stale-while-revalidate window of responses without the directive: a stale response
    /// is served at once while one background request refreshes it.
    #[must_use]
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.settings_mut().set_stale_while_revalidate(window);
        self
    }

    /// Stale-if-error window of responses without the directive: a stale response is served
    /// when the origin fails or answers 5xx.
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.settings_mut().set_stale_if_error(window);
        self
    }

    /// Largest body stored (default 1 MiB); larger bodies stream through uncached.
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.settings_mut().set_max_body_size(bytes);
        self
    }

    /// Statuses that may be stored.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.settings_mut().set_statuses(statuses);
        self
    }

    /// Use the cache for requests with `Authorization` (RFC 9111 §3.5 rules apply).
    #[must_use]
    pub fn cache_authorized(mut self, yes: bool) -> Self {
        self.settings_mut().set_cache_authorized(yes);
        self
    }

    /// Mark the route public: requests with `Cookie` use the cache.
    #[must_use]
    pub fn public(mut self, yes: bool) -> Self {
        self.settings_mut().set_public(yes);
        self
    }

    /// The response header carrying tags (default `surrogate-key`); `None` for none.
    #[must_use]
    pub fn tag_header(mut self, name: Option<HeaderName>) -> Self {
        self.settings_mut().set_tag_header(name);
        self
    }

    /// Whether a successful unsafe request (any method but `GET`, `HEAD`, `OPTIONS`, `TRACE`)
    /// purges its URI and the same-origin `Location`/`Content-Location` URIs (default true).
    #[must_use]
    pub fn invalidate_on_unsafe(mut self, yes: bool) -> Self {
        self.settings_mut().set_invalidate_on_unsafe(yes);
        self
    }

    /// Most `Vary` variants stored per resource (default 16); a response that would be one
    /// more is served, not stored (`Cache-Status` `detail=too-many-variants`).
    #[must_use]
    pub fn max_variants(mut self, n: usize) -> Self {
        self.settings_mut().set_max_variants(n);
        self
    }

    /// Longest cache key in bytes (default 1024); a request with a longer one bypasses the
    /// cache (`detail=key-too-long`).
    #[must_use]
    pub fn max_key_length(mut self, bytes: usize) -> Self {
        self.settings_mut().set_max_key_length(bytes);
        self
    }

    /// Most query parameters (default 32); a request with more bypasses the cache
    /// (`detail=too-many-params`).
    #[must_use]
    pub fn max_query_params(mut self, n: usize) -> Self {
        self.settings_mut().set_max_query_params(n);
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
        ResponseCache::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// What every service of a layer shares: built once, cloned as an `Arc` per service.
pub(super) struct Shared<K> {
    cache: Cache,
    settings: Settings,
    key: Arc<K>,
}

impl<K> Shared<K> {
    /// The cache entries are read from and stored in.
    pub(super) fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The validated settings.
    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The key policy.
    pub(super) fn key(&self) -> &K {
        &self.key
    }
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
