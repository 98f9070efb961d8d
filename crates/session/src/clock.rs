use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Wall-clock milliseconds that advance with tokio's clock.
///
/// Session expiry is absolute time (it must mean the same on every instance), so it is
/// measured in milliseconds since the Unix epoch. Reading it as the wall time at start plus
/// tokio's monotonic time since then keeps it monotonic in production and lets tests pause
/// and advance it with `tokio::time::pause` / `advance`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base_millis: u64,
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let base_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            base_millis,
            base: Instant::now(),
        }
    }

    pub(crate) fn now_millis(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.base);
        self.base_millis
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}
