//! The clock a `MemoryStore` counts in.

use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// The time a [`MemoryStore`](crate::MemoryStore) counts in, as a governor clock.
///
/// Two sources:
/// - [`system`](Self::system): the CPU's time-stamp counter read through quanta (the clock
///   governor and tower_governor use by default; quanta falls back to the OS's monotonic clock
///   where the counter is not reliable). The cheapest to read: a decision reads it once.
/// - [`tokio`](Self::tokio): tokio's clock, which follows `tokio::time::pause` and `advance`,
///   so tests of time-based behaviour run without sleeping.
///
/// The [`default`](Self::default) is `system`, or `tokio` when this crate's `test-util`
/// feature is on: enable it in your `[dev-dependencies]` to test limits with paused time, as
/// tokio's own `test-util` does for `tokio::time`.
///
/// ```
/// use tower_scale_ratelimit::{LimiterClock, MemoryStore};
///
/// // Follows tokio's paused time, whatever the features.
/// let store = MemoryStore::new(100_000).with_clock(LimiterClock::tokio());
/// # let _ = store;
/// ```
#[derive(Clone, Debug)]
pub struct LimiterClock {
    source: ClockSource,
}

#[derive(Clone, Debug)]
enum ClockSource {
    System {
        clock: governor::clock::QuantaClock,
        base: governor::clock::QuantaInstant,
    },
    Tokio {
        base: tokio::time::Instant,
    },
}

impl LimiterClock {
    /// The CPU's time-stamp counter (quanta), starting now.
    pub fn system() -> Self {
        let clock = governor::clock::QuantaClock::default();
        let base = clock.now();
        Self {
            source: ClockSource::System { clock, base },
        }
    }

    /// tokio's clock (pausable in tests), starting now.
    pub fn tokio() -> Self {
        Self {
            source: ClockSource::Tokio {
                base: tokio::time::Instant::now(),
            },
        }
    }

    /// Whether this clock follows tokio's (pausable) time.
    pub fn is_tokio(&self) -> bool {
        matches!(self.source, ClockSource::Tokio { .. })
    }
}

impl Default for LimiterClock {
    /// [`system`](Self::system), or [`tokio`](Self::tokio) with feature `test-util`.
    fn default() -> Self {
        if cfg!(feature = "test-util") {
            Self::tokio()
        } else {
            Self::system()
        }
    }
}

/// An instant of [`LimiterClock`]: nanoseconds since the clock was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimiterInstant(u64);

impl LimiterInstant {
    /// Nanoseconds since the clock was made.
    #[inline]
    pub(crate) const fn as_nanos(self) -> u64 {
        self.0
    }
}

impl Add<Nanos> for LimiterInstant {
    type Output = Self;

    fn add(self, rhs: Nanos) -> Self {
        Self(self.0.saturating_add(rhs.as_u64()))
    }
}

impl Reference for LimiterInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.saturating_sub(duration.as_u64()))
    }
}

impl Clock for LimiterClock {
    type Instant = LimiterInstant;

    #[inline]
    fn now(&self) -> LimiterInstant {
        LimiterInstant(match &self.source {
            ClockSource::System { clock, base } => clock.now().duration_since(*base).as_u64(),
            ClockSource::Tokio { base } => {
                u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        })
    }
}
