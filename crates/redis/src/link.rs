//! The reconnecting connection of the standalone multiplexed mode over TCP.
//!
//! A [`Link`] owns at most one live redis-rs [`MultiplexedConnection`] at a time, whose driver
//! task it spawns itself so that it can stop it. Commands on a live connection run with no
//! timer of their own: each command counts itself in the look period (a tenth of
//! `command_timeout`) in which it began, and a watchdog task per connection, looking once a
//! period, declares the connection hung as soon as a command that began ten looks ago is still
//! waiting, whatever the connection read meanwhile (a server trickling a reply byte by byte
//! is hung too). It then stops the driver, which ends every waiting command at once. The slow
//! path (no live connection yet, or the last one failed) connects once for every command that
//! waits, and keeps a per-command timer since it is rare.

use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::Error;

/// The wait after the first failed connection attempt; it doubles after each further failure.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two failed connection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The watchdog looks at a connection this many times per `command_timeout`; a command still
/// waiting at the this-many-th look after the one before which it began is overdue: it began
/// after that look, so it has waited between nine tenths of `command_timeout` and all of it.
pub(crate) const TICKS_PER_TIMEOUT: u32 = 10;
/// Look periods whose commands are counted apart (a ring, indexed by look number): more than
/// the [`TICKS_PER_TIMEOUT`] + 1 periods that can hold commands not yet judged.
const PERIODS: usize = 16;

/// One reconnecting multiplexed connection to a Redis server reached over TCP.
pub(crate) struct Link {
    target: Arc<Target>,
    command_timeout: Duration,
    /// The live connection: the only thing a command reads on the fast path.
    live: RwLock<Option<Live>>,
    /// Commands started and not yet ended on this link, by the look period they began in.
    in_flight: InFlightByPeriod,
    /// The generation of the last connection the watchdog stopped (0: none).
    timed_out: AtomicU64,
    /// Everything else, touched only when connecting or when a connection ends.
    slow: Mutex<Slow>,
    /// Woken when an attempt to connect ends, either way.
    attempt_done: Notify,
}

/// Where and how to connect; shared with the connecting task.
struct Target {
    host: String,
    port: u16,
    /// `TCP_NODELAY`, as redis-rs would set it for this URL (off by default: under load,
    /// Nagle's algorithm coalesces the small writes of pipelined commands into fewer packets;
    /// each reply acknowledges the data before it, so a command is not held back).
    nodelay: bool,
    info: RedisConnectionInfo,
    connect_timeout: Duration,
}

struct Live {
    generation: u64,
    conn: MultiplexedConnection,
}

struct Slow {
    /// The generation of the newest connection (the first one is 1).
    generation: u64,
    /// An attempt to connect is under way; commands wait for it instead of starting another.
    connecting: bool,
    /// The last attempt failed: until `Retry::at`, commands fail at once.
    retry: Option<Retry>,
    /// The wait after the next failure.
    next_backoff: Duration,
    /// The tasks of the live connection.
    tasks: Option<Tasks>,
}

struct Retry {
    at: Instant,
    error: String,
}

struct Tasks {
    generation: u64,
    driver: AbortHandle,
    watchdog: AbortHandle,
}

impl Tasks {
    fn abort(self) {
        self.driver.abort();
        self.watchdog.abort();
    }
}

/// An attempt to connect under way. Should its task be dropped unfinished (its runtime shut
/// down), the link no longer waits for it: the next command starts another.
struct Attempt(Option<Weak<Link>>);

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(link) = self.0.take().and_then(|l| l.upgrade()) {
            link.lock().connecting = false;
            link.attempt_done.notify_waiters();
        }
    }
}

/// Counts a command as in flight until dropped (cancelled commands included).
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

