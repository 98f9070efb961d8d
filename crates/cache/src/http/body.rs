use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The body of a response that went through [`ResponseCache`](crate::ResponseCache):
    /// bytes from the cache, or the origin's body (possibly after a buffered prefix).
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Stream { prefix: VecDeque<Bytes>, error: Option<BoxError>, body: Pin<Box<B>> },
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Full { data, .. } => f
                .debug_struct("ResponseBody::Full")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Inner::Stream { prefix, .. } => f
                .debug_struct("ResponseBody::Stream")
                .field("buffered", &prefix.len())
                .finish(),
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
                trailers: None,
            },
        }
    }

    pub(crate) fn full_with_trailers(data: Bytes, trailers: HeaderMap) -> Self {
        Self {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
                trailers: Some(trailers),
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub(crate) fn stream(body: B) -> Self {
        Self::resume(VecDeque::new(), None, Box::pin(body))
    }

    /// Chunks already read, then an error or the rest of `body`.
    pub(crate) fn resume(
        prefix: VecDeque<Bytes>,
        error: Option<BoxError>,
        body: Pin<Box<B>>,
    ) -> Self {
        Self {
            inner: Inner::Stream {
                prefix,
                error,
                body,
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
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
            InnerProj::Full { data, trailers } => Poll::Ready(match data.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
            InnerProj::Stream {
                prefix,
                error,
                body,
            } => {
                if let Some(chunk) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                        frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                    ))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Stream {
                prefix,
                error,
                body,
            } => prefix.is_empty() && error.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Stream { prefix, body, .. } => {
                let buffered: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + buffered);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

/// The origin's body read up to a limit.
pub(crate) enum Buffered<B> {
    /// The whole body (and trailers, if any).
    Complete(Bytes, Option<HeaderMap>),
    /// Over the limit: what was read, and the rest.
    TooLarge(VecDeque<Bytes>, Pin<Box<B>>),
    /// The body failed after these chunks.
    Failed(VecDeque<Bytes>, BoxError, Pin<Box<B>>),
}

pub(crate) async fn buffer<B>(mut body: Pin<Box<B>>, limit: usize) -> Buffered<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    if body.size_hint().lower() > limit as u64 {
        return Buffered::TooLarge(VecDeque::new(), body);
    }
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut total = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Buffered::Failed(chunks, e.into(), body),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let chunk = data.copy_to_bytes(data.remaining());
                    total += chunk.len();
                    chunks.push_back(chunk);
                    if total > limit {
                        return Buffered::TooLarge(chunks, body);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Buffered::Complete(concat(chunks, total), Some(trailers));
                    }
                }
            },
        }
    }
    Buffered::Complete(concat(chunks, total), None)
}

fn concat(mut chunks: VecDeque<Bytes>, total: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().unwrap_or_default(),
        _ => {
            let mut out = bytes::BytesMut::with_capacity(total);
            for c in chunks {
                out.extend_from_slice(&c);
            }
            out.freeze()
        }
    }
}
