use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use futures_util::FutureExt;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, FromRedisValue, Pipeline, RedisFuture, RedisResult, ScriptInvocation,
    Value,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::link::Link;
use crate::{ConnectionKind, Error, Keys, Mode, RedisConfig};

/// Histogram of Redis command latency in seconds, timeouts included.
pub const REDIS_COMMAND_DURATION_SECONDS: &str = "redis_command_duration_seconds";
/// Counter of failed Redis commands; label `kind`: `timeout`, `connection`, `server`, `pool`.
pub const REDIS_COMMAND_ERRORS_TOTAL: &str = "redis_command_errors_total";

/// The shared Redis backend: one per process, cloned into every layer that needs Redis.
///
/// Cloning is cheap (an `Arc`). Building it does no I/O: connections are opened on first use
/// and reopened by themselves after a failure, so a service starts even while Redis is down.
/// A Redis that hangs answers [`Error::Timeout`], never a hung request.
///
/// # How the wait for Redis is bounded
///
/// In the default mode (standalone, [`ConnectionKind::Multiplexed`], a `redis://` URL over
/// TCP) each of the `pool_size` connections has a watchdog instead of a timer per command:
/// every command is counted in the tenth of `command_timeout` (the look period) in which it
/// began, and every `command_timeout / 10` the watchdog looks whether a command that began
/// ten looks ago is still waiting. If one is, the connection is declared hung and closed:
/// every command waiting on it ends at once with [`Error::Timeout`], and the next command
/// opens a new connection. So every command fails within `command_timeout` of being sent
/// (after between nine tenths of it and all of it) unless its reply is complete by then, as
/// long as the runtime runs the watchdog's ticks on time; a command queued behind an overdue
/// one may fail sooner, with the same error. Bytes that arrive meanwhile do not count: a
/// Redis that trickles a reply, or that answers the other commands but not this one in time,
/// is treated as hung. An idle connection is never closed by the watchdog.
///
/// Opening a connection (TCP connect plus the `AUTH`/`SELECT`/`HELLO` setup the URL asks for)
/// is bounded by `connect_timeout`; commands that arrive meanwhile share that one attempt,
/// each waiting at most `command_timeout`. After a failed attempt the next one waits 50 ms,
/// doubling per further failure up to 1 s, and until then commands fail at once with a
/// connection error (the breaker then opens as for any connection error). Once every clone
/// of the backend is dropped, its connections close and their tasks stop.
///
/// The other modes (pooled, cluster) and URLs that are not plain TCP (`redis+unix://`,
/// `rediss://`) keep a timer of `command_timeout` on each command, covering the wait for a
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

enum Conns {
    /// The default: our own reconnecting links, each with a watchdog instead of a timer per
    /// command.
    Link(Box<[Arc<Link>]>),
    /// Multiplexed connections to a non-TCP address (Unix socket, TLS): redis-rs
    /// `ConnectionManager`, under a timer per command.
    Multiplexed(Box<[LazyManager]>),
    Pooled(deadpool_redis::Pool),
    Cluster(Box<[LazyCluster]>),
    ClusterPooled(deadpool_redis::cluster::Pool),
}

/// A `ConnectionManager` created on first use, inside the runtime (creating one needs a tokio
/// runtime; building the backend does not).
struct LazyManager {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: std::sync::OnceLock<ConnectionManager>,
}

