//! Where a link connects, and opening one connection there (over TCP, or TLS on TCP).

use std::io;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::net::TcpStream;

/// TLS for a link's connections: the connector (built once per backend) and the name the
/// server's certificate must carry (the URL's host).
#[cfg(feature = "tls")]
#[derive(Clone)]
pub(crate) struct TlsConnect {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

/// TLS for a link's connections (none in a build without the `tls` feature).
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(crate) enum TlsConnect {}

#[cfg(feature = "tls")]
impl TlsConnect {
    /// TLS through `connector` to `host`, whose certificate must name it.
    pub(crate) fn new(
        connector: tokio_rustls::TlsConnector,
        host: &str,
    ) -> Result<Self, crate::Error> {
        let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| crate::Error::Config(format!("url: host {host:?}: {e}")))?;
        Ok(Self {
            connector,
            server_name,
        })
    }
}

/// Where and how to connect; shared with the connecting task.
pub(super) struct Target {
    host: String,
    port: u16,
    /// `TCP_NODELAY`, as redis-rs would set it for this URL (off by default: under load,
    /// Nagle's algorithm coalesces the small writes of pipelined commands into fewer packets;
    /// each reply acknowledges the data before it, so a command is not held back).
    nodelay: bool,
    info: RedisConnectionInfo,
    connect_timeout: Duration,
    tls: Option<TlsConnect>,
}

/// The task that drives a new connection (not yet spawned).
pub(super) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Target {
    pub(super) fn new(
        host: String,
        port: u16,
        nodelay: bool,
        info: RedisConnectionInfo,
        connect_timeout: Duration,
        tls: Option<TlsConnect>,
    ) -> Self {
        Self {
            host,
            port,
            nodelay,
            info,
            connect_timeout,
            tls,
        }
    }

    /// Connects (with the TLS handshake for a `rediss://` URL) and runs the connection setup
    /// (`AUTH`, `SELECT`, `HELLO`, `CLIENT SETINFO` as the URL asks), all within
    /// `connect_timeout`.
    pub(super) async fn open(&self) -> RedisResult<(MultiplexedConnection, Driver)> {
        let open = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.set_nodelay(self.nodelay)?;
            // No response timeout inside redis-rs: the watchdog bounds every command.
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(None);
            let (conn, driver) = match &self.tls {
                None => {
                    let (conn, driver) =
                        MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
                    (conn, Box::pin(driver) as Driver)
                }
                #[cfg(feature = "tls")]
                Some(tls) => {
                    let stream = tls
                        .connector
                        .connect(tls.server_name.clone(), stream)
                        .await
                        .map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("TLS handshake with {}:{}: {e}", self.host, self.port),
                            )
                        })?;
                    let (conn, driver) =
                        MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
                    (conn, Box::pin(driver) as Driver)
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match *never {},
            };
            Ok((conn, driver))
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
