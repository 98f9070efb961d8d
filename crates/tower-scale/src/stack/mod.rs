//! Every layer, stacked in the right order, from one serde config (e.g. a TOML file).
//!
//! Each section of [`StackConfig`] is optional: a missing section leaves its layer out. With
//! a `[redis]` section (or `REDIS_URL`, see [`StackConfig::redis_from_env`]) the rate limit,
//! the sessions and the cache share state across instances through Redis; without one they
//! live in this process.
//!
//! # Order, outermost first, and why
//!
//! 1. **shutdown** (`InFlightLayer`): counts every request, so draining waits for all of them,
//!    and closes keep-alive connections while draining.
//! 2. **metrics**: sees every response, shed and rate-limited ones included, with the full
//!    latency.
//! 3. **pressure** (load shedding): refuses work before anything else is spent on it.
//! 4. **rate limit**: before any session read, so a flood of requests costs no session
//!    lookups.
//! 5. **sessions**: outside the cache, so a cache hit (a handler that never ran) touches no
//!    session and sets no cookie.
//! 6. **response cache**: outside compression, so the stored response is the encoded one and a
//!    hit is served without compressing again (keyed by the `Vary: Accept-Encoding` that
//!    compression adds).
//! 7. **compression**, innermost, next to the handlers.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_scale::stack::{Stack, StackConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = StackConfig::from_toml(r#"
//!     [shutdown]
//!     pre_stop_delay = "5s"
//!
//!     [metrics]
//!
//!     [rate_limit]
//!     quotas = [{ count = 100, period = "1s", burst = 200 }]
//!     key = { type = "header", name = "x-api-key" }
//!
//!     [session]
//!     ttl = "7days"
//!
//!     [cache]
//!     ttl = "30s"
//!
//!     [compression]
//! "#)?;
//! let stack = Stack::build(&config)?;
//! let app: Router = stack.apply(Router::new().route("/", get(|| async { "hello" })));
//! # Ok(()) }
//! ```

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Response;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use crate::cache::{Cache, CacheConfig, ResponseCacheConfig, ResponseCacheLayer};
use crate::compression::{CompressionConfig, CompressionLayer};
use crate::metrics::MetricsLayer;
use crate::offload::{PressureConfig, PressureLayer};
use crate::ratelimit::{RateLimitConfig, RateLimitLayer};
use crate::redis::{RedisBackend, RedisConfig};
use crate::session::{SessionConfig, SessionManagerLayer};
use crate::shutdown::{Shutdown, ShutdownConfig};

/// The whole stack's config: one optional section per layer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// The shared Redis backend; none: every layer keeps its state in this process.
    pub redis: Option<RedisConfig>,
    /// Graceful shutdown (in-flight tracking, drain, readiness).
    pub shutdown: Option<ShutdownConfig>,
    /// HTTP metrics (an empty `[metrics]` section turns them on).
    pub metrics: Option<MetricsSection>,
    /// Load shedding by runtime lag, in-flight requests or memory.
    pub pressure: Option<PressureConfig>,
    /// Rate limiting (global through Redis when there is a backend).
    pub rate_limit: Option<RateLimitConfig>,
    /// Sessions (in Redis when there is a backend).
    pub session: Option<SessionConfig>,
    /// The HTTP response cache (in Redis when there is a backend).
    pub cache: Option<CacheSection>,
    /// Response compression.
    pub compression: Option<CompressionConfig>,
}

/// The `[metrics]` section (no settings yet: its presence turns the layer on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {}

/// The `[cache]` section: the response cache's rules and the cache's tiers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheSection {
    /// Storability, TTLs, stale windows, size cap.
    #[serde(flatten)]
    pub response: ResponseCacheConfig,
    /// The local tier and the cross-instance lock (used with Redis only: without it the
    /// store is already in this process).
    pub tiers: CacheConfig,
    /// Bytes of the in-memory store when there is no Redis. Default 64 MiB.
    pub memory_bytes: Option<u64>,
}

