//! Wall-clock time in milliseconds since the Unix epoch, and clocks tests can move.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
///
/// State shared by instances through Redis (entry ages, session expiry, shared breaker
/// windows) is dated in wall-clock time: it must mean the same on every instance (their clocks
/// are assumed in sync, as with NTP). Layers take a clock so tests can move time without
/// sleeping: [`ManualClock`] moves when told, [`TokioClock`] with tokio's paused time.
/// Closures `Fn() -> u64` are clocks too.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

impl<F: Fn() -> u64 + Send + Sync + 'static> Clock for F {
    fn now_ms(&self) -> u64 {
        self()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The system's wall clock: [`SystemTime::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Milliseconds since the Unix epoch, now (0 for a clock set before 1970).
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemClock::now_ms()
    }
}

/// The wall time when it was made, plus tokio's monotonic time since then.
///
/// Monotonic in production (a wall-clock step does not move it), and it follows
/// `tokio::time::pause` / `advance` in tests. Must be made inside a tokio runtime.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the system's wall time.
    pub fn new() -> Self {
        Self {
            base_ms: SystemClock::now_ms(),
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.base);
        self.base_ms.saturating_add(millis(elapsed))
    }
}

/// A clock that only moves when told to; clones share the same time (governor's
/// `FakeRelativeClock` is the model).
///
/// ```
/// use std::time::Duration;
/// use tower_scale_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(shared.now_ms(), 3_000);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `now_ms` milliseconds since the epoch.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Moves the clock forward (saturating).
    pub fn advance(&self, by: Duration) {
        let by = millis(by);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock (it may go back: a wall clock can be stepped).
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now_ms()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let start = clock.now_ms();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms() - start, 90_000);
    }

    #[test]
    fn a_manual_clock_saturates_and_can_be_set() {
        let clock = ManualClock::new(u64::MAX - 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), u64::MAX);
        clock.set(5);
        assert_eq!(clock.now_ms(), 5);
        let f = || 42_u64;
        assert_eq!(Clock::now_ms(&f), 42);
    }

    #[test]
    fn the_system_clock_is_after_2026() {
        assert!(SystemClock.now_ms() > 1_767_225_600_000);
    }
}
