//! Where a link connects, and opening one connection there.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::net::TcpStream;

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
    ) -> Self {
        Self {
            host,
            port,
            nodelay,
            info,
            connect_timeout,
        }
    }

    /// Connects and runs the connection setup (`AUTH`, `SELECT`, `HELLO`, `CLIENT SETINFO`
    /// as the URL asks), all within `connect_timeout`.
    pub(super) async fn open(&self) -> RedisResult<(MultiplexedConnection, Driver)> {
        let open = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.set_nodelay(self.nodelay)?;
            // No response timeout inside redis-rs: the watchdog bounds every command.
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(None);
            let (conn, driver) =
                MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
            Ok((conn, Box::pin(driver) as Driver))
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
