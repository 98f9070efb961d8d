//! [`ResponseFuture`], the future of [`RateLimit`](crate::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::headers::Headers;

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    /// The service's own future, nothing else (decided without I/O, header fields off).
    #[inline]
    pub(crate) fn passthrough(fut: F) -> Self {
        Self {
            kind: Kind::Passthrough { fut },
        }
    }

    /// The service's future, then the header fields (decided without I/O).
    #[inline]
    pub(crate) fn admitted(fut: F, headers: Option<Headers>) -> Self {
        Self {
            kind: Kind::Admitted { fut, headers },
        }
    }

    /// The layer's own answer.
    #[inline]
    pub(crate) fn answered(res: Response<B>) -> Self {
        Self {
            kind: Kind::Answered { res: Some(res) },
        }
    }

    /// Waiting for the store (Redis), then the service.
    pub(crate) fn waiting(
        fut: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>,
    ) -> Self {
        Self {
            kind: Kind::Waiting { fut },
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        // Decided without I/O (memory store, a live lease) with the header fields off: the
        // service's own future, nothing else (so that it is written in place).
        Passthrough { #[pin] fut: F },
        // Decided without I/O with the header fields on: call the service, then add the
        // headers, written before the call.
        Admitted { #[pin] fut: F, headers: Option<Headers> },
        // Answered by the layer itself.
        Answered { res: Option<Response<B>> },
        // Waiting for the store (Redis).
        Waiting { fut: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>> },
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { fut } => fut.poll(cx),
            KindProj::Admitted { fut, headers } => {
                let mut res = std::task::ready!(fut.poll(cx))?;
                if let Some(headers) = headers.take() {
                    headers.insert(&mut res);
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Answered { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
            KindProj::Waiting { fut } => fut.as_mut().poll(cx),
        }
    }
}
