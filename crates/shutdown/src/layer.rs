use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, Version, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::coordinator::{InFlightGuard, Shutdown};

/// Counts requests in flight for a [`Shutdown`] and, from the moment the shutdown starts, marks
/// HTTP/1.1 responses `Connection: close`: keep-alive clients and proxies drop their pooled
/// connections to this instance during the pre-stop delay, while the listener still accepts,
/// so none of them sends a request on a connection the drain is about to close.
/// Built by [`Shutdown::layer`].
#[derive(Clone, Debug)]
pub struct InFlightLayer {
    shutdown: Shutdown,
}

impl Shutdown {
    /// The layer counting requests and closing keep-alive connections during the drain.
    pub fn layer(&self) -> InFlightLayer {
        InFlightLayer {
            shutdown: self.clone(),
        }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The middleware built by [`InFlightLayer`].
#[derive(Clone, Debug)]
pub struct InFlight<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S> InFlight<S> {
    tower_scale_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InFlight<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let http11 = req.version() == Version::HTTP_11 || req.version() == Version::HTTP_10;
        ResponseFuture::new(self.inner.call(req), self.shutdown.enter(), http11)
    }
}

pin_project! {
    /// Response future of [`InFlight`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Counts the request until it is answered; also how the answer reads the phase.
        guard: Option<InFlightGuard>,
        http11: bool,
    }
}

impl<F> ResponseFuture<F> {
    /// Counts the request with `guard` until `inner` answers; an HTTP/1 answer given once the
    /// drain began says `Connection: close`.
    pub(crate) fn new(inner: F, guard: InFlightGuard, http11: bool) -> Self {
        Self {
            inner,
            guard: Some(guard),
            http11,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        let draining = this
            .guard
            .take()
            .is_some_and(|guard| guard.phase() >= crate::Phase::NotReady);
        if *this.http11
            && draining
            && let Ok(res) = &mut result
        {
            mark_close(res);
        }
        Poll::Ready(result)
    }
}

/// Marks an HTTP/1 response `Connection: close`: the server closes the connection right after it.
pub(crate) fn mark_close<B>(res: &mut Response<B>) {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Counts the connections of a server: wraps the service given to `axum::serve` (one clone per
/// connection), see [`Shutdown::count_connections`].
#[derive(Clone, Debug)]
pub struct CountConnections<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S> CountConnections<S> {
    tower_scale_core::inner_service_accessors!();
}

impl Shutdown {
    /// Wraps the app given to `axum::serve` so that [`connections`](Shutdown::connections)
    /// counts open connections: `axum::serve(listener, shutdown.count_connections(app))`.
    pub fn count_connections<S>(&self, app: S) -> CountConnections<S> {
        CountConnections {
            inner: app,
            shutdown: self.clone(),
        }
    }
}

/// The per-connection service of [`CountConnections`]: the connection counts until its last
/// clone (the connection's) is dropped.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    _guard: std::sync::Arc<crate::coordinator::ConnectionGuard>,
}

impl<S> Counted<S> {
    // `into_inner` drops the connection's count with this clone.
    tower_scale_core::inner_service_accessors!();
}

impl<S: Clone, T> Service<T> for CountConnections<S> {
    type Response = Counted<S>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Counted<S>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _target: T) -> Self::Future {
        std::future::ready(Ok(Counted {
            inner: self.inner.clone(),
            _guard: std::sync::Arc::new(self.shutdown.connection()),
        }))
    }
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}
