//! What a call's result means ([`Outcome`]), a rejected call ([`Rejected`], [`CallError`]),
//! and the window's counts ([`Snapshot`]).

use std::fmt;
use std::time::Duration;

use crate::state::State;

/// The result of a call, as a classifier sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed. `retry_after` (e.g. from the downstream's `Retry-After`) sets the open
    /// period if this failure opens the breaker.
    Failure {
        /// How long the downstream asked to be left alone.
        retry_after: Option<Duration>,
    },
    /// The call says nothing about the downstream's health (e.g. a 404, a cancelled call): it
    /// is not recorded, and in half-open it gives its permit back.
    Ignored,
}

impl Outcome {
    /// A failure without `Retry-After`.
    pub const FAILURE: Self = Self::Failure { retry_after: None };
}

/// A call was rejected because the breaker is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    state: State,
    retry_after: Option<Duration>,
}

impl Rejected {
    pub(crate) const fn new(state: State, retry_after: Option<Duration>) -> Self {
        Self { state, retry_after }
    }

    /// The state that rejected the call (open, half-open with no permit left, forced open).
    pub fn state(&self) -> State {
        self.state
    }

    /// How long until the breaker lets probes through, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}", self.state.as_str())?;
        if let Some(d) = self.retry_after {
            write!(f, "; retry after {d:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): rejected, or the call's own error.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker rejected the call; it was not made.
    #[error(transparent)]
    Rejected(Rejected),
    /// The call was made and failed.
    #[error("{0}")]
    Inner(E),
}

/// Rates over the sliding window, as [`CircuitBreaker::snapshot`](crate::CircuitBreaker::snapshot) reads them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
}