/// The commands in flight on a link, counted by the watchdog's look period in which each
/// began: what tells the watchdog how long the oldest one has waited, without a timer or a
/// timestamp per command.
struct InFlightByPeriod {
    /// The number of the current look period: the looks taken so far.
    period: AtomicU64,
    /// Commands in flight by `period % PERIODS` at their start.
    counts: [AtomicUsize; PERIODS],
}

impl InFlightByPeriod {
    fn new() -> Self {
        Self {
            period: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// Counts one command, in the current period, until the guard is dropped.
    fn begin(&self) -> InFlight<'_> {
        let count = self.count(self.period.load(Ordering::Relaxed));
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }

    /// One look of the watchdog: starts the next period, and tells whether a command that
    /// began [`TICKS_PER_TIMEOUT`] periods ago (or earlier, when a period's count was caught
    /// late) is still in flight.
    fn look(&self) -> bool {
        let now = self.period.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(judged) = now.checked_sub(u64::from(TICKS_PER_TIMEOUT)) else {
            return false;
        };
        self.count(judged).load(Ordering::Relaxed) > 0
    }

    /// The count of the commands that began in look period `period`.
    fn count(&self, period: u64) -> &AtomicUsize {
        // `PERIODS` divides 2^32: the remainder is the same whether the cast keeps 32 bits
        // of `period` or all 64.
        &self.counts[period as usize % PERIODS]
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Link {
    pub(crate) fn new(
        host: String,
        port: u16,
        nodelay: bool,
        info: RedisConnectionInfo,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Self {
            target: Arc::new(Target {
                host,
                port,
                nodelay,
                info,
                connect_timeout,
            }),
            command_timeout,
            live: RwLock::new(None),
            in_flight: InFlightByPeriod::new(),
            timed_out: AtomicU64::new(0),
            slow: Mutex::new(Slow {
                generation: 0,
                connecting: false,
                retry: None,
                next_backoff: MIN_BACKOFF,
                tasks: None,
            }),
            attempt_done: Notify::new(),
        }
    }

    /// The live connection and its generation, if there is one: the fast path.
    pub(crate) fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.as_ref().map(|l| (l.generation, l.conn.clone()))
    }

    /// Counts one command as in flight until the guard is dropped.
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.in_flight.begin()
    }

    /// Converts the result of a command run on connection `generation`: a broken connection
    /// is dropped so that the next command reconnects, and a command ended by the watchdog
    /// is reported as a timeout.
    pub(crate) fn finish<T>(&self, generation: u64, result: RedisResult<T>) -> Result<T, Error> {
        match result {
            Ok(value) => Ok(value),
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                self.connection_ended(generation);
                if self.timed_out.load(Ordering::Acquire) == generation {
                    Err(Error::Timeout(self.command_timeout))
                } else {
                    Err(e.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The live connection, connecting first if there is none. Commands that arrive while an
    /// attempt is under way wait for it; after a failed attempt, commands fail at once until
    /// the backoff has passed. The caller bounds the wait.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<(u64, MultiplexedConnection), Error> {
        loop {
            let mut done = pin!(self.attempt_done.notified());
            // Registered before looking at the state, so that the end of an attempt cannot
            // slip between the look and the wait.
            done.as_mut().enable();
            {
                let mut slow = self.lock();
                if let Some(live) = self.current() {
                    return Ok(live);
                }
                if !slow.connecting {
                    let now = Instant::now();
                    if let Some(retry) = slow.retry.as_ref().filter(|r| r.at > now) {
                        return Err(not_connected(&retry.error, retry.at - now));
                    }
                    slow.connecting = true;
                    let mut attempt = Attempt(Some(Arc::downgrade(self)));
                    let target = Arc::clone(&self.target);
                    tokio::spawn(async move {
                        let opened = target.open().await;
                        if let Some(link) = attempt.0.take().and_then(|l| l.upgrade()) {
                            link.attempt_ended(opened);
                        }
                    });
                }
            }
            done.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn attempt_ended(self: Arc<Self>, opened: RedisResult<Opened>) {
        let mut slow = self.lock();
        slow.connecting = false;
        match opened {
            Ok(Opened { conn, driver }) => {
                slow.generation += 1;
                let generation = slow.generation;
                slow.retry = None;
                slow.next_backoff = MIN_BACKOFF;
                let link = Arc::downgrade(&self);
                let driver = tokio::spawn(async move {
                    driver.await;
                    if let Some(link) = link.upgrade() {
                        link.connection_ended(generation);
                    }
                })
                .abort_handle();
                let watchdog = tokio::spawn(watchdog(
                    Arc::downgrade(&self),
                    generation,
                    self.command_timeout,
                ))
                .abort_handle();
                let tasks = Tasks {
                    generation,
                    driver,
                    watchdog,
                };
                if let Some(old) = slow.tasks.replace(tasks) {
                    old.abort();
                }
                *self.live.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Live { generation, conn });
                tracing::debug!(generation, "redis connection opened");
            }
            Err(e) => {
                let backoff = slow.next_backoff;
                slow.next_backoff = (backoff * 2).min(MAX_BACKOFF);
                slow.retry = Some(Retry {
                    at: Instant::now() + backoff,
                    error: e.to_string(),
                });
                tracing::debug!(error = %e, ?backoff, "redis connection failed");
            }
        }
        drop(slow);
        self.attempt_done.notify_waiters();
    }

    /// Forgets connection `generation` (if it is still the live one) and stops its tasks.
    fn connection_ended(&self, generation: u64) {
        let mut slow = self.lock();
        if slow
            .tasks
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
            if live.as_ref().is_some_and(|l| l.generation == generation) {
                *live = None;
            }
            drop(live);
            if let Some(tasks) = slow.tasks.take() {
                tasks.abort();
            }
            tracing::debug!(generation, "redis connection closed");
        }
    }

    /// Stops connection `generation` because it is hung (a command waited on it for
    /// `command_timeout`): its waiting commands end with a timeout.
    fn hung(&self, generation: u64) {
        self.timed_out.store(generation, Ordering::Release);
        tracing::debug!(
            generation,
            "redis connection hung: a command not answered within the command timeout"
        );
        self.connection_ended(generation);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let slow = self.slow.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = slow.tasks.take() {
            tasks.abort();
        }
    }
}

/// The error of a command refused while the link waits before its next connection attempt.
fn not_connected(last_error: &str, retry_in: Duration) -> Error {
    Error::Redis(RedisError::from(io::Error::new(
        io::ErrorKind::NotConnected,
        format!(
            "not connected to Redis (last attempt: {last_error}); next attempt in {retry_in:?}"
        ),
    )))
}

/// A new connection and its driver (not yet spawned).
struct Opened {
    conn: MultiplexedConnection,
    driver: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Target {
    /// Connects and runs the connection setup (`AUTH`, `SELECT`, `HELLO`, `CLIENT SETINFO`
    /// as the URL asks), all within `connect_timeout`.
    async fn open(&self) -> RedisResult<Opened> {
        let open = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.set_nodelay(self.nodelay)?;
            // No response timeout inside redis-rs: the watchdog bounds every command.
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(None);
            let (conn, driver) =
                MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
            Ok(Opened {
                conn,
                driver: Box::pin(driver),
            })
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(opened) => opened,
            Err(_) => Err(RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {}:{} took more than {:?}",
                    self.host, self.port, self.connect_timeout
                ),
            ))),
        }
    }
}

/// Watches connection `generation`: every `command_timeout / 10` it takes a look, and when a
/// command that began [`TICKS_PER_TIMEOUT`] looks ago is still waiting, the connection is
/// hung and is stopped. Ends when the connection or the link is gone.
async fn watchdog(link: Weak<Link>, generation: u64, timeout: Duration) {
    let tick = (timeout / TICKS_PER_TIMEOUT).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + tick, tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(link) = link.upgrade() else { return };
        if link.in_flight.look() {
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
