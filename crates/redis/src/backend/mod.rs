//! The shared backend: its public API, and how every command is run (bounded, under the
//! breaker, measured).

mod conns;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures_util::FutureExt;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, ScriptInvocation};
use tokio::time::Instant;

use self::conns::{Conn, Conns, pick};
use crate::names::{REDIS_COMMAND_DURATION_SECONDS, REDIS_COMMAND_ERRORS_TOTAL};
use crate::{Error, Keys, Mode, RedisConfig};

/// The shared Redis backend: one per process, cloned into every layer that needs Redis.
///
/// Cloning is cheap (an `Arc`). Building it does no I/O: connections are opened on first use
/// and reopened by themselves after a failure, so a service starts even while Redis is down.
/// A Redis that hangs answers [`Error::Timeout`], never a hung request.
///
/// # How the wait for Redis is bounded
///
/// In the default mode (standalone, [`ConnectionKind::Multiplexed`](crate::ConnectionKind::Multiplexed), a `redis://` URL over
/// TCP or a `rediss://` one over TLS) each of the `pool_size` connections has a watchdog instead of a timer per command:
/// every command is counted in the tenth of `command_timeout` (the look period) in which it
/// began, and every `command_timeout / 10` the watchdog looks how long the oldest command
/// still waiting has waited. From half of `command_timeout` on, it sends a `PING` on the
/// connection; if a command has waited ten looks and that `PING` is still unanswered, the
/// connection is declared hung and closed: every
/// command waiting on it ends at once with [`Error::Timeout`], and the next command opens a
/// new connection. (Redis answers in order, so an answered `PING` shows that the commands
/// still counted have their replies and only wait for their tasks to run, as on a busy
/// runtime: the connection stays, and no command on it fails.) So every command fails within `command_timeout` of being sent
/// (after between nine tenths of it and all of it) unless its reply is complete by then, as
/// long as the runtime runs the watchdog's ticks on time; a command queued behind an overdue
/// one may fail sooner, with the same error. Bytes that arrive meanwhile do not count: a
/// Redis that trickles a reply, or that answers the other commands but not this one in time,
/// is treated as hung. An idle connection is never closed by the watchdog.
///
/// Opening a connection (TCP connect, the TLS handshake for `rediss://`, then the
/// `AUTH`/`SELECT`/`HELLO` setup the URL asks for)
/// is bounded by `connect_timeout`; commands that arrive meanwhile share that one attempt,
/// each waiting at most `command_timeout`. After a failed attempt the next one waits 50 ms,
/// doubling per further failure up to 1 s, and until then commands fail at once with a
/// connection error (the breaker then opens as for any connection error), except the
/// breaker's probes: they are spaced by the breaker already (one round every 500 ms by
/// default), so each starts an attempt at once, and Redis is tried within the breaker's open
/// wait of coming back, whatever the backoff had grown to. Once every clone
/// of the backend is dropped, its connections close and their tasks stop.
///
/// The other modes (pooled, cluster) and Unix-socket URLs (`redis+unix://`) keep a timer of `command_timeout` on each command, covering the wait for a
/// connection too.
///
/// ```no_run
/// use tower_scale_redis::{RedisBackend, RedisConfig, redis};
///
/// # async fn run() -> Result<(), tower_scale_redis::Error> {
/// let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let key = backend.keys().key("cache", "user:1");
/// backend.query::<()>(redis::cmd("SET").arg(&key).arg("alice")).await?;
/// let name: Option<String> = backend.query(redis::cmd("GET").arg(&key)).await?;
/// assert_eq!(name.as_deref(), Some("alice"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Conns,
    keys: Keys,
    command_timeout: Duration,
    config: RedisConfig,
    next: AtomicUsize,
    #[cfg(feature = "breaker")]
    breaker: Option<tower_scale_breaker::CircuitBreaker>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("connections", &self.inner.conns.kind())
            .field("pool_size", &self.inner.config.effective_pool_size())
            .field("command_timeout", &self.inner.command_timeout)
            .field("key_prefix", &self.inner.keys.prefix())
            .finish()
    }
}

impl RedisBackend {
    /// Builds the backend from a config, after [validating](RedisConfig::validate) it.
    ///
    /// No connection is opened here; a bad URL or value is reported here, naming the field.
    pub fn new(config: RedisConfig) -> Result<Self, Error> {
        config.validate()?;
        let conns = Conns::new(&config)?;
        Self::build(conns, config)
    }

    fn build(conns: Conns, config: RedisConfig) -> Result<Self, Error> {
        #[cfg(feature = "breaker")]
        let breaker = if config.breaker_enabled {
            Some(
                tower_scale_breaker::CircuitBreaker::named("redis", config.breaker.clone())
                    .map_err(|e| Error::Config(format!("breaker: {e}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conns,
                keys: Keys::new(config.key_prefix.as_str()),
                command_timeout: config.command_timeout,
                config,
                next: AtomicUsize::new(0),
                #[cfg(feature = "breaker")]
                breaker,
            }),
        })
    }

    /// The key builder for this backend's prefix.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The config this backend was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether this backend talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.config.mode == Mode::Cluster
    }

