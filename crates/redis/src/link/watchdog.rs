//! The watchdog of a link's connection and the counters it reads: how long the oldest command
//! in flight has waited, without a timer or a timestamp per command.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::Link;

/// The watchdog looks at a connection this many times per `command_timeout`; a command still
/// waiting at the this-many-th look after the one before which it began is overdue: it began
/// after that look, so it has waited between nine tenths of `command_timeout` and all of it.
pub(super) const TICKS_PER_TIMEOUT: u32 = 10;
/// Look periods whose commands are counted apart (a ring, indexed by look number): more than
/// the [`TICKS_PER_TIMEOUT`] + 1 periods that can hold commands not yet judged.
const PERIODS: usize = 16;

/// Counts a command as in flight until dropped (cancelled commands included).
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

/// The commands in flight on a link, counted by the watchdog's look period in which each
/// began: what tells the watchdog how long the oldest one has waited, without a timer or a
/// timestamp per command.
pub(super) struct InFlightByPeriod {
    /// The number of the current look period: the looks taken so far.
    period: AtomicU64,
    /// Commands in flight by `period % PERIODS` at their start.
    counts: [AtomicUsize; PERIODS],
}

impl InFlightByPeriod {
    pub(super) fn new() -> Self {
        Self {
            period: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// Counts one command, in the current period, until the guard is dropped.
    #[inline]
    pub(super) fn begin(&self) -> InFlight<'_> {
        let count = self.count(self.period.load(Ordering::Relaxed));
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }

    /// One look of the watchdog: starts the next period, and tells whether a command that
    /// began [`TICKS_PER_TIMEOUT`] periods ago (or earlier, when a period's count was caught
    /// late) is still in flight.
    pub(super) fn look(&self) -> bool {
        let now = self.period.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(judged) = now.checked_sub(u64::from(TICKS_PER_TIMEOUT)) else {
            return false;
        };
        self.count(judged).load(Ordering::Relaxed) > 0
    }

    /// The count of the commands that began in look period `period`.
    #[inline]
    fn count(&self, period: u64) -> &AtomicUsize {
        // `PERIODS` divides 2^32: the remainder is the same whether the cast keeps 32 bits
        // of `period` or all 64.
        &self.counts[period as usize % PERIODS]
    }
}

impl Drop for InFlight<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Watches connection `generation`: every `command_timeout / 10` it takes a look, and when a
/// command that began [`TICKS_PER_TIMEOUT`] looks ago is still waiting, the connection is
/// hung and is stopped. Ends when the connection or the link is gone.
pub(super) async fn watchdog(link: Weak<Link>, generation: u64, timeout: Duration) {
    let tick = (timeout / TICKS_PER_TIMEOUT).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + tick, tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(link) = link.upgrade() else { return };
        if link.overdue() {
            link.hung(generation);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{InFlightByPeriod, TICKS_PER_TIMEOUT};

    /// Looks until one finds an overdue command, at most `limit`.
    fn looks_until_overdue(in_flight: &InFlightByPeriod, limit: u32) -> Option<u32> {
        (1..=limit).find(|_| in_flight.look())
    }

    /// A command that began between two looks is overdue at the tenth look after it began:
    /// after more than nine tenths of `command_timeout` and within all of it (looks are a
    /// tenth apart), whatever the connection read meanwhile.
    #[test]
    fn a_waiting_command_is_overdue_at_the_tenth_look() {
        let in_flight = InFlightByPeriod::new();
        for _ in 0..25 {
            assert!(!in_flight.look(), "idle");
        }
        let _command = in_flight.begin();
        assert_eq!(
            looks_until_overdue(&in_flight, 100),
            Some(TICKS_PER_TIMEOUT)
        );
    }

    /// Idle links and commands that end in time are never overdue, however many there are
    /// and however long the link stays busy; a young command behind them is judged by its
    /// own age.
    #[test]
    fn commands_that_end_in_time_are_never_overdue() {
        let in_flight = InFlightByPeriod::new();
        assert_eq!(looks_until_overdue(&in_flight, 1_000), None);
        // Always busy: each command waits nine looks, and a new one begins at every look.
        let mut waiting = std::collections::VecDeque::new();
        for _ in 0..1_000 {
            waiting.push_back(in_flight.begin());
            if waiting.len() > (TICKS_PER_TIMEOUT - 1) as usize {
                waiting.pop_front();
            }
            assert!(!in_flight.look());
        }
        drop(waiting);
        let late = in_flight.begin();
        assert_eq!(
            looks_until_overdue(&in_flight, 100),
            Some(TICKS_PER_TIMEOUT)
        );
        drop(late);
        assert_eq!(looks_until_overdue(&in_flight, 100), None);
    }
}
