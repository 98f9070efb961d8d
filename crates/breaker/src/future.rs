//! The response future of [`Breaker`](crate::Breaker): records the call's outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::breaker::Permit;
use crate::outcome::Outcome;
use crate::policy::ClassifyResponse;

pin_project! {
    /// Response future of [`Breaker`](crate::Breaker).
    pub struct ResponseFuture<Fut, C, B> {
        #[pin]
        kind: Kind<Fut, C, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<Fut, C, B> {
        Called { #[pin] fut: Fut, permit: Option<Permit>, classify: C },
        Rejected { res: Option<Response<B>> },
    }
}

impl<Fut, C, B> ResponseFuture<Fut, C, B> {
    /// The inner service's future, whose result `classify` records through `permit` (none:
    /// no breaker guards the request).
    pub(crate) fn called(fut: Fut, permit: Option<Permit>, classify: C) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                permit,
                classify,
            },
        }
    }

    /// The answer to a rejected call.
    pub(crate) fn rejected(res: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected { res: Some(res) },
        }
    }
}

impl<Fut, C, B> fmt::Debug for ResponseFuture<Fut, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Fut, C, B, E> Future for ResponseFuture<Fut, C, B>
where
    Fut: Future<Output = Result<Response<B>, E>>,
    C: ClassifyResponse,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                permit,
                classify,
            } => {
                let result = std::task::ready!(fut.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(match &result {
                        Ok(res) => classify.classify(res.status(), res.headers()),
                        Err(_) => Outcome::FAILURE,
                    });
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
