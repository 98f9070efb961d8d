//! [`ReadWrite`], the middleware: puts the [`DbRoute`](crate::DbRoute) in the request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::State;
use crate::names::REPLICA_ROUTES_TOTAL;
use crate::route::Reason;

/// The middleware built by [`ReadWriteLayer`](crate::ReadWriteLayer).
#[derive(Clone)]
pub struct ReadWrite<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> ReadWrite<S> {
    pub(crate) fn new(inner: S, state: Arc<State>) -> Self {
        Self { inner, state }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ReadWrite<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWrite")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ReadWrite<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let route = self.state.decide(&req);
        metrics::counter!(
            REPLICA_ROUTES_TOTAL.name,
            "target" => route.target.as_str(),
            "reason" => route.reason.as_str(),
        )
        .increment(1);
        req.extensions_mut().insert(route);
        ResponseFuture::new(
            self.inner.call(req),
            (route.reason == Reason::Write).then(|| Arc::clone(&self.state)),
        )
    }
}
