//! The connection modes of the backend: our own links (the default), redis-rs connection
//! managers, deadpool pools, cluster connections; how each is built from the config and how a
//! command gets a connection from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::link::Link;
#[cfg(feature = "tls")]
use crate::link::TlsConnect;
use crate::tls::{Tls, client_for};
use crate::{ConnectionKind, Error, Mode, RedisConfig};

/// The connections of a backend, in the mode its config chose.
pub(super) enum Conns {
    /// The default: our own reconnecting links, each with a watchdog instead of a timer per
    /// command.
    Link(Box<[Arc<Link>]>),
    /// Multiplexed connections to a Unix socket: redis-rs `ConnectionManager`, under a timer
    /// per command.
    Multiplexed(Box<[LazyManager]>),
    Pooled(deadpool_redis::Pool),
    Cluster(Box<[LazyCluster]>),
    ClusterPooled(deadpool_redis::cluster::Pool),
}

/// A `ConnectionManager` created on first use, inside the runtime (creating one needs a tokio
/// runtime; building the backend does not).
pub(super) struct LazyManager {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: std::sync::OnceLock<ConnectionManager>,
}

/// A cluster connection opened on first use; a failed open is retried by the next command.
pub(super) struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl Conns {
    /// The connections `config` asks for (already validated). No connection is opened here;
    /// the TLS files are read, and for links the system's root certificates too.
    pub(super) fn new(config: &RedisConfig) -> Result<Self, Error> {
        let size = config.effective_pool_size();
        let tls = Tls::load(config)?;
        let pool_config = || {
            let mut pool = PoolConfig::new(size);
            pool.timeouts = Timeouts {
                wait: Some(config.command_timeout),
                create: Some(config.connect_timeout),
                recycle: Some(config.command_timeout),
            };
            pool
        };
        Ok(match (config.mode, config.connection) {
            (Mode::Standalone, ConnectionKind::Multiplexed) => {
                let client = client_for(tls.as_ref(), &config.url)?;
                let info = client.get_connection_info();
                let tcp = match (info.addr(), &tls) {
                    (ConnectionAddr::Tcp(host, port), _) => Some((host, *port, None)),
                    #[cfg(feature = "tls")]
                    (ConnectionAddr::TcpTls { host, port, .. }, Some(tls)) => {
                        Some((host, *port, Some(TlsConnect::new(tls.connector()?, host)?)))
                    }
                    _ => None,
                };
                if let Some((host, port, tls)) = tcp {
                    let links = (0..size).map(|_| {
                        Arc::new(Link::new(
                            host.clone(),
                            port,
                            info.tcp_settings().nodelay(),
                            info.redis_settings().clone(),
                            config.connect_timeout,
                            config.command_timeout,
                            tls.clone(),
                        ))
                    });
                    return Ok(Self::Link(links.collect()));
                }
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    // The backend bounds every command itself; a second timer per command inside
                    // redis-rs would only cost time.
                    .set_response_timeout(None)
                    .set_max_delay(Duration::from_secs(1));
                Self::Multiplexed(
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
                // Built from the client's connection info, which carries the TLS settings.
                let client = client_for(tls.as_ref(), &config.url)?;
                let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())?;
                Self::Pooled(
                    deadpool_redis::Pool::builder(manager)
                        .config(pool_config())
                        .runtime(Runtime::Tokio1)
                        .build()
                        .map_err(|e| Error::Config(format!("url: {e}")))?,
                )
            }
            (Mode::Cluster, ConnectionKind::Multiplexed) => {
                let client = cluster_client(config, tls.as_ref())?;
                Self::Cluster(
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
                Self::ClusterPooled(
                    cfg.create_pool(Some(Runtime::Tokio1))
                        .map_err(|e| Error::Config(format!("url: {e}")))?,
                )
            }
        })
    }

    /// The mode, for `Debug`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Link(_) | Self::Multiplexed(_) => "multiplexed",
            Self::Pooled(_) => "pooled",
            Self::Cluster(_) => "cluster multiplexed",
            Self::ClusterPooled(_) => "cluster pooled",
        }
    }

    /// The links of the default mode, `None` in the other modes.
    #[inline]
    pub(super) fn links(&self) -> Option<&[Arc<Link>]> {
        match self {
            Self::Link(links) => Some(links),
            _ => None,
        }
    }

    /// A connection of the modes other than [`Conns::Link`] (`next` spreads commands over
    /// the connections).
    pub(super) async fn conn(&self, next: &AtomicUsize) -> Result<Conn, Error> {
        // The pool and cluster-connect futures are large (kilobytes); they are boxed so that
        // every command's future stays small. The manager path allocates nothing.
        Ok(match self {
            Self::Link(_) => unreachable!("links are run by RedisBackend::run"),
            Self::Multiplexed(lazies) => {
                let lazy = pick(next, lazies);
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
            Self::Pooled(pool) => Conn::Pooled(Box::pin(pool.get()).await?),
            Self::Cluster(lazies) => {
                let lazy = pick(next, lazies);
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
            Self::ClusterPooled(pool) => Conn::ClusterPooled(Box::pin(pool.get()).await?),
        })
    }
}

/// One of `items`, in turn (`next` counts the picks).
#[inline]
pub(super) fn pick<'a, T>(next: &AtomicUsize, items: &'a [T]) -> &'a T {
    if items.len() == 1 {
        return &items[0];
    }
    let i = next.fetch_add(1, Ordering::Relaxed);
    &items[i % items.len()]
}

fn cluster_client(config: &RedisConfig, tls: Option<&Tls>) -> Result<ClusterClient, Error> {
    let builder = ClusterClient::builder(config.all_urls())
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.command_timeout)
        .retries(2);
    // `rediss://` seeds alone give TLS with the system's roots; the files need `certs`.
    #[cfg(feature = "tls")]
    let builder = match tls {
        Some(tls) if tls.has_files() => builder.certs(tls.certificates()),
        _ => builder,
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    Ok(builder.build()?)
}

/// One connection, whatever kind the backend holds.
pub(super) enum Conn {
    Mux(MultiplexedConnection),
    Manager(ConnectionManager),
    Pooled(deadpool_redis::Connection),
    Cluster(ClusterConnection),
    ClusterPooled(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Conn {
    #[inline]
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Mux(c) => c.req_packed_command(cmd),
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::ClusterPooled(c) => c.req_packed_command(cmd),
        }
    }

    #[inline]
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

    #[inline]
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
