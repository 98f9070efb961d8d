//! The [`ResponseFuture`] of [`Metrics`](crate::Metrics): records the status class and the
//! latency when the response head is there, and ends the in-flight count however the request
//! ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::routes::{ERROR_CLASS, MethodEntry};

pin_project! {
    /// Response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    /// Measures `inner`, a request counted in flight by [`MethodEntry::begin`].
    pub(crate) fn new(inner: F, method: Arc<MethodEntry>) -> Self {
        Self {
            inner,
            guard: Some(InFlight {
                method,
                start: Instant::now(),
            }),
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            let class = match &result {
                Ok(res) => usize::from(res.status().as_u16() / 100).clamp(1, 5) - 1,
                Err(_) => ERROR_CLASS,
            };
            guard.finish(class);
        }
        Poll::Ready(result)
    }
}

/// Decrements the in-flight gauge when the request ends, also when its future is dropped
/// (client gone, timeout).
struct InFlight {
    method: Arc<MethodEntry>,
    start: Instant,
}

impl InFlight {
    fn finish(self, class: usize) {
        let (count, duration) = self.method.class(class);
        count.increment(1);
        duration.record(self.start.elapsed().as_secs_f64());
        // `Drop` decrements the gauge.
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.method.end();
    }
}
