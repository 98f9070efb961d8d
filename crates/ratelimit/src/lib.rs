//! Rate limiting as a tower layer, in memory for one instance or global across instances.
//!
//! # Overview
//!
//! - [`RateLimitLayer`] checks each request against a policy's [`Quota`]s (several per
//!   route, all enforced: e.g. 10/s and 1000/h) and answers `429` with `Retry-After` over the
//!   limit; every response carries the IETF `RateLimit-Policy` and `RateLimit` fields.
//! - Stores: [`MemoryStore`] (governor's GCRA, bounded number of keys, the embedded default)
//!   and `RedisStore` (feature `redis`): GCRA over every quota in one Lua script, one round
//!   trip per decision, Redis's own clock, keys expiring on their own, hash-tagged for Redis
//!   Cluster.
//! - Keys through [`KeyExtractor`]: [`PeerIp`], [`ClientIp`] behind trusted proxies
//!   (the one header they write, [`ForwardedHeader`], with a hop count or the proxies'
//!   address ranges; a spoofed or malformed header never picks another client's key), [`HeaderKey`] (API key), [`ExtensionKey`] (a user id set by an inner
//!   layer), [`GlobalKey`], or a closure. IPv6 clients are keyed by their /64.
//! - [`HybridStore`]: leases small allowances from the shared store and decides locally, an
//!   order of magnitude fewer round trips, the global count within a documented bound.
//! - Requests without a key: [`MissingKey`] (reject, or one shared bucket). A failing store:
//!   [`OnStoreError`] (by default, a local limiter on this instance's share of the quota;
//!   or admit everything, or 503). Request cost, dry-run mode, and
//!   [`count_if`](RateLimitLayer::count_if) to count only some outcomes (failed logins).
//! - Refused requests: [`DefaultRefusal`] (the status, an empty body) or any [`Refuse`]
//!   policy ([`refuse_with`](RateLimitLayer::refuse_with)), reasons `"rate-limited"`,
//!   `"missing-key"` and `"store-unavailable"`.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_scale_ratelimit::{HeaderKey, Quota, RateLimitLayer, RedisStore};
//! use tower_scale_redis::{RedisBackend, RedisConfig};
//!
//! # fn build() -> Result<Router, Box<dyn std::error::Error>> {
//! let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! // 100 requests per second per API key, bursts of 100, counted across every instance:
//! let limit = RateLimitLayer::new(RedisStore::new(backend), [Quota::per_second(100).burst(100)])?
//!     .key_with(HeaderKey("x-api-key".parse()?));
//! Ok(Router::new().route("/limited", get(|| async { "ok" })).layer(limit))
//! # }
//! ```
//!
//! # Testing with paused time
//!
//! A [`MemoryStore`] counts in quanta's clock (the CPU's time-stamp counter, as governor and
//! tower_governor do), which `tokio::time::pause` does not stop. To test limits with paused
//! and advanced time, turn on this crate's `test-util` feature in your `[dev-dependencies]`:
//! stores then count in tokio's clock by default. Or choose per store with
//! [`MemoryStore::with_clock`] and [`LimiterClock`].
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod client_ip;
mod config;
mod decide;
mod future;
mod headers;
mod key;
mod layer;
pub mod names;
mod policy;
mod quota;
mod service;
mod store;

#[doc(inline)]
pub use self::{
    client_ip::{ClientIp, ForwardedHeader},
    config::{
        AnyKey, ForwardedHeaderConfig, KeySource, MissingKeyConfig, OnStoreErrorConfig,
        RateLimitConfig,
    },
    future::ResponseFuture,
    key::{ExtensionKey, GlobalKey, HeaderKey, Key, KeyExtractor, PeerIp},
    layer::RateLimitLayer,
    policy::{CountAll, CountPolicy, MissingKey, OnStoreError},
    quota::{Quota, QuotaError},
    service::RateLimit,
    store::{Decision, HybridStore, LimiterClock, LimiterInstant, MemoryStore, Store},
};
#[doc(no_inline)]
pub use tower_scale_core::{
    BoxFuture, ConfigError, DefaultRefusal, Refusal, Refuse, StoreError, TextRefusal,
};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::store::RedisStore;
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use self::store::gcra_script_hash;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
