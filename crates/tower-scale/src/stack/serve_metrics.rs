//! The `/metrics` endpoint of the `[metrics]` section: answered outside every other layer.

use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Method, Request, Response, header};
use futures_util::future::Either;
use tower::{Layer, Service};

use crate::metrics::PrometheusMetrics;

/// Answers `GET`/`HEAD` of one path with the Prometheus exposition; other requests go on.
#[derive(Clone, Debug)]
pub(crate) struct ServeMetricsLayer {
    path: Arc<str>,
    metrics: PrometheusMetrics,
}

impl ServeMetricsLayer {
    pub(crate) fn new(path: &str, metrics: PrometheusMetrics) -> Self {
        Self {
            path: path.into(),
            metrics,
        }
    }

    /// The path served.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The recorder whose exposition is served.
    pub(crate) fn metrics(&self) -> &PrometheusMetrics {
        &self.metrics
    }
}

impl<S> Layer<S> for ServeMetricsLayer {
    type Service = ServeMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServeMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ServeMetricsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ServeMetrics<S> {
    inner: S,
    layer: ServeMetricsLayer,
}

impl<S, B, ResBody> Service<Request<B>> for ServeMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.uri().path() != &*self.layer.path
            || !(req.method() == Method::GET || req.method() == Method::HEAD)
        {
            return Either::Right(self.inner.call(req));
        }
        let mut res = Response::new(ResBody::from(self.layer.metrics.render()));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Either::Left(std::future::ready(Ok(res)))
    }
}
