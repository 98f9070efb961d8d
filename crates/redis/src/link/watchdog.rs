//! The watchdog of a link's connection and the counters it reads: how long the oldest command
//! in flight has waited, without a timer or a timestamp per command.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::{Instant, MissedTickBehavior};

use super::Link;

/// The watchdog looks at a connection this many times per `command_timeout`: a command still
/// waiting at the this-many-th look after the one before which it began has waited between
/// nine tenths of `command_timeout` and all of it.
pub(super) const TICKS_PER_TIMEOUT: u64 = 10;
/// The looks after which a command still counted is suspect: the watchdog sends a `PING`, whose
/// answer (Redis answers in order) shows that every command sent before it has its reply.
const SUSPECT_AFTER: u64 = TICKS_PER_TIMEOUT / 2;
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

    /// One look of the watchdog: starts the next period and returns its number.
    pub(super) fn look(&self) -> u64 {
        self.period.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The oldest period, from `from` on and before `now` (as far back as the ring holds),
    /// with a command still counted.
    pub(super) fn oldest_waiting(&self, now: u64, from: u64) -> Option<u64> {
        let back = now.saturating_sub(PERIODS as u64 - 1);
        (from.max(back)..now).find(|&period| self.count(period).load(Ordering::Relaxed) > 0)
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

/// A `PING` sent on the watched connection.
type Probe = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Sends a `PING` on `conn` (once polled): Redis answers a connection's commands in order, so
/// its answer shows that every command sent before it has its reply.
fn probe(mut conn: MultiplexedConnection) -> Probe {
    Box::pin(async move {
        // An error reply is an answer too; a broken connection ends its driver, which stops
        // this watchdog.
        let _ = redis::cmd("PING").query_async::<()>(&mut conn).await;
    })
}

/// Watches connection `generation`: every `command_timeout / 10` it takes a look. When a
/// command has waited half of `command_timeout` it sends a `PING`; the connection is hung when
/// a command has waited [`TICKS_PER_TIMEOUT`] looks and the `PING` is still unanswered. An
/// answered `PING` clears every command sent before it: those still counted have their
/// replies, which their callers have not read yet (a busy runtime), and the connection stays.
/// Ends when the connection or the link is gone.
pub(super) async fn watchdog(link: Weak<Link>, generation: u64, timeout: Duration) {
    let tick = (timeout / TICKS_PER_TIMEOUT as u32).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + tick, tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The `PING` under way and the look it was sent at; the periods before `answered_from`
    // are known answered.
    let mut pending: Option<(u64, Probe)> = None;
    let mut answered_from = 0;
    loop {
        match pending.as_mut() {
            // Polled first: an answer that came with the tick counts.
            Some((sent, ping)) => tokio::select! {
                biased;
                () = ping => {
                    answered_from = *sent;
                    pending = None;
                    continue;
                }
                _ = interval.tick() => {}
            },
            None => {
                interval.tick().await;
            }
        }
        let Some(link) = link.upgrade() else { return };
        let now = link.look();
        let Some(oldest) = link.oldest_waiting(now, answered_from) else {
            continue;
        };
        let waited = now - oldest;
        if pending.is_some() {
            if waited >= TICKS_PER_TIMEOUT {
                link.hung(generation);
                return;
            }
        } else if waited >= SUSPECT_AFTER {
            match link.current() {
                Some((live, conn)) if live == generation => pending = Some((now, probe(conn))),
                // Replaced or closed: its own watchdog, if any, watches the next one.
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{InFlightByPeriod, TICKS_PER_TIMEOUT};

    /// Looks until the oldest command counted has waited `looks` looks, at most `limit`.
    fn looks_until_waited(in_flight: &InFlightByPeriod, looks: u64, limit: u64) -> Option<u64> {
        (1..=limit).find(|_| {
            let now = in_flight.look();
            in_flight
                .oldest_waiting(now, 0)
                .is_some_and(|oldest| now - oldest >= looks)
        })
    }

    /// A command that began between two looks has waited ten looks at the tenth look after
    /// it began: after more than nine tenths of `command_timeout` and within all of it (looks
    /// are a tenth apart), whatever the connection read meanwhile.
    #[test]
    fn a_waiting_command_has_waited_ten_looks_at_the_tenth() {
        let in_flight = InFlightByPeriod::new();
        for _ in 0..25 {
            let now = in_flight.look();
            assert_eq!(in_flight.oldest_waiting(now, 0), None, "idle");
        }
        let _command = in_flight.begin();
        assert_eq!(
            looks_until_waited(&in_flight, TICKS_PER_TIMEOUT, 100),
            Some(TICKS_PER_TIMEOUT)
        );
    }

    /// Idle links and commands that end in time never wait ten looks, however many there are
    /// and however long the link stays busy; a young command behind them is judged by its
    /// own age; periods before the one a `PING` answered are not looked at.
    #[test]
    fn commands_that_end_in_time_never_wait_ten_looks() {
        let in_flight = InFlightByPeriod::new();
        assert_eq!(
            looks_until_waited(&in_flight, TICKS_PER_TIMEOUT, 1_000),
            None
        );
        // Always busy: each command waits nine looks, and a new one begins at every look.
        let mut waiting = std::collections::VecDeque::new();
        for _ in 0..1_000 {
            waiting.push_back(in_flight.begin());
            if waiting.len() > (TICKS_PER_TIMEOUT - 1) as usize {
                waiting.pop_front();
            }
            let now = in_flight.look();
            let oldest = in_flight.oldest_waiting(now, 0).unwrap();
            assert!(now - oldest < TICKS_PER_TIMEOUT);
        }
        drop(waiting);
        let late = in_flight.begin();
        let began = in_flight.look() - 1;
        assert_eq!(
            looks_until_waited(&in_flight, TICKS_PER_TIMEOUT, 100),
            Some(TICKS_PER_TIMEOUT - 1)
        );
        let now = in_flight.look();
        assert_eq!(in_flight.oldest_waiting(now, began + 1), None, "answered");
        drop(late);
        assert_eq!(looks_until_waited(&in_flight, 1, 100), None);
    }
}
