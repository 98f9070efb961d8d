//! Redis cache-aside for tower and axum: a typed get-or-fetch API with single-flight, and an
//! RFC 9111 HTTP response cache layer, sharing one store and an optional local tier that is
//! invalidated across instances.
//!
//! # Overview
//!
//! - [`Cache`]: the handle. [`Cache::get_or_fetch`] returns a cached serde value or runs the
//!   fetch **once** for all concurrent callers of the instance (single-flight), and with the
//!   cross-instance lock ([`LockConfig`]) once for all instances, the others waiting briefly
//!   for its entry or serving a stale one. [`Cache::get_or_fetch_bytes`] does the same for
//!   bytes stored as they are, without serde. [`Cache::invalidate`] and
//!   [`Cache::invalidate_tag`] purge.
//! - [`ResponseCacheLayer`]: caches `GET`/`HEAD` responses as a shared cache (RFC 9111):
//!   `Cache-Control` (`no-store`, `private`, `no-cache`, `max-age`, `s-maxage`,
//!   `must-revalidate`, `must-understand`), `Expires`, the origin's `Age` and `Date`,
//!   heuristic freshness, `CDN-Cache-Control` and a targeted field of your own (RFC 9213),
//!   revalidation of stale entries with a conditional request (a `304` refreshes the stored
//!   headers; [`ResponseCacheConfig::standards`] turns it on), `If-Modified-Since` and single
//!   byte ranges answered from the store, never a `Set-Cookie` response nor `Vary: *` nor a response made
//!   personal by an inner layer (`tower_scale_core::PrivateMark`), requests with
//!   `Authorization` or `Cookie` bypassed unless configured, configured statuses only, a body
//!   size cap (larger bodies stream through). Keys are the path and normalised query plus the
//!   request headers named by the response's `Vary`, or your [`MakeCacheKey`].
//!   `stale-while-revalidate` (stale served, one background refresh), `stale-if-error`,
//!   `Age` and `Cache-Status` (RFC 9211), `304` for a matching `If-None-Match`. Tags from a
//!   response header (`Surrogate-Key`) or [`CacheTags`]; a successful unsafe request purges
//!   its URI. Bounded per client: `Accept-Encoding` variants are the negotiated coding, and
//!   variants per resource, key length and query parameters have limits.
//! - Stores: [`MemoryStore`] (the default for one process) and `RedisStore` (feature
//!   `redis`): one Redis string per entry (a hit is one `GET`), in a compact binary encoding
//!   decoded without copies; the keys of one resource share a hash tag, so every script runs
//!   on Redis Cluster.
//! - The local tier ([`CacheBuilder::l1`]): decoded entries in process memory, invalidated
//!   over Redis pub/sub with acknowledgements. When a purge returns `Ok`, no instance serves
//!   the purged entry any more; see [`Cache::invalidate`] for the exact guarantee.
//! - Redis failing: lookups miss, stores are skipped, and the origin answers, each bounded by
//!   the backend's command timeout (and its circuit breaker). No request fails because of
//!   the cache.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower_scale_cache::{Cache, LockConfig, RedisStore, ResponseCacheLayer};
//! use tower_scale_redis::{RedisBackend, RedisConfig};
//!
//! # fn build() -> Result<Router, Box<dyn std::error::Error>> {
//! let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! let cache = Cache::builder(RedisStore::new(backend))
//!     .l1(32 * 1024 * 1024)          // local tier, invalidated across instances
//!     .lock(LockConfig::default())   // one origin call per key across instances
//!     .build()?;
//! let layer = ResponseCacheLayer::new(cache)
//!     .ttl(Duration::from_secs(60))
//!     .stale_while_revalidate(Duration::from_secs(10));
//! Ok(Router::new().route("/cached/{id}", get(|| async { "slow" })).layer(layer))
//! # }
//! ```
//!
//! # Layer order
//!
//! Put the cache **outside** compression (`.layer(compression).layer(cache)` in axum, the
//! last layer added runs first): the stored response is the encoded one, keyed by the
//! `Vary: Accept-Encoding` that compression adds, and a hit is served without compressing
//! again.
//!
//! # Feature flags
//!
//! | Name | Description | Default? |
//! |---|---|---|
//! | `redis` | `RedisStore`, the cross-instance lock on Redis, the invalidation bus of the local tier | yes |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

#[cfg(feature = "redis")]
mod bus;
mod cache;
mod entry;
mod error;
mod flight;
mod http;
mod l1;
pub mod names;
mod store;

#[doc(inline)]
pub use self::{
    cache::{Cache, CacheBuilder, CacheConfig, FetchOptions, LockConfig},
    error::Error,
    http::{
        CACHE_STATUS, CacheKey, CacheTags, DefaultKey, MakeCacheKey, ResponseBody, ResponseCache,
        ResponseCacheConfig, ResponseCacheLayer, ResponseFuture,
    },
    store::{MemoryStore, RedisStoreConfig, Store},
};
// Shared with the other tower-scale crates: the wall clock that dates entries (tests move a
// `ManualClock` instead of sleeping), the store error, boxed futures and config errors.
#[doc(inline)]
pub use tower_scale_core::{
    BoxError, BoxFuture, Clock, ConfigError, ManualClock, StoreError, SystemClock,
};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::store::RedisStore;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
