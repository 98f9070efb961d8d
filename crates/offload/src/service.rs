//! [`Pressure`], the middleware: sheds a request or passes it on.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, header};
use tower_scale_core::{DefaultRefusal, Refuse};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::state::State;

/// The middleware built by [`PressureLayer`](crate::PressureLayer).
#[derive(Clone, Debug)]
pub struct Pressure<S, R = DefaultRefusal> {
    inner: S,
    state: Arc<State>,
    refuse: R,
}

impl<S, R> Pressure<S, R> {
    pub(crate) fn new(inner: S, state: Arc<State>, refuse: R) -> Self {
        Self {
            inner,
            state,
            refuse,
        }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Pressure<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Refuse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        if state.exempt(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        let (in_flight, guard) = state.enter();
        if let Some(reason) = state.pressure(in_flight) {
            state.shed(reason);
            let mut res = self.refuse.refuse(&state.refusal(&reason));
            let headers = res.headers_mut();
            if !headers.contains_key(header::RETRY_AFTER) {
                headers.insert(header::RETRY_AFTER, state.retry_after().clone());
            }
            headers.insert(
                HeaderName::from_static("x-shed-reason"),
                HeaderValue::from_static(reason.as_str()),
            );
            drop(guard);
            return ResponseFuture::shed(res);
        }
        ResponseFuture::inner(self.inner.call(req), Some(guard))
    }
}