    /// Runs one command and converts its reply.
    // `fn … -> impl Future` rather than `async fn` here and below: the future is `run`'s own,
    // not one more state around it.
    pub fn query<'a, T: FromRedisValue>(
        &'a self,
        cmd: &'a Cmd,
    ) -> impl Future<Output = Result<T, Error>> {
        self.run(cmd)
    }

    /// Runs a pipeline (or a `MULTI`/`EXEC` transaction built with [`Pipeline::atomic`]) in
    /// one round trip. On a cluster every key of the pipeline must be in one slot.
    pub fn query_pipeline<'a, T: FromRedisValue>(
        &'a self,
        pipeline: &'a Pipeline,
    ) -> impl Future<Output = Result<T, Error>> {
        self.run(pipeline)
    }

    /// Runs a Lua script with `EVALSHA`: the script body is sent only when the server does not
    /// know it yet (first use, restart, failover, `SCRIPT FLUSH`), then the call is repeated.
    ///
    /// ```no_run
    /// use tower_scale_redis::{RedisBackend, redis::Script};
    /// use std::sync::LazyLock;
    ///
    /// static INCR_BY: LazyLock<Script> =
    ///     LazyLock::new(|| Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])"));
    ///
    /// # async fn run(backend: RedisBackend) -> Result<(), tower_scale_redis::Error> {
    /// let n: i64 = backend.invoke(INCR_BY.key("ts:demo:n").arg(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn invoke<'a, T: FromRedisValue>(
        &'a self,
        invocation: &'a ScriptInvocation<'_>,
    ) -> impl Future<Output = Result<T, Error>> {
        self.run(invocation)
    }

    /// Health probe: a `PING` under the command timeout, returning its round-trip time.
    /// On a cluster the probe reaches the node of a random slot; a failure of any node shows
    /// up as errors of the commands routed to it.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = Instant::now();
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(Error::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected PING reply",
                pong,
            ))));
        }
        Ok(start.elapsed())
    }

    /// The backend's circuit breaker, when enabled (to watch its state, or trip or reset it
    /// from outside).
    #[cfg(feature = "breaker")]
    pub fn breaker(&self) -> Option<&tower_scale_breaker::CircuitBreaker> {
        self.inner.breaker.as_ref()
    }

    /// Runs `op` under the bound on its wait (the link's watchdog, or a timer), the breaker
    /// and the metrics.
    async fn run<T: FromRedisValue>(&self, op: impl Op) -> Result<T, Error> {
        let timeout = self.inner.command_timeout;
        self.timed(op.span(), async {
            // The other modes (manager, pooled, cluster) under a timer, boxed: their future
            // (a timer, a pool checkout, the largest connection type) would otherwise make
            // every command's future 128 bytes larger in the default mode too (880 → 752;
            // −108 instructions per GET under callgrind), for one allocation per command in
            // modes whose commands already allocate more.
            let Some(links) = self.inner.conns.links() else {
                return Box::pin(bounded(timeout, async {
                    let mut conn = self.inner.conns.conn(&self.inner.next).await?;
                    Ok(op.run(&mut conn).await?)
                }))
                .await;
            };
            let link = pick(&self.inner.next, links);
            // The two paths are written out: sharing them through a closure made every
            // command's future larger (+640 instructions per GET under callgrind).
            // The fast path: a live connection, watched by its watchdog, no timer.
            if let Some((generation, conn)) = link.current() {
                let _in_flight = link.begin();
                let result = op.run(&mut Conn::Mux(conn)).await;
                return link.finish(generation, result);
            }
            // No live connection: connect (or wait for the attempt under way), under a timer.
            // Boxed: rare, and the largest of the three paths.
            Box::pin(bounded(timeout, async {
                let (generation, conn) = link.connect(self.probing()).await?;
                let _in_flight = link.begin();
                let result = op.run(&mut Conn::Mux(conn)).await;
                link.finish(generation, result)
            }))
            .await
        })?
        .await
    }

    /// Whether a command let through now is one of the breaker's probes (half-open, or open
    /// again since a probe failed): it must reach Redis, not be refused by the link's
    /// reconnect backoff, which would reopen the breaker without Redis having been tried.
    fn probing(&self) -> bool {
        #[cfg(feature = "breaker")]
        if let Some(breaker) = &self.inner.breaker {
            use tower_scale_breaker::State;
            return matches!(breaker.state(), State::HalfOpen | State::Open);
        }
        false
    }

    /// `fut` under the breaker (a permit now, or [`Error::CircuitOpen`]), the metrics and
    /// `span` (its outcome and duration recorded when `fut` ends).
    ///
    /// `fut` mapped, rather than awaited in an `async fn`: an `async fn` keeps its future
    /// argument in its own state beside the copy it awaits, so each such layer doubled the
    /// command's future (1,944 bytes for a `GET` through two of them; every cache and session
    /// future that holds one grows with it).
    fn timed<T, F>(
        &self,
        span: CommandSpan,
        fut: F,
    ) -> Result<impl Future<Output = Result<T, Error>>, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        #[cfg(feature = "breaker")]
        let permit = match &self.inner.breaker {
            Some(breaker) => {
                // The breaker's decision event inside the command's span.
                let _entered = span.as_deref().map(tracing::Span::enter);
                Some(breaker.try_acquire().map_err(|rejected| {
                    metrics::counter!(REDIS_COMMAND_ERRORS_TOTAL.name, "kind" => "circuit_open")
                        .increment(1);
                    let e = Error::CircuitOpen(rejected.retry_after());
                    record(span.as_deref(), "circuit_open", Duration::ZERO);
                    e
                })?)
            }
            None => None,
        };
        let start = Instant::now();
        Ok(fut.map(move |result| {
            let result = match result {
                // redis-rs's own timeouts (the cluster client's response timeout, set to the
                // same value; a connect timeout) are reported the same way.
                Err(Error::Redis(e)) if e.is_timeout() => {
                    Err(Error::Timeout(self.inner.command_timeout))
                }
                result => result,
            };
            let elapsed = start.elapsed();
            metrics::with_recorder(|r| r.register_histogram(&DURATION_KEY, &DURATION_METADATA))
                .record(elapsed.as_secs_f64());
            if let Err(e) = &result {
                let kind = match e {
                    Error::Timeout(_) => "timeout",
                    Error::Pool(_) => "pool",
                    Error::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
                    Error::Redis(_) => "server",
                    Error::Config(_) => "config",
                    Error::CircuitOpen(_) => "circuit_open",
                };
                metrics::counter!(REDIS_COMMAND_ERRORS_TOTAL.name, "kind" => kind).increment(1);
                let _entered = span.as_deref().map(tracing::Span::enter);
                tracing::debug!(error = %e, kind, "redis command failed");
                record(span.as_deref(), kind, elapsed);
            } else {
                record(span.as_deref(), "ok", elapsed);
            }
            // Timeouts and connection errors are failures; an error reply means Redis is up.
            #[cfg(feature = "breaker")]
            if let Some(permit) = permit {
                use tower_scale_breaker::Outcome;
                permit.record(match &result {
                    Err(e) if e.is_unavailable() => Outcome::FAILURE,
                    _ => Outcome::Success,
                });
            }
            result
        }))
    }
}

