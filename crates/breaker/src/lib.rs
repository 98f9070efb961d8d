//! A circuit breaker with resilience4j-grade semantics, usable on any future
//! ([`CircuitBreaker::call`]) and as a tower layer ([`BreakerLayer`]), so a failing
//! dependency fails fast instead of taking the service down.
//!
//! # Overview
//!
//! - States closed, open, half-open, plus forced-open and disabled operator switches
//!   ([`CircuitBreaker::force_open`], [`disable`](CircuitBreaker::disable),
//!   [`reset`](CircuitBreaker::reset), [`trip`](CircuitBreaker::trip)).
//! - Count-based or time-based sliding window ([`SlidingWindow`]); failure-rate and slow-call
//!   rate thresholds; a minimum number of calls before rates count.
//! - Wait in open fixed or growing on repeated openings; the open period can be set by the
//!   downstream's `Retry-After`; a fixed number of probe calls in half-open; a maximum wait in
//!   half-open so a breaker never stays stuck there.
//! - What counts as a failure is a policy: [`Outcome`] from a closure for
//!   [`CircuitBreaker::call_classified`], [`ClassifyResponse`] for the layer (default:
//!   errors and 5xx). Ignored outcomes are not recorded and give their half-open permit back.
//! - Every outcome carries the state generation it was admitted under: a late result never
//!   moves a newer state. Any failure in half-open reopens.
//! - One breaker per downstream host or route with [`KeyedBreakers`], bounded in number; their
//!   metrics are per group, not per key, so made-up keys cannot grow the metric series.
//! - Optional shared state across instances ([`SharedBreaker`] over a [`SharedState`]; the
//!   Redis implementation is `tower_scale_redis::RedisBreakerState`), with the local breaker
//!   still deciding when the store is unreachable.
//! - Metrics `breaker_state` and `breaker_transitions_total` (label `breaker`: the breaker's
//!   name, or a keyed group's name), [`BREAKER_KEYS`] for keyed groups; a `tracing` event per
//!   transition (naming the key).
//! - [`RetryPolicy`]: a `tower::retry::Policy` with exponential backoff and full jitter, max
//!   attempts, tower's retry budget, idempotent methods only by default, `Retry-After`
//!   honoured, bodies replayed up to a size cap. Put the breaker inside the retry layer, so a
//!   rejected call is not retried into an open breaker more than the policy allows.
//!
//! Closed-state admission and recording are lock-free for a count window.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use tower_scale_breaker::{BreakerConfig, CallError, CircuitBreaker};
//!
//! let mut config = BreakerConfig::default();
//! config.wait_in_open = Duration::from_secs(10);
//! let breaker = CircuitBreaker::new(config).unwrap();
//! match breaker.call(async { Ok::<_, std::io::Error>("payload") }).await {
//!     Ok(v) => assert_eq!(v, "payload"),
//!     Err(CallError::Rejected(r)) => println!("failing fast: {r}"),
//!     Err(CallError::Inner(e)) => println!("the call failed: {e}"),
//! }
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod breaker;
mod config;
mod future;
mod group;
mod keyed;
mod layer;
pub mod names;
mod outcome;
mod policy;
mod retry;
mod service;
mod shared;
mod state;
mod window;

#[doc(inline)]
pub use self::{
    breaker::{CircuitBreaker, Permit},
    config::{BreakerConfig, SlidingWindow},
    future::ResponseFuture,
    keyed::KeyedBreakers,
    layer::BreakerLayer,
    names::BREAKER_KEYS,
    outcome::{CallError, Outcome, Rejected, Snapshot},
    policy::{ClassifyResponse, ServerErrorsAsFailures, retry_after},
    retry::RetryPolicy,
    service::Breaker,
    shared::{SharedBreaker, SharedState},
    state::State,
};
#[doc(inline)]
pub use tower_scale_core::{BoxFuture, ConfigError, DefaultRefusal, Refusal, Refuse};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
