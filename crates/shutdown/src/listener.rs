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
        #[cfg(unix)]
        INHERITED_FD.store(
            std::os::fd::AsRawFd::as_raw_fd(&std_listener),
            std::sync::atomic::Ordering::Release,
        );
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

/// The descriptor of the socket [`listener`] took from systemd, which outlives this process.
#[cfg(unix)]
static INHERITED_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// How long [`close_listener`] keeps taking connections after it stopped new handshakes: time
/// for a handshake already under way (its SYN answered) to complete.
const HANDSHAKE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Closes a listener without resetting a connection a client may already be sending a request
/// on; `serve` gets every connection that completed its handshake first.
///
/// Closing a listening socket resets the connections queued in its accept backlog: the kernel
/// completed their handshakes, so their clients may have sent a request, which a proxy such as
/// nginx does not re-send elsewhere when it is a POST. So on Linux the listener first drops
/// every new handshake (a socket filter discards SYN segments: the client retries after about a
/// second and by then finds the port closed, i.e. refused, which a proxy retries elsewhere, or
/// the next process listening), then keeps accepting for 250 ms, so the handshakes already
/// answered complete and are served, then accepts what is queued and closes. Elsewhere it
/// accepts what is queued and closes.
///
/// A socket that outlives the process, the one [`listener`] takes from systemd socket
/// activation, is only dropped: its queued connections wait for the next process. (A socket
/// activated by other means must be dropped rather than passed here: the filter would stay on
/// it.)
pub async fn close_listener(
    listener: tokio::net::TcpListener,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    #[cfg(unix)]
    if std::os::fd::AsRawFd::as_raw_fd(&listener)
        == INHERITED_FD.load(std::sync::atomic::Ordering::Acquire)
    {
        return;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Err(e) = socket2::SockRef::from(&listener).attach_filter(&DROP_SYN) {
            tracing::warn!(error = %e, "cannot filter new handshakes: closing the listener at once");
        } else {
            let grace = tokio::time::sleep(HANDSHAKE_GRACE);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => serve(stream, peer),
                        Err(e) => tracing::debug!(error = %e, "accept failed"),
                    },
                    () = &mut grace => break,
                }
            }
        }
    }
    // What is queued now, then close.
    loop {
        match std::future::poll_fn(|cx| match listener.poll_accept(cx) {
            std::task::Poll::Pending => std::task::Poll::Ready(None),
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        })
        .await
        {
            Some(Ok((stream, peer))) => serve(stream, peer),
            Some(Err(e)) if is_connection_error(&e) => {}
            Some(Err(_)) | None => break,
        }
    }
    drop(listener);
}

/// A classic BPF program for a TCP socket: drop a segment with SYN set and ACK clear (a new
/// handshake), keep everything else. The filter sees the TCP header at offset 0.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DROP_SYN: [socket2::SockFilter; 5] = [
    // ldb [13]: the flags byte
    socket2::SockFilter::new(0x30, 0, 0, 13),
    // and #0x12: SYN | ACK
    socket2::SockFilter::new(0x54, 0, 0, 0x12),
    // jeq #0x02 (SYN alone): fall through to drop, else skip to keep
    socket2::SockFilter::new(0x15, 0, 1, 0x02),
    // ret #0: drop
    socket2::SockFilter::new(0x06, 0, 0, 0),
    // ret #0xffffffff: keep
    socket2::SockFilter::new(0x06, 0, 0, u32::MAX),
];

/// An accept error that concerns one connection, not the listener (as hyper and axum read them).
pub(crate) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