/// A cluster connection opened on first use; a failed open is retried by the next command.
struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner.conns {
            Conns::Link(_) | Conns::Multiplexed(_) => "multiplexed",
            Conns::Pooled(_) => "pooled",
            Conns::Cluster(_) => "cluster multiplexed",
            Conns::ClusterPooled(_) => "cluster pooled",
        };
        f.debug_struct("RedisBackend")
            .field("connections", &kind)
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
        let size = config.effective_pool_size();
        let pool_config = || {
            let mut pool = PoolConfig::new(size);
            pool.timeouts = Timeouts {
                wait: Some(config.command_timeout),
                create: Some(config.connect_timeout),
                recycle: Some(config.command_timeout),
            };
            pool
        };
        let conns = match (config.mode, config.connection) {
            (Mode::Standalone, ConnectionKind::Multiplexed) => {
                let client = redis::Client::open(config.url.as_str())?;
                let info = client.get_connection_info();
                if let ConnectionAddr::Tcp(host, port) = info.addr() {
                    let links = (0..size).map(|_| {
                        Arc::new(Link::new(
                            host.clone(),
                            *port,
                            info.tcp_settings().nodelay(),
                            info.redis_settings().clone(),
                            config.connect_timeout,
                            config.command_timeout,
                        ))
                    });
                    return Self::build(Conns::Link(links.collect()), config);
                }
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    // The backend bounds every command itself; a second timer per command inside
                    // redis-rs would only cost time.
                    .set_response_timeout(None)
                    .set_max_delay(Duration::from_secs(1));
                Conns::Multiplexed(
                    (0..size)
                        .map(|_| LazyManager {
                            client: client.clone(),
                            config: manager_config.clone(),
                            manager: std::sync::OnceLock::new(),
                        })
                        .collect(),
                )
            }
            (Mode::Standalone, ConnectionKind::Pooled) => {
                let mut cfg = deadpool_redis::Config::from_url(config.url.as_str());
                cfg.pool = Some(pool_config());
                Conns::Pooled(
                    cfg.create_pool(Some(Runtime::Tokio1))
                        .map_err(|e| Error::Config(format!("url: {e}")))?,
                )
            }
            (Mode::Cluster, ConnectionKind::Multiplexed) => {
                let client = cluster_client(&config)?;
                Conns::Cluster(
                    (0..size)
                        .map(|_| LazyCluster {
                            client: client.clone(),
                            conn: OnceCell::new(),
                        })
                        .collect(),
                )
            }
            (Mode::Cluster, ConnectionKind::Pooled) => {
                let mut cfg = deadpool_redis::cluster::Config::from_urls(config.all_urls());
                cfg.pool = Some(pool_config());
                Conns::ClusterPooled(
                    cfg.create_pool(Some(Runtime::Tokio1))
                        .map_err(|e| Error::Config(format!("url: {e}")))?,
                )
            }
        };
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
        self.timed(async {
            // The other modes (manager, pooled, cluster) under a timer, boxed: their future
            // (a timer, a pool checkout, the largest connection type) would otherwise make
            // every command's future 128 bytes larger in the default mode too (880 → 752;
            // −108 instructions per GET under callgrind), for one allocation per command in
            // modes whose commands already allocate more.
            let Conns::Link(links) = &self.inner.conns else {
                return Box::pin(bounded(timeout, async {
                    let mut conn = self.conn().await?;
                    Ok(op.run(&mut conn).await?)
                }))
                .await;
            };
            let link = self.pick(links);
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
                let (generation, conn) = link.connect().await?;
                let _in_flight = link.begin();
                let result = op.run(&mut Conn::Mux(conn)).await;
                link.finish(generation, result)
            }))
            .await
        })?
        .await
    }

    /// `fut` under the breaker (a permit now, or [`Error::CircuitOpen`]) and the metrics.
    ///
    /// `fut` mapped, rather than awaited in an `async fn`: an `async fn` keeps its future
    /// argument in its own state beside the copy it awaits, so each such layer doubled the
    /// command's future (1,944 bytes for a `GET` through two of them; every cache and session
    /// future that holds one grows with it).
    fn timed<T, F>(&self, fut: F) -> Result<impl Future<Output = Result<T, Error>>, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        #[cfg(feature = "breaker")]
        let permit = match &self.inner.breaker {
            Some(breaker) => Some(breaker.try_acquire().map_err(|rejected| {
                metrics::counter!(REDIS_COMMAND_ERRORS_TOTAL, "kind" => "circuit_open")
                    .increment(1);
                Error::CircuitOpen(rejected.retry_after())
            })?),
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
            metrics::histogram!(REDIS_COMMAND_DURATION_SECONDS)
                .record(start.elapsed().as_secs_f64());
            if let Err(e) = &result {
                let kind = match e {
                    Error::Timeout(_) => "timeout",
                    Error::Pool(_) => "pool",
                    Error::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
                    Error::Redis(_) => "server",
                    Error::Config(_) => "config",
                    Error::CircuitOpen(_) => "circuit_open",
                };
                metrics::counter!(REDIS_COMMAND_ERRORS_TOTAL, "kind" => kind).increment(1);
                tracing::debug!(error = %e, kind, "redis command failed");
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

    fn pick<'a, T>(&self, items: &'a [T]) -> &'a T {
        if items.len() == 1 {
            return &items[0];
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        &items[i % items.len()]
    }

    async fn conn(&self) -> Result<Conn, Error> {
        // The pool and cluster-connect futures are large (kilobytes); they are boxed so that
        // every command's future stays small. The manager path allocates nothing.
        Ok(match &self.inner.conns {
            Conns::Link(_) => unreachable!("links are run by RedisBackend::run"),
            Conns::Multiplexed(lazies) => {
                let lazy = self.pick(lazies);
                Conn::Manager(match lazy.manager.get() {
                    Some(manager) => manager.clone(),
                    None => {
                        let manager = ConnectionManager::new_lazy_with_config(
                            lazy.client.clone(),
                            lazy.config.clone(),
                        )?;
                        lazy.manager.get_or_init(|| manager).clone()
                    }
                })
            }
            Conns::Pooled(pool) => Conn::Pooled(Box::pin(pool.get()).await?),
            Conns::Cluster(lazies) => {
                let lazy = self.pick(lazies);
                let conn = match lazy.conn.get() {
                    Some(conn) => conn,
                    None => {
                        Box::pin(
                            lazy.conn
                                .get_or_try_init(|| lazy.client.get_async_connection()),
                        )
                        .await?
                    }
                };
                Conn::Cluster(conn.clone())
            }
            Conns::ClusterPooled(pool) => Conn::ClusterPooled(Box::pin(pool.get()).await?),
        })
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

/// What a command runs on its connection: a command, a pipeline or a script call. A trait
/// rather than an enum so that each kind's future is only as large as it needs.
trait Op: Copy {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>>;
}

impl Op for &Cmd {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.query_async(conn)
    }
}

impl Op for &Pipeline {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.query_async(conn)
    }
}

impl Op for &ScriptInvocation<'_> {
    fn run<T: FromRedisValue>(self, conn: &mut Conn) -> impl Future<Output = RedisResult<T>> {
        self.invoke_async(conn)
    }
}

fn cluster_client(config: &RedisConfig) -> Result<ClusterClient, Error> {
    Ok(ClusterClient::builder(config.all_urls())
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.command_timeout)
        .retries(2)
        .build()?)
}

/// One connection, whatever kind the backend holds.
enum Conn {
    Mux(MultiplexedConnection),
    Manager(ConnectionManager),
    Pooled(deadpool_redis::Connection),
    Cluster(ClusterConnection),
    ClusterPooled(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Mux(c) => c.req_packed_command(cmd),
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::ClusterPooled(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Mux(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::ClusterPooled(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Mux(c) => c.get_db(),
            Self::Manager(c) => c.get_db(),
            Self::Pooled(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::ClusterPooled(c) => c.get_db(),
        }
    }
}
