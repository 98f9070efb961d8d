use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// Response body of [`Compression`](crate::Compression): streamed through tower-http's
    /// encoder, passed through as it is, or a body encoded whole on the pool.
    pub struct CompressionBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: BodyInner<B>,
    }
}

pin_project! {
    #[project = BodyInnerProj]
    enum BodyInner<B>
    where
        B: Body,
    {
        // Boxed: tower-http's body holds room for every encoder's state (kilobytes), which
        // would otherwise be moved with every response, encoded or not.
        Streamed {
            inner: Pin<Box<tower_http::compression::CompressionBody<FuseBody<B>>>>,
        },
        Identity {
            #[pin]
            inner: B,
        },
        Buffered {
            data: Option<Bytes>,
            // Boxed: rare, and the body stays small for every response.
            trailers: Option<Box<HeaderMap>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<B: Body> CompressionBody<B> {
    pub(crate) fn streamed(inner: tower_http::compression::CompressionBody<FuseBody<B>>) -> Self {
        Self {
            inner: BodyInner::Streamed {
                inner: Box::pin(inner),
            },
        }
    }

    pub(crate) fn identity(inner: B) -> Self {
        Self {
            inner: BodyInner::Identity { inner },
        }
    }

    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            inner: BodyInner::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers: trailers.map(Box::new),
            },
        }
    }

    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            inner: BodyInner::Failed { error: Some(error) },
        }
    }
}

/// An empty body (what layers outside compression use to answer an error of their own).
impl<B: Body> Default for CompressionBody<B> {
    fn default() -> Self {
        Self::buffered(Bytes::new(), None)
    }
}

impl<B: Body> fmt::Debug for CompressionBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            BodyInner::Streamed { .. } => "streamed",
            BodyInner::Identity { .. } => "identity",
            BodyInner::Buffered { .. } => "buffered",
            BodyInner::Failed { .. } => "failed",
        };
        f.debug_struct("CompressionBody")
            .field("kind", &kind)
            .finish()
    }
}

impl<B> Body for CompressionBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            BodyInnerProj::Streamed { inner } => inner.as_mut().poll_frame(cx),
            BodyInnerProj::Identity { inner } => match ready!(inner.poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(
                    frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                ))),
                Some(Err(error)) => Poll::Ready(Some(Err(error.into()))),
                None => Poll::Ready(None),
            },
            BodyInnerProj::Buffered { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(|t| Frame::trailers(*t)))
                    .map(Ok),
            ),
            BodyInnerProj::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            BodyInner::Streamed { inner } => inner.is_end_stream(),
            BodyInner::Identity { inner } => inner.is_end_stream(),
            BodyInner::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            BodyInner::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            BodyInner::Streamed { inner } => inner.size_hint(),
            BodyInner::Identity { inner } => inner.size_hint(),
            BodyInner::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            BodyInner::Failed { .. } => SizeHint::default(),
        }
    }
}

pin_project! {
    /// A body that answers `None` for good once it has ended. tower-http's encoder polls the
    /// body once more after its end (looking for frames after trailers); a body over a stream
    /// that must not be polled after its end (axum's `Sse` over `futures::stream::unfold`)
    /// would panic there.
    pub(crate) struct FuseBody<B> {
        #[pin]
        inner: B,
        done: bool,
    }
}

impl<B> FuseBody<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self { inner, done: false }
    }

    pub(crate) fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for FuseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            *this.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

pin_project! {
    /// The inner service's response future, its body wrapped in a [`FuseBody`].
    pub(crate) struct FuseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> std::future::Future for FuseFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<FuseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map(|res| res.map(FuseBody::new)))
    }
}

/// The inner service lent to tower-http's `Compression` for one call, its responses seen with a
/// [`FuseBody`]. Lending it (rather than giving tower-http a clone of its own) costs no clone and
/// no readiness round per request: the caller has polled the inner service ready.
pub(crate) struct Lend<'a, S> {
    inner: &'a mut S,
}

impl<'a, S> Lend<'a, S> {
    pub(crate) fn new(inner: &'a mut S) -> Self {
        Self { inner }
    }
}

impl<S, Req, B> tower_service::Service<Req> for Lend<'_, S>
where
    S: tower_service::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<FuseBody<B>>;
    type Error = S::Error;
    type Future = FuseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        FuseFuture {
            inner: self.inner.call(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn the_default_body_is_empty_and_ended() {
        let body = CompressionBody::<Full<Bytes>>::default();
        assert!(body.is_end_stream());
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }
}
