//! The response future of [`Pressure`](crate::Pressure).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::state::InFlightGuard;

pin_project! {
    /// Response future of [`Pressure`](crate::Pressure).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] fut: F, guard: Option<InFlightGuard> },
        Shed { res: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(fut: F, guard: Option<InFlightGuard>) -> Self {
        Self {
            kind: Kind::Inner { fut, guard },
        }
    }

    pub(crate) fn shed(res: Response<B>) -> Self {
        Self {
            kind: Kind::Shed { res: Some(res) },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut, guard } => {
                let out = std::task::ready!(fut.poll(cx));
                drop(guard.take());
                Poll::Ready(out)
            }
            KindProj::Shed { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