/// Bounds `fut` with a timer of `timeout` (mapped, like [`RedisBackend::timed`], so that `fut`
/// is held once).
fn bounded<T, F>(timeout: Duration, fut: F) -> impl Future<Output = Result<T, Error>>
where
    F: Future<Output = Result<T, Error>>,
{
    tokio::time::timeout(timeout, fut).map(move |done| done.unwrap_or(Err(Error::Timeout(timeout))))
}

/// A command's `debug` span, `redis command`: boxed, and only while it is enabled (a span
/// is 40 bytes, and a command's future is held in every cache, session and rate-limit
/// future: see `command_futures_stay_small`).
type CommandSpan = Option<Box<tracing::Span>>;

/// Records a command's `outcome` (`ok` or its error kind) and duration on its span.
fn record(span: Option<&tracing::Span>, outcome: &'static str, elapsed: Duration) {
    if let Some(span) = span {
        span.record("outcome", outcome);
        span.record(
            "duration_us",
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        );
    }
}

/// What a command runs on its connection: a command, a pipeline or a script call. A trait
/// rather than an enum so that each kind's future is only as large as it needs.
trait Op: Copy {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>>;

    /// The command's span (see [`command_span`]).
    fn span(self) -> CommandSpan;
}

/// The key of every command's duration, built (and hashed) once: `histogram!` with a name that
/// is not a literal builds and hashes its key on each call.
static DURATION_KEY: metrics::Key =
    metrics::Key::from_static_name(REDIS_COMMAND_DURATION_SECONDS.name);

/// What `histogram!` would pass with [`DURATION_KEY`].
static DURATION_METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A command's span, a child of the current span (the request's): the command's name (`GET`,
/// `PIPELINE`, `EVALSHA`; never an argument) and the server's kind now, its outcome and
/// duration when it ends. `name` is called, and the span allocated, only while the `debug`
/// level is on.
#[inline]
fn command_span<'a>(name: impl FnOnce() -> &'a str) -> CommandSpan {
    let span = tracing::debug_span!(
        "redis command",
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = name(),
        outcome = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    (!span.is_disabled()).then(|| Box::new(span))
}

impl Op for &Cmd {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.query_async(conn)
    }

    fn span(self) -> CommandSpan {
        command_span(|| match self.args_iter().next() {
            Some(redis::Arg::Simple(name)) => std::str::from_utf8(name).unwrap_or("UNKNOWN"),
            _ => "UNKNOWN",
        })
    }
}

impl Op for &Pipeline {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.query_async(conn)
    }

    fn span(self) -> CommandSpan {
        command_span(|| "PIPELINE")
    }
}

impl Op for &ScriptInvocation<'_> {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.invoke_async(conn)
    }

    fn span(self) -> CommandSpan {
        command_span(|| "EVALSHA")
    }
}
