//! [`Metrics`]: finds the handles of each request's route and method, and hands them to its
//! [`ResponseFuture`].

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::routes::Routes;
use crate::{MetricsLayer, ResponseFuture};

/// The middleware built by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    state: Arc<Routes>,
}

impl<S> Metrics<S> {
    /// Wraps `inner` with a new [`MetricsLayer`].
    pub fn new(inner: S) -> Self {
        MetricsLayer::new().layer(inner)
    }

    /// The middleware of a layer: `inner` and the layer's route table.
    pub(crate) fn from_routes(inner: S, state: Arc<Routes>) -> Self {
        Self { inner, state }
    }

    /// A [`MetricsLayer`] with the defaults, to change with its setters.
    pub fn layer() -> MetricsLayer {
        MetricsLayer::new()
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = self
            .state
            .entry(req.extensions().get::<MatchedPath>(), req.method());
        method.begin();
        ResponseFuture::new(self.inner.call(req), method)
    }
}