/// A stack that could not be built; the message names the section.
#[derive(Debug, thiserror::Error)]
#[error("[{section}]: {message}")]
pub struct StackError {
    section: &'static str,
    message: String,
}

/// `text` with the password of every URL in it hidden ([`redact_url`](crate::redis::redact_url)):
/// a TOML error quotes the line it is on, which may be the `url` line.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']' | '}'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&crate::redis::redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl StackError {
    fn new(section: &'static str, e: impl std::fmt::Display) -> Self {
        Self {
            section,
            message: e.to_string(),
        }
    }

    /// The config section at fault.
    pub fn section(&self) -> &'static str {
        self.section
    }
}

impl StackConfig {
    /// Parses TOML; unknown keys are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Self, StackError> {
        toml::from_str(text).map_err(|e| StackError::new("toml", redact_urls(&e.to_string())))
    }

    /// Reads and parses a TOML file.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Self, StackError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| StackError::new("toml", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// Takes the Redis section from the environment (`REDIS_URL` and the other `REDIS_*`
    /// variables of [`RedisConfig::from_env`]) when set, over the file's.
    pub fn redis_from_env(mut self) -> Result<Self, StackError> {
        if let Some(redis) = RedisConfig::from_env().map_err(|e| StackError::new("redis", e))? {
            self.redis = Some(redis);
        }
        Ok(self)
    }
}

/// The layers built from a [`StackConfig`], ready to wrap a router.
#[derive(Clone, Debug)]
pub struct Stack {
    backend: Option<RedisBackend>,
    shutdown: Option<Shutdown>,
    metrics: Option<MetricsLayer>,
    pressure: Option<PressureLayer>,
    rate_limit: Option<RateLimitLayer<crate::ratelimit::AnyKey>>,
    session: Option<SessionManagerLayer>,
    cache: Option<ResponseCacheLayer>,
    /// Whether the cache has a local tier (then `/readyz` waits for its invalidation bus).
    cache_l1: bool,
    compression: Option<CompressionLayer>,
}

impl Stack {
    /// Builds every configured layer; no connection is opened yet.
    pub fn build(config: &StackConfig) -> Result<Self, StackError> {
        let backend = config
            .redis
            .clone()
            .map(RedisBackend::new)
            .transpose()
            .map_err(|e| StackError::new("redis", e))?;
        let rate_limit = config
            .rate_limit
            .as_ref()
            .map(|c| match &backend {
                Some(b) => {
                    RateLimitLayer::from_config(crate::ratelimit::RedisStore::new(b.clone()), c)
                }
                None => {
                    RateLimitLayer::from_config(crate::ratelimit::MemoryStore::new(1_000_000), c)
                }
            })
            .transpose()
            .map_err(|e| StackError::new("rate_limit", e))?;
        let session = config
            .session
            .as_ref()
            .map(|c| match &backend {
                Some(b) => {
                    SessionManagerLayer::from_config(crate::session::RedisStore::new(b.clone()), c)
                }
                None => SessionManagerLayer::from_config(crate::session::MemoryStore::new(), c),
            })
            .transpose()
            .map_err(|e| StackError::new("session", e))?;
        let cache_l1 = backend.is_some()
            && config
                .cache
                .as_ref()
                .is_some_and(|c| c.tiers.l1_max_bytes.is_some());
        let cache = config
            .cache
            .as_ref()
            .map(|c| {
                let mut tiers = c.tiers.clone();
                let builder = match &backend {
                    Some(b) => Cache::builder(crate::cache::RedisStore::new(b.clone())),
                    None => {
                        // In memory the store is already local and single-instance: no local
                        // tier or cross-instance lock to add.
                        tiers.l1_max_bytes = None;
                        tiers.lock = None;
                        Cache::builder(crate::cache::MemoryStore::new(
                            c.memory_bytes.unwrap_or(64 * 1024 * 1024),
                        ))
                    }
                };
                let cache = builder.config(tiers).build()?;
                ResponseCacheLayer::from_config(cache, &c.response)
            })
            .transpose()
            .map_err(|e| StackError::new("cache", e))?;
        let compression = config
            .compression
            .as_ref()
            .map(CompressionLayer::from_config)
            .transpose()
            .map_err(|e| StackError::new("compression", e))?;
        let pressure = config
            .pressure
            .as_ref()
            .map(PressureLayer::from_config)
            .transpose()
            .map_err(|e| StackError::new("pressure", e))?;
        Ok(Self {
            compression,
            cache_l1,
            shutdown: config.shutdown.clone().map(Shutdown::new),
            metrics: config.metrics.map(|_| MetricsLayer::new()),
            pressure,
            backend,
            rate_limit,
            session,
            cache,
        })
    }

