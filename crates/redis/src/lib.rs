//! The shared Redis backend of tower-scale: the one place that talks to Redis for the cache,
//! session and rate-limit crates.
//!
//! # Overview
//!
//! - [`RedisConfig`]: URL, pool size, timeouts, key prefix, standalone or Redis Cluster;
//!   serde-deserializable and readable from `REDIS_URL` and friends
//!   ([`RedisConfig::from_env`]). A bad value is an [`Error::Config`] naming the field.
//! - [`RedisBackend`]: multiplexed connections (the default, measured faster) or a
//!   deadpool-redis pool, on one server or a cluster. Every command's wait for Redis is
//!   bounded by the configured timeout (by a watchdog per connection in the default mode,
//!   with no timer per command), however the server trickles its reply; connections reopen
//!   by themselves after a restart.
//! - Lua scripts through [`RedisBackend::invoke`]: `EVALSHA`, with the script reloaded
//!   transparently on `NOSCRIPT`.
//! - [`Keys`]: `<prefix>:<concern>:<key>`, with hash tags for keys a script touches
//!   together, so every script runs on Redis Cluster.
//! - A health probe, [`RedisBackend::ping`], for readiness checks.
//! - TLS and ACL users: `rediss://` URLs (feature `tls`, on by default: rustls with ring),
//!   trusting the system's roots or `tls_ca_file`, with a client certificate for mutual TLS
//!   (`tls_cert_file`, `tls_key_file`), in every connection mode; `redis://user:password@host`
//!   logs in as an ACL user.
//! - [`redact_url`]: a Redis URL with its password hidden, for logs and errors; the config's
//!   `Debug` output and the backend's errors and log lines use it.
//! - Metrics through the `metrics` facade: [`REDIS_COMMAND_DURATION_SECONDS`] (histogram) and
//!   [`REDIS_COMMAND_ERRORS_TOTAL`] (counter by `kind`); a `debug` tracing event per failure.
//!
//! # Example
//!
//! ```no_run
//! use tower_scale_redis::{RedisBackend, RedisConfig, redis};
//!
//! # async fn run() -> Result<(), tower_scale_redis::Error> {
//! // REDIS_URL=redis://127.0.0.1:6379 REDIS_COMMAND_TIMEOUT=200ms
//! let config = RedisConfig::from_env()?.unwrap_or_default();
//! let backend = RedisBackend::new(config)?;
//! backend.ping().await?;
//! let hits: i64 = backend
//!     .query(redis::cmd("INCR").arg(backend.keys().key("demo", "hits")))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Failure behaviour
//!
//! | Redis is… | what a command returns |
//! |---|---|
//! | down (connection refused) | an error at once ([`Error::is_unavailable`]) |
//! | hung or paused (`SIGSTOP`), the network drops packets, or a reply trickles in slower than `command_timeout` | [`Error::Timeout`] within `command_timeout` (default mode: after nine tenths to all of it, see [`RedisBackend`]) |
//! | restarted | the command in flight fails; the connection reopens by itself and later commands succeed |
//! | flushed its scripts | nothing visible: the script is reloaded and the call repeated |
//! | found down or hung by the circuit breaker (feature `breaker`, on by default) | [`Error::CircuitOpen`] at once, without sending; probes find out when Redis is back |
//!
//! The crates built on this one decide, per feature, whether such an error fails open or
//! closed; each documents its choice.
//!
//! The `redis` crate is re-exported so that commands are built with the same version the
//! backend runs them with.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod backend;
#[cfg(feature = "breaker")]
mod breaker_state;
mod config;
mod error;
mod keys;
mod link;
pub mod names;
mod redact;
mod tls;
mod tracking;

#[doc(inline)]
pub use self::{
    backend::RedisBackend,
    config::{ConnectionKind, Mode, RedisConfig},
    error::Error,
    keys::Keys,
    names::{REDIS_COMMAND_DURATION_SECONDS, REDIS_COMMAND_ERRORS_TOTAL},
    redact::redact_url,
    tracking::{Invalidations, Stamp, TRACKING_CLIENT_NAME},
};

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
#[doc(inline)]
pub use self::breaker_state::RedisBreakerState;

pub use redis;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
