//! The reconnecting connection of the standalone multiplexed mode over TCP (or TLS).
//!
//! A [`Link`] owns at most one live redis-rs [`MultiplexedConnection`] at a time, whose driver
//! task it spawns itself so that it can stop it. Commands on a live connection run with no
//! timer of their own: each command counts itself in the look period (a tenth of
//! `command_timeout`) in which it began, and a watchdog task per connection, looking once a
//! period, sends a `PING` when a command that began five looks ago is still counted, and
//! declares the connection hung when a command has waited ten looks and that `PING` is still
//! unanswered, whatever the connection read meanwhile (a server trickling a reply byte by byte is hung too). It then
//! stops the driver, which ends every waiting command at once. An answered `PING` shows that
//! the commands still counted have their replies (their callers, on a busy runtime, have not
//! read them yet): the connection stays. The slow
//! path (no live connection yet, or the last one failed) connects once for every command that
//! waits, and keeps a per-command timer since it is rare.

mod target;
mod watchdog;

use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisConnectionInfo, RedisError, RedisResult};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower_scale_core::Backoff;

pub(crate) use self::target::TlsConnect;
use self::target::{Driver, Target};
pub(crate) use self::watchdog::InFlight;
use self::watchdog::{InFlightByPeriod, watchdog};
use crate::Error;

/// The wait after the first failed connection attempt; it doubles after each further failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two failed connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One reconnecting multiplexed connection to a Redis server reached over TCP (or TLS).
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
    /// The waits after failures: [`MIN_BACKOFF`] doubling up to [`MAX_BACKOFF`].
    backoff: Backoff,
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

impl Link {
    pub(crate) fn new(
        host: String,
        port: u16,
        nodelay: bool,
        info: RedisConnectionInfo,
        connect_timeout: Duration,
        command_timeout: Duration,
        tls: Option<TlsConnect>,
    ) -> Self {
        Self {
            target: Arc::new(Target::new(host, port, nodelay, info, connect_timeout, tls)),
            command_timeout,
            live: RwLock::new(None),
            in_flight: InFlightByPeriod::new(),
            timed_out: AtomicU64::new(0),
            slow: Mutex::new(Slow {
                generation: 0,
                connecting: false,
                retry: None,
                backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
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
    /// the backoff has passed, except a `probe` (a command the backend's breaker lets through
    /// to find out whether Redis is back: the breaker already spaces them), which starts an
    /// attempt at once. A command starts at most one attempt. The caller bounds the wait.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        probe: bool,
    ) -> Result<(u64, MultiplexedConnection), Error> {
        let mut attempted = false;
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
                    if let Some(retry) = &slow.retry
                        && (attempted || (!probe && retry.at > now))
                    {
                        return Err(not_connected(
                            &retry.error,
                            retry.at.saturating_duration_since(now),
                        ));
                    }
                    attempted = true;
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

    fn attempt_ended(self: Arc<Self>, opened: RedisResult<(MultiplexedConnection, Driver)>) {
        let mut slow = self.lock();
        slow.connecting = false;
        match opened {
            Ok((conn, driver)) => {
                slow.generation += 1;
                let generation = slow.generation;
                slow.retry = None;
                slow.backoff.reset();
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
                let backoff = slow.backoff.next_delay();
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

    /// One look of the watchdog: starts the next look period ([`InFlightByPeriod::look`]).
    fn look(&self) -> u64 {
        self.in_flight.look()
    }

    /// The oldest look period from `from` on with a command still counted
    /// ([`InFlightByPeriod::oldest_waiting`]).
    fn oldest_waiting(&self, now: u64, from: u64) -> Option<u64> {
        self.in_flight.oldest_waiting(now, from)
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
