//! What the tower-scale middleware crates share: one clock, one store error, one refusal
//! policy, one reconnect backoff, and the marker that keeps personal responses out of shared
//! caches. Users meet these types through the layers' APIs; the crate is small on purpose
//! (as axum-core and tower-layer are).
//!
//! # Overview
//!
//! - [`Clock`]: wall-clock milliseconds, with [`SystemClock`], [`TokioClock`] (follows
//!   tokio's paused time) and [`ManualClock`] for tests.
//! - [`StoreError`]: the opaque error of every store, with `source()`,
//!   [`is_unavailable`](StoreError::is_unavailable) and [`is_corrupt`](StoreError::is_corrupt).
//! - [`Refuse`] and [`Refusal`]: the response of a request a layer refuses (rate limited,
//!   circuit open, overloaded, store down), status and body configurable, closures welcome;
//!   [`retry_after_secs`] rounds `Retry-After` the same way everywhere.
//! - [`ConfigError`]: a config value that cannot work, naming its field.
//! - [`Backoff`]: delays between reconnection attempts.
//! - [`PrivateMark`]: a request-scoped flag saying that the response is personal to its
//!   client (it created or changed a session) and must not be stored by a shared cache,
//!   whatever the order of the layers.
//! - [`MetricDef`]: the name, kind, labels and meaning of a metric a crate emits.
//! - [`BoxFuture`] and [`BoxError`].
//!
//! # Example
//!
//! A layer that makes a response personal marks the request; a cache outside it checks the
//! mark it found in the request once the response is there.
//!
//! ```
//! use tower_scale_core::PrivateMark;
//!
//! let mut request = http::Request::new(());
//! // The cache, before calling the inner service: make sure a mark is there, keep a clone.
//! let mark = PrivateMark::get_or_insert(request.extensions_mut());
//! // The session layer, inner, when the handler writes to the session:
//! request.extensions().get::<PrivateMark>().unwrap().set();
//! // The cache, with the response: do not store it.
//! assert!(mark.is_set());
//! ```

mod backoff;
mod clock;
mod error;
mod mark;
mod metric;
mod refusal;

pub use self::backoff::Backoff;
pub use self::clock::{Clock, ManualClock, SystemClock, TokioClock, millis};
pub use self::error::{BoxError, ConfigError, StoreError};
pub use self::mark::PrivateMark;
pub use self::metric::{MetricDef, MetricKind};
pub use self::refusal::{
    BoxFuture, DefaultRefusal, Refusal, Refuse, TextRefusal, retry_after_secs, retry_after_value,
};

/// Implements `get_ref`, `get_mut` and `into_inner` for a middleware service whose wrapped
/// service is the field `inner` (tower-http's `define_inner_service_accessors!`).
///
/// ```
/// struct Timeout<S> {
///     inner: S,
/// }
/// impl<S> Timeout<S> {
///     tower_scale_core::inner_service_accessors!();
/// }
/// let mut t = Timeout { inner: 1 };
/// *t.get_mut() += 1;
/// assert_eq!(*t.get_ref(), 2);
/// assert_eq!(t.into_inner(), 2);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the middleware, returning the wrapped service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
