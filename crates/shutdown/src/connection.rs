use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tower_service::Service;

use crate::coordinator::Shutdown;

/// The error type of a served connection (hyper's, or the I/O error of its first read).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service that [`Shutdown::serve`] and [`Shutdown::serve_connection`] can serve (an
/// axum `Router`, say): implemented for every `Clone + Send` service of
/// `Request<hyper::body::Incoming>` with a `Send` future, an error convertible to [`BoxError`],
/// and a `Send` response body whose error converts to [`BoxError`] too.
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type ResBody = B;
}

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Shutdown {
    /// Serves one accepted connection, HTTP/1.1 or HTTP/2 (told apart by the client's first
    /// bytes), so that the shutdown closes it only where no request can be lost; for a
    /// hyper-util accept loop of your own (`Shutdown::serve` runs one for you):
    ///
    /// - HTTP/1: once the shutdown has started, every response carries `Connection: close` and
    ///   the connection closes right after it. An idle keep-alive connection is never closed
    ///   under a client that may be writing a request on it: it stays open until a request
    ///   arrives (answered with `Connection: close`, then closed) or the client closes it.
    /// - HTTP/2: when the shutdown starts the connection sends `GOAWAY` (hyper's graceful
    ///   shutdown: a first `GOAWAY`, then one with the last stream id), its streams in flight
    ///   complete, then it closes.
    /// - Either way, the connection is cut once the drain deadline
    ///   ([`ShutdownConfig::drain_timeout`](crate::ShutdownConfig), counted from the start of
    ///   the drain) has passed, or when the exit is forced.
    ///
    /// `peer`, when given, is put in every request's extensions, as axum's
    /// `ConnectInfo<SocketAddr>` with the `axum` feature and as a plain `SocketAddr` without.
    /// HTTP/1 upgrades (WebSocket) and HTTP/2's extended `CONNECT` are supported. The
    /// connection counts in [`connections`](Shutdown::connections) until it ends.
    ///
    /// ```no_run
    /// # async fn run(shutdown: tower_scale_shutdown::Shutdown, app: axum::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let stop = shutdown.stop_accepting();
    /// tokio::pin!(stop);
    /// let mut connections = tokio::task::JoinSet::new();
    /// loop {
    ///     tokio::select! {
    ///         accepted = listener.accept() => {
    ///             let (stream, peer) = accepted?;
    ///             connections.spawn(shutdown.serve_connection(stream, app.clone(), Some(peer)));
    ///         }
    ///         () = &mut stop => break,
    ///     }
    /// }
    /// // Take the connections that finished their handshake before the listener closes.
    /// tower_scale_shutdown::close_listener(listener, |stream, peer| {
    ///     connections.spawn(shutdown.serve_connection(stream, app.clone(), Some(peer)));
    /// })
    /// .await;
    /// while connections.join_next().await.is_some() {}
    /// # Ok(()) }
    /// ```
    pub fn serve_connection<I, S>(
        &self,
        io: I,
        service: S,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: HttpService,
    {
        let shutdown = self.clone();
        let guard = self.connection();
        async move {
            let _guard = guard;
            let deadline = shutdown.drain_deadline();
            tokio::select! {
                served = serve(&shutdown, io, service, peer) => served,
                () = deadline => {
                    tracing::debug!("drain deadline passed: closing a connection");
                    Ok(())
                }
            }
        }
    }
}

async fn serve<I, S>(
    shutdown: &Shutdown,
    mut io: I,
    service: S,
    peer: Option<SocketAddr>,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    // Until its first bytes a connection is idle: it waits for them even during the drain.
    let mut start = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    while len < start.len() && start[..len] == H2_PREFACE[..len] {
        let n = io.read(&mut start[len..]).await?;
        if n == 0 {
            return Ok(()); // closed by the client before a request
        }
        len += n;
    }
    let http2 = start[..len] == H2_PREFACE[..];
    let io = TokioIo::new(Rewind {
        start,
        pos: 0,
        len,
        inner: io,
    });
    let service = TowerToHyperService::new(ConnService {
        inner: service,
        shutdown: shutdown.clone(),
        peer,
        http1: !http2,
    });
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.enable_connect_protocol();
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let requested = shutdown.requested();
        tokio::select! {
            done = conn.as_mut() => return done.map_err(Into::into),
            () = requested => {}
        }
        conn.as_mut().graceful_shutdown();
        conn.await.map_err(Into::into)
    } else {
        // Never `graceful_shutdown`: on an idle connection hyper closes at once, under a client
        // that may be sending a request. `Connection: close` on the next response ends it.
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades()
            .await
            .map_err(Into::into)
    }
}

/// The connection's first bytes, read to tell HTTP/2 from HTTP/1, then the rest.
struct Rewind<I> {
    start: [u8; H2_PREFACE.len()],
    pos: usize,
    len: usize,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.start[pos..pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The service of one connection: the peer's address in each request; on HTTP/1, `Connection:
/// close` on each response once the shutdown has started.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    shutdown: Shutdown,
    peer: Option<SocketAddr>,
    http1: bool,
}

impl<S, B> Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = crate::layer::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let req_http1 = req.version() <= Version::HTTP_11;
        if let Some(peer) = self.peer {
            #[cfg(feature = "axum")]
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            #[cfg(not(feature = "axum"))]
            req.extensions_mut().insert(peer);
        }
        crate::layer::ResponseFuture::new(
            self.inner.call(req),
            self.shutdown.busy(),
            self.http1 && req_http1,
        )
    }
}
