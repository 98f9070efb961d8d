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
        Streamed {
            #[pin]
            inner: tower_http::compression::CompressionBody<B>,
        },
        Identity {
            #[pin]
            inner: B,
        },
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<B: Body> CompressionBody<B> {
    pub(crate) fn streamed(inner: tower_http::compression::CompressionBody<B>) -> Self {
        Self {
            inner: BodyInner::Streamed { inner },
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
                trailers,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            inner: BodyInner::Failed { error: Some(error) },
        }
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
            BodyInnerProj::Streamed { inner } => inner.poll_frame(cx),
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
                    .or_else(|| trailers.take().map(Frame::trailers))
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
