//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tower::ServiceExt;

#[path = "../../benches/support/mod.rs"]
mod bench_support;
#[allow(unused_imports)] // not every test target uses it
pub(crate) use bench_support::json;

/// What `encoding` at `level` makes of `data`, encoded in one go by async-compression.
pub(crate) async fn reference(encoding: &str, level: i32, data: &[u8]) -> Vec<u8> {
    use async_compression::Level;
    use async_compression::tokio::bufread as enc;
    let q = Level::Precise(level);
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            enc::GzipEncoder::with_quality(data, q)
                .read_to_end(&mut out)
                .await
        }
        "br" => {
            enc::BrotliEncoder::with_quality(data, q)
                .read_to_end(&mut out)
                .await
        }
        "zstd" => {
            enc::ZstdEncoder::with_quality(data, q)
                .read_to_end(&mut out)
                .await
        }
        "deflate" => {
            enc::ZlibEncoder::with_quality(data, q)
                .read_to_end(&mut out)
                .await
        }
        other => panic!("unexpected encoding {other}"),
    }
    .unwrap();
    out
}

pub(crate) async fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
    let mut out = Vec::new();
    match encoding {
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        // HTTP's "deflate" is the zlib format.
        "deflate" => ZlibDecoder::new(data).read_to_end(&mut out).await,
        other => panic!("unexpected encoding {other}"),
    }
    .unwrap();
    out
}

/// A response as the tests read it.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

pub(crate) async fn get(app: &Router, path: &str, accept: &str) -> Fetched {
    let req = Request::get(path)
        .header(header::ACCEPT_ENCODING, accept)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let headers = res.headers().clone();
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Fetched {
        headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// A body of known length sent in several chunks, then trailers, or an error after its
/// first chunk.
pub(crate) struct ChunkedBody {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) fail_after_first: bool,
    pub(crate) len: u64,
    pub(crate) sent: usize,
}

impl ChunkedBody {
    pub(crate) fn new(
        chunks: Vec<Bytes>,
        trailers: Option<HeaderMap>,
        fail_after_first: bool,
    ) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks,
            trailers,
            fail_after_first,
            len,
            sent: 0,
        }
    }
}

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.fail_after_first && this.sent == 1 {
            this.sent += 1;
            return Poll::Ready(Some(Err(std::io::Error::other("upstream reset"))));
        }
        if this.sent < this.chunks.len() {
            this.sent += 1;
            return Poll::Ready(Some(Ok(Frame::data(this.chunks[this.sent - 1].clone()))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}
