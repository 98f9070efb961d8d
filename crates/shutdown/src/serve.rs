use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::connection::{BoxError, HttpService};
use crate::coordinator::Shutdown;
use crate::listener::{close_listener, is_connection_error};

/// The accept loop of [`Shutdown::serve`]: await it (it is [`IntoFuture`]), usually inside
/// [`Shutdown::run`].
#[must_use = "a server does nothing until awaited"]
pub struct Serve<S> {
    shutdown: Shutdown,
    listener: TcpListener,
    service: S,
    connect_info: bool,
    nodelay: bool,
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("connect_info", &self.connect_info)
            .field("nodelay", &self.nodelay)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// Serves `service` (an axum `Router`, or any tower service of
    /// `Request<hyper::body::Incoming>`, cloned per connection) on `listener`, HTTP/1.1 and
    /// HTTP/2, until this shutdown drains it: the replacement of
    /// `axum::serve(..).with_graceful_shutdown(..)`, which closes idle keep-alive connections
    /// the moment the drain starts, under a proxy that may be writing a request on one.
    ///
    /// When the drain starts ([`Phase::Draining`](crate::Phase::Draining)) the listener closes
    /// through [`close_listener`] (no queued connection is reset), and each connection ends as
    /// [`serve_connection`](Self::serve_connection) says: HTTP/1 right after a response with
    /// `Connection: close`, HTTP/2 after `GOAWAY` and its last streams. The future resolves
    /// once every connection is done; [`run`](Self::run) cuts it at the drain deadline.
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use tower_scale_shutdown::{Shutdown, ShutdownConfig};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let shutdown = Shutdown::new(ShutdownConfig::default());
    /// shutdown.listen_for_signals();
    /// let app = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(shutdown.layer())
    ///     .merge(shutdown.health_routes());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let serve = shutdown.serve(listener, app).with_connect_info().tcp_nodelay(true);
    /// let report = shutdown.run(serve.into_future()).await;
    /// std::process::exit(report.exit_code());
    /// # }
    /// ```
    pub fn serve<S>(&self, listener: TcpListener, service: S) -> Serve<S> {
        Serve {
            shutdown: self.clone(),
            listener,
            service,
            connect_info: false,
            nodelay: false,
        }
    }
}

impl<S> Serve<S> {
    /// Puts the peer's address in every request's extensions (as axum's
    /// `into_make_service_with_connect_info::<SocketAddr>` does): axum's
    /// `ConnectInfo<SocketAddr>` with the `axum` feature, a `SocketAddr` without.
    pub fn with_connect_info(mut self) -> Self {
        self.connect_info = true;
        self
    }

    /// Sets `TCP_NODELAY` on every accepted connection, so small responses go out at once.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }
}

impl<S> IntoFuture for Serve<S>
where
    S: HttpService,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S> Serve<S>
where
    S: HttpService,
{
    async fn run(self) -> io::Result<()> {
        let Self {
            shutdown,
            listener,
            service,
            connect_info,
            nodelay,
        } = self;
        let mut connections = Connections {
            set: JoinSet::new(),
            shutdown: shutdown.clone(),
            service,
            connect_info,
            nodelay,
        };
        let stop = shutdown.stop_accepting();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => connections.spawn(stream, peer),
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            // Reap the connections that ended, so the set stays as large as the open ones.
            while let Some(done) = connections.set.try_join_next() {
                log_end(done);
            }
        }
        close_listener(listener, |stream, peer| connections.spawn(stream, peer)).await;
        while let Some(done) = connections.set.join_next().await {
            log_end(done);
        }
        Ok(())
    }
}

/// The open connections of a [`Serve`], each a task.
struct Connections<S> {
    set: JoinSet<Result<(), BoxError>>,
    shutdown: Shutdown,
    service: S,
    connect_info: bool,
    nodelay: bool,
}

impl<S> Connections<S>
where
    S: HttpService,
{
    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let peer = self.connect_info.then_some(peer);
        self.set.spawn(
            self.shutdown
                .serve_connection(stream, self.service.clone(), peer),
        );
    }
}

fn log_end(done: Result<Result<(), BoxError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "connection failed"),
        Err(e) => tracing::error!(error = %e, "connection task failed"),
    }
}