    /// Wraps `router` in every configured layer, in the documented order.
    ///
    /// The layers are composed into one and applied with a single `Router::layer`: each
    /// `Router::layer` call wraps every route in one more boxed service, which costs a clone of
    /// that boxed service and a boxed future per request and layer.
    pub fn apply<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        // Compression and the cache change the response body's type; with the layer absent
        // the body stays axum's, so both branches answer axum bodies. axum boxes the body once
        // anyway; a body already boxed is not boxed again.
        let compression = self.compression.clone().map(|l| {
            ServiceBuilder::new()
                .map_response(into_axum_body as fn(_) -> _)
                .layer(l)
        });
        let cache = self.cache.clone().map(|l| {
            ServiceBuilder::new()
                .map_response(into_axum_body as fn(_) -> _)
                .layer(l)
        });
        router.layer(
            ServiceBuilder::new()
                .option_layer(self.shutdown.as_ref().map(Shutdown::layer))
                .option_layer(self.metrics.clone())
                .option_layer(self.pressure.clone())
                .option_layer(self.rate_limit.clone())
                .option_layer(self.session.clone())
                .option_layer(cache)
                .option_layer(compression),
        )
    }

    /// `/livez` and `/readyz` (ready until shutdown starts, while Redis, if any, answers, and
    /// while the cache's invalidation bus is subscribed, when it has a local tier), to merge
    /// outside the rate limit and the load shedding. `None` without a `[shutdown]` section.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Option<Router<S>> {
        let shutdown = self.shutdown.as_ref()?;
        let mut health = shutdown.health();
        if let Some(redis) = self.backend.clone() {
            health = health.check("redis", move || {
                let redis = redis.clone();
                async move { redis.ping().await.map(drop).map_err(|e| e.to_string()) }
            });
        }
        if let Some(cache) = self.cache.as_ref().map(|l| l.cache().clone())
            && self.cache_l1
        {
            // An instance whose local tier cannot hear purges must not serve: it could serve
            // a purged entry.
            health = health.check("cache", move || {
                let cache = cache.clone();
                async move {
                    if cache.ready(std::time::Duration::from_secs(1)).await {
                        Ok(())
                    } else {
                        Err("the cache's invalidation bus is not subscribed".to_owned())
                    }
                }
            });
        }
        Some(health.routes())
    }

    /// Feeds the load shedding the runtime probe's lag (its `max_lag` threshold needs it).
    #[must_use]
    pub fn lag_from(mut self, watch: crate::metrics::LagWatch) -> Self {
        self.pressure = self.pressure.map(|p| p.lag_from(watch));
        self
    }

    /// The shared Redis backend, when configured.
    pub fn backend(&self) -> Option<&RedisBackend> {
        self.backend.as_ref()
    }

    /// The shutdown coordinator, when configured (listen for signals, run the server).
    pub fn shutdown(&self) -> Option<&Shutdown> {
        self.shutdown.as_ref()
    }

    /// The session layer, when configured (e.g. for `sessions().destroy_all_for_user`).
    pub fn session(&self) -> Option<&SessionManagerLayer> {
        self.session.as_ref()
    }

    /// The response cache layer, when configured (e.g. to purge through its cache).
    pub fn cache(&self) -> Option<&ResponseCacheLayer> {
        self.cache.as_ref()
    }
}

/// A response with its body boxed into axum's `Body` (not boxed again when it already is one).
fn into_axum_body<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    response.map(Body::new)
}
