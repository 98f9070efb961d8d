use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// The listening socket for a server that restarts without refusing a connection.
///
/// - Under systemd socket activation (`LISTEN_FDS`, via the listenfd crate), the socket
///   systemd holds is used: it stays open across restarts of the service, so connections
///   queue in it while the new process starts (see the
///   [shutdown guide](https://github.com/tower-scale/tower-scale/blob/main/docs/shutdown.md) for the unit files).
/// - Otherwise the address is bound, with `SO_REUSEPORT` when `reuse_port` is set, so a new
///   process can bind the same port while the old one drains (Linux balances new connections
///   over both; take the old one out of rotation first, as its backlog is reset when it
///   closes).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tower_scale_shutdown::listener("127.0.0.1:3000".parse().unwrap(), true)?;
/// # Ok(()) }
/// ```
pub fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<tokio::net::TcpListener> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Some(std_listener) = fds.take_tcp_listener(0)? {
        tracing::info!("using the listening socket from systemd socket activation");
        std_listener.set_nonblocking(true)?;
        return tokio::net::TcpListener::from_std(std_listener);
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}
