//! Scaling middleware for tower and axum services that run as many instances behind a load
//! balancer: each concern is its own crate, re-exported here behind a cargo feature of the
//! same name.
//!
//! # Feature Flags
//!
//! None is on by default. Redis is opt-in: without `redis`, `ratelimit`, `session`, `cache`
//! and `pubsub` are in memory only and the `redis` crate is not built.
//!
//! | Name | Description | Default? |
//! |---|---|---|
//! | `redis` | `tower_scale::redis`: the shared Redis backend (config, connections, timeouts, scripts, keys, health), and the Redis stores of `ratelimit`, `session`, `cache` and `pubsub` when they are on | No |
//! | `redis-tls` | `redis` with `rediss://` URLs: TLS through rustls (ring), system roots or a CA file, client certificates | No |
//! | `metrics` | `tower_scale::metrics`: Prometheus metrics layer, runtime scheduling-lag probe, `/metrics` handler | No |
//! | `offload` | `tower_scale::offload`: CPU work off the async workers, load shedding by lag, in-flight requests or memory | No |
//! | `replica` | `tower_scale::replica`: read/write routing to primary and replicas, read-your-writes across instances | No |
//! | `breaker` | `tower_scale::breaker`: circuit breaker (future wrapper and layer), keyed breakers | No |
//! | `ratelimit` | `tower_scale::ratelimit`: rate limiting in memory (global through Redis with `redis`) | No |
//! | `shutdown` | `tower_scale::shutdown`: graceful shutdown (readiness, drain deadline, tasks, hooks), health routes | No |
//! | `compression` | `tower_scale::compression`: compression preset over tower-http, bounded request decompression | No |
//! | `session` | `tower_scale::session`: sessions in memory (shared through Redis with `redis`), signed cookies, log-out-everywhere | No |
//! | `cache` | `tower_scale::cache`: cache-aside (typed single-flight API and RFC 9111 response cache), in memory or in Redis with `redis` | No |
//! | `pubsub` | `tower_scale::pubsub`: pub/sub fan-out, in one process or across instances with `redis` (Streams history) | No |
//! | `stack` | `tower_scale::stack`: every layer in the right order from one TOML config (turns on `redis`) | No |
//! | `full` | every crate and the stack | No |
//! | `test-util` | in-memory rate limits count in tokio's pausable time, for `[dev-dependencies]` | No |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "redis")] {
//! use tower_scale::redis::{RedisBackend, RedisConfig};
//!
//! // Building validates the config and opens no connection yet.
//! let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379")).unwrap();
//! assert_eq!(backend.keys().key("cache", "k"), "ts:cache:k");
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The shared Redis backend: `tower-scale-redis`.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use tower_scale_redis as redis;

/// Prometheus metrics and the runtime probe: `tower-scale-metrics`.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[doc(inline)]
pub use tower_scale_metrics as metrics;

/// CPU offload and load shedding: `tower-scale-offload`.
#[cfg(feature = "offload")]
#[cfg_attr(docsrs, doc(cfg(feature = "offload")))]
#[doc(inline)]
pub use tower_scale_offload as offload;

/// Read/write routing: `tower-scale-replica`.
#[cfg(feature = "replica")]
#[cfg_attr(docsrs, doc(cfg(feature = "replica")))]
#[doc(inline)]
pub use tower_scale_replica as replica;

/// Rate limiting: `tower-scale-ratelimit`.
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
#[doc(inline)]
pub use tower_scale_ratelimit as ratelimit;

/// Compression: `tower-scale-compression`.
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
#[doc(inline)]
pub use tower_scale_compression as compression;

/// Graceful shutdown: `tower-scale-shutdown`.
#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
#[doc(inline)]
pub use tower_scale_shutdown as shutdown;

/// Sessions: `tower-scale-session`.
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
#[doc(inline)]
pub use tower_scale_session as session;

/// Cache-aside and the HTTP response cache: `tower-scale-cache`.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
#[doc(inline)]
pub use tower_scale_cache as cache;

/// Pub/sub fan-out: `tower-scale-pubsub`.
#[cfg(feature = "pubsub")]
#[cfg_attr(docsrs, doc(cfg(feature = "pubsub")))]
#[doc(inline)]
pub use tower_scale_pubsub as pubsub;

#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub mod stack;

/// Circuit breaker: `tower-scale-breaker`.
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
#[doc(inline)]
pub use tower_scale_breaker as breaker;

mod catalog;
pub use catalog::metrics_catalog;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
