//! [`Breaker`], the middleware: asks the breaker, then calls the inner service or refuses.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use tower_scale_core::{DefaultRefusal, Refusal, Refuse, retry_after_value};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Breakers;
use crate::policy::{ClassifyResponse, ServerErrorsAsFailures};

/// The middleware built by [`BreakerLayer`](crate::BreakerLayer).
#[derive(Clone)]
pub struct Breaker<S, C = ServerErrorsAsFailures, R = DefaultRefusal> {
    inner: S,
    breakers: Breakers,
    classify: C,
    refuse: R,
    status: StatusCode,
}

impl<S, C, R> Breaker<S, C, R> {
    pub(crate) fn new(
        inner: S,
        breakers: Breakers,
        classify: C,
        refuse: R,
        status: StatusCode,
    ) -> Self {
        Self {
            inner,
            breakers,
            classify,
            refuse,
            status,
        }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S: fmt::Debug, C, R> fmt::Debug for Breaker<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for Breaker<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyResponse,
    R: Refuse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.breakers.try_acquire(req.uri(), req.headers()) {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Err(rejected) => {
                let wait = rejected.retry_after();
                let refusal = Refusal::new(self.status, "circuit-open")
                    .retry_after(wait)
                    .detail(&rejected);
                let mut res = self.refuse.refuse(&refusal);
                if let Some(wait) = wait
                    && !res.headers().contains_key(header::RETRY_AFTER)
                {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, retry_after_value(wait));
                }
                ResponseFuture::rejected(res)
            }
        }
    }
}
