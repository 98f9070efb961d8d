//! The reconnecting connection of the standalone multiplexed mode over TCP.
//!
//! A [`Link`] owns at most one live redis-rs [`MultiplexedConnection`] at a time, whose driver
//! task it spawns itself so that it can stop it. Commands on a live connection run with no
//! timer of their own: a watchdog task per connection declares the connection hung when
//! commands have been waiting through nine looks in a row (one every tenth of
//! `command_timeout`) and not one byte has arrived, and then stops
//! the driver, which ends every waiting command at once. The slow path (no live connection
//! yet, or the last one failed) connects once for every command that waits, and keeps a
//! per-command timer since it is rare.

use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::Error;

/// The wait after the first failed connection attempt; it doubles after each further failure.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two failed connection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The watchdog looks at a connection this many times per `command_timeout`.
pub(crate) const TICKS_PER_TIMEOUT: u32 = 10;
/// Looks in a row that found commands waiting and nothing read before the connection is
/// declared hung: one fewer than a timeout's worth, so that a command sent just after a look
/// still fails within `command_timeout` (between nine tenths of it and all of it).
const SILENT_LOOKS: u32 = TICKS_PER_TIMEOUT - 1;

/// One reconnecting multiplexed connection to a Redis server reached over TCP.
pub(crate) struct Link {
    target: Arc<Target>,
    command_timeout: Duration,
    /// The live connection: the only thing a command reads on the fast path.
    live: RwLock<Option<Live>>,
    /// Commands started and not yet ended on this link (a drop guard decrements).
    in_flight: AtomicUsize,
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
            in_flight: AtomicUsize::new(0),
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
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
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
            Ok(Opened {
                conn,
                driver,
                reads,
            }) => {
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
                    reads,
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

    /// Stops connection `generation` because it is hung: its waiting commands end with a
    /// timeout.
    fn hung(&self, generation: u64) {
        self.timed_out.store(generation, Ordering::Release);
        tracing::debug!(
            generation,
            "redis connection hung: no reply within the command timeout"
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

/// A new connection, its driver (not yet spawned) and the counter of its reads.
struct Opened {
    conn: MultiplexedConnection,
    driver: Pin<Box<dyn Future<Output = ()> + Send>>,
    reads: Arc<AtomicU64>,
}

impl Target {
    /// Connects and runs the connection setup (`AUTH`, `SELECT`, `HELLO`, `CLIENT SETINFO`
    /// as the URL asks), all within `connect_timeout`.
    async fn open(&self) -> RedisResult<Opened> {
        let open = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.set_nodelay(self.nodelay)?;
            let reads = Arc::new(AtomicU64::new(0));
            let stream = CountedReads {
                inner: stream,
                reads: Arc::clone(&reads),
                count: 0,
            };
            // No response timeout inside redis-rs: the watchdog bounds every command.
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(None);
            let (conn, driver) =
                MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
            Ok(Opened {
                conn,
                driver: Box::pin(driver),
                reads,
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

/// Watches connection `generation`: when commands are in flight and no byte has been read
/// through [`SILENT_LOOKS`] looks in a row (one every `command_timeout / 10`), the connection
/// is hung and is stopped. Ends when the connection or the link is gone.
async fn watchdog(link: Weak<Link>, generation: u64, reads: Arc<AtomicU64>, timeout: Duration) {
    let tick = (timeout / TICKS_PER_TIMEOUT).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + tick, tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut silence = Silence::new(reads.load(Ordering::Relaxed));
    loop {
        interval.tick().await;
        let Some(link) = link.upgrade() else { return };
        let busy = link.in_flight.load(Ordering::Relaxed) > 0;
        if silence.look(busy, reads.load(Ordering::Relaxed)) {
            link.hung(generation);
            return;
        }
    }
}

/// The watchdog's count of silent looks at one connection.
struct Silence {
    last_reads: u64,
    was_busy: bool,
    /// Intervals in a row that began and ended with commands in flight and read nothing.
    silent: u32,
}

impl Silence {
    fn new(reads: u64) -> Self {
        Self {
            last_reads: reads,
            was_busy: false,
            silent: 0,
        }
    }

    /// One look: whether commands are in flight now, and the reads counter. True when the
    /// connection is hung: [`SILENT_LOOKS`] intervals in a row began and ended with commands
    /// in flight and read nothing.
    fn look(&mut self, busy: bool, reads: u64) -> bool {
        if busy && self.was_busy && reads == self.last_reads {
            self.silent += 1;
        } else {
            self.silent = 0;
        }
        self.was_busy = busy;
        self.last_reads = reads;
        self.silent >= SILENT_LOOKS
    }
}

/// A TCP stream that counts the reads that returned bytes (the watchdog's sign of life).
struct CountedReads {
    inner: TcpStream,
    reads: Arc<AtomicU64>,
    /// This stream is the only writer of `reads`: a plain store is enough.
    count: u64,
}

impl AsyncRead for CountedReads {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.count += 1;
            this.reads.store(this.count, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for CountedReads {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Silence, TICKS_PER_TIMEOUT};

    /// Looks until the watchdog declares the connection hung, at most `limit`.
    fn looks_until_hung(silence: &mut Silence, limit: u32, busy: bool, reads: u64) -> Option<u32> {
        (1..=limit).find(|_| silence.look(busy, reads))
    }

    /// A command sent between two looks on an idle connection of a frozen server: it is
    /// declared hung at the tenth look after the command was sent, that is after more than
    /// nine tenths of `command_timeout` and within all of it (looks are a tenth apart).
    #[test]
    fn a_silent_command_is_declared_hung_at_the_tenth_look() {
        let mut silence = Silence::new(7);
        assert!(!silence.look(false, 7), "idle");
        assert_eq!(
            looks_until_hung(&mut silence, 100, true, 7),
            Some(TICKS_PER_TIMEOUT)
        );
    }

    /// Idle connections and busy ones that keep reading are never declared hung; a read
    /// starts the count again.
    #[test]
    fn idle_or_answering_connections_are_never_hung() {
        let mut silence = Silence::new(0);
        assert_eq!(looks_until_hung(&mut silence, 1_000, false, 0), None);
        let mut reads = 0;
        for _ in 0..1_000 {
            reads += 1;
            assert!(!silence.look(true, reads));
        }
        // Silent for all but one look, then a byte arrives: counted again from there.
        assert_eq!(
            looks_until_hung(&mut silence, TICKS_PER_TIMEOUT - 2, true, reads),
            None
        );
        reads += 1;
        assert!(!silence.look(true, reads));
        assert_eq!(
            looks_until_hung(&mut silence, 100, true, reads),
            Some(TICKS_PER_TIMEOUT - 1)
        );
    }
}
