//! Delays between reconnection attempts.

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Exponential delays between reconnection attempts: `min`, doubled after each failure up to
/// `max`, back to `min` after a success.
///
/// ```
/// use std::time::Duration;
/// use tower_scale_core::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(150));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(150));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `min` up to `max` (`max` below `min` is taken as `min`).
    pub const fn new(min: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < min.as_nanos() {
            min
        } else {
            max
        };
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// A success: the next delay is the minimum again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// Waits [`next_delay`](Self::next_delay), unless `stop` finishes first: `false` then
    /// (also when both finish in the same poll).
    pub async fn wait_or<F: Future>(&mut self, stop: F) -> bool {
        let delay = self.next_delay();
        let mut stop = pin!(stop);
        let mut sleep = pin!(tokio::time::sleep(delay));
        poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                Poll::Ready(false)
            } else {
                sleep.as_mut().poll(cx).map(|()| true)
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_the_delay_unless_stopped() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let start = tokio::time::Instant::now();
        assert!(backoff.wait_or(std::future::pending::<()>()).await);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(!backoff.wait_or(async {}).await);
        assert_eq!(backoff.next_delay(), Duration::from_secs(4));
        assert_eq!(backoff.next_delay(), Duration::from_secs(4));
        // Both ready in the same poll: the stop wins.
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(!zero.wait_or(async {}).await);
        assert!(zero.wait_or(std::future::pending::<()>()).await);
        let odd = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            odd,
            Backoff::new(Duration::from_secs(2), Duration::from_secs(2))
        );
    }
}
