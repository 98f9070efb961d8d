//! The response future of [`ReadWrite`](crate::ReadWrite): sets the read-your-writes cookie
//! after a successful write.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, header};
use pin_project_lite::pin_project;

use crate::layer::State;

pin_project! {
    /// Response future of [`ReadWrite`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<Arc<State>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: Option<Arc<State>>) -> Self {
        Self { inner, state }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let (Some(state), Ok(res)) = (this.state.take(), &mut result) {
            let status = res.status();
            if (status.is_success() || status.is_redirection())
                && let Some(cookie) = state.cookie()
            {
                res.headers_mut().append(header::SET_COOKIE, cookie);
            }
        }
        Poll::Ready(result)
    }
}
