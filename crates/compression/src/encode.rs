//! The offloaded path (the `pool` feature): the whole body collected, then encoded on the pool
//! with async-compression's encoders (the ones tower-http streams through), driven to
//! completion on the pool's thread.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_compression::Level;
#[cfg(feature = "br")]
use async_compression::tokio::bufread::BrotliEncoder;
#[cfg(feature = "zstd")]
use async_compression::tokio::bufread::ZstdEncoder;
use async_compression::tokio::bufread::{GzipEncoder, ZlibEncoder};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt};
use tower_scale_offload::Offload;

use crate::predicate::{add_vary, weaken_etag};
use crate::shared::Plan;
use crate::{BoxError, CompressionBody, Encoding};

/// Encodes `input` at `level`, with the parameters tower-http uses for the same encoding and
/// level, so both paths produce the same stream for the same bytes.
pub(crate) fn encode(encoding: Encoding, level: i32, input: &[u8]) -> io::Result<Vec<u8>> {
    // JSON and text compress 4-10x; start near that and let the vector grow when it is not.
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    let quality = Level::Precise(level);
    match encoding {
        Encoding::Gzip => drive(GzipEncoder::with_quality(input, quality), &mut out)?,
        Encoding::Deflate => drive(ZlibEncoder::with_quality(input, quality), &mut out)?,
        #[cfg(feature = "br")]
        Encoding::Br => drive(BrotliEncoder::with_quality(input, quality), &mut out)?,
        #[cfg(feature = "zstd")]
        Encoding::Zstd if level >= 17 => {
            // As tower-http does: keep the window at 8 MiB, the most browsers decode.
            let params = [async_compression::zstd::CParameter::window_log(23)];
            drive(
                ZstdEncoder::with_quality_and_params(input, quality, &params),
                &mut out,
            )?;
        }
        #[cfg(feature = "zstd")]
        Encoding::Zstd => drive(ZstdEncoder::with_quality(input, quality), &mut out)?,
        // Never planned (`Shared::new` leaves it out); the body would go out as it is.
        #[cfg(not(all(feature = "br", feature = "zstd")))]
        other => {
            return Err(io::Error::other(format!(
                "{} is not compiled in",
                other.token()
            )));
        }
    }
    Ok(out)
}

/// Reads `reader` to its end in one poll: it reads from memory and writes to memory, so it is
/// never pending and needs no runtime.
fn drive<R: AsyncRead + Unpin>(mut reader: R, out: &mut Vec<u8>) -> io::Result<()> {
    let read = pin!(reader.read_to_end(out));
    match read.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.map(drop),
        Poll::Pending => Err(io::Error::other("in-memory encoder was pending")),
    }
}

/// Collects the body (on the async worker: it is I/O), encodes it on the pool, and answers
/// with the encoded bytes and their exact `Content-Length`. When the pool is full, or the
/// encoder fails, the collected body goes out as it is: correct, only larger.
pub(crate) async fn encode_on_pool<B>(
    mut parts: http::response::Parts,
    body: B,
    len: u64,
    plan: Plan,
    offload: Offload,
) -> Response<CompressionBody<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (data, trailers) = match collect(body, len).await {
        Ok(collected) => collected,
        Err(error) => return Response::from_parts(parts, CompressionBody::failed(error)),
    };
    add_vary(&mut parts.headers);
    let input = data.clone();
    let Plan {
        encoding, level, ..
    } = plan;
    match offload.run(move || encode(encoding, level, &input)).await {
        Ok(Ok(encoded)) => {
            set_encoded_headers(&mut parts.headers, encoding, encoded.len());
            Response::from_parts(
                parts,
                CompressionBody::buffered(Bytes::from(encoded), trailers),
            )
        }
        Ok(Err(_)) | Err(_) => {
            Response::from_parts(parts, CompressionBody::buffered(data, trailers))
        }
    }
}

fn set_encoded_headers(headers: &mut HeaderMap, encoding: Encoding, len: usize) {
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    weaken_etag(headers);
}

/// The whole body: a body of one chunk (the usual `Full` body) is taken without a copy.
async fn collect<B>(body: B, len: u64) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(mut data) => {
                let chunk = data.copy_to_bytes(data.remaining());
                if let Some(buf) = joined.as_mut() {
                    buf.extend_from_slice(&chunk);
                } else if first.is_empty() {
                    first = chunk;
                } else if !chunk.is_empty() {
                    let capacity = usize::try_from(len).unwrap_or(0);
                    let mut buf = BytesMut::with_capacity(capacity.max(first.len() + chunk.len()));
                    buf.extend_from_slice(&first);
                    buf.extend_from_slice(&chunk);
                    joined = Some(buf);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((joined.map_or(first, BytesMut::freeze), trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(feature = "br", feature = "zstd"))]
    fn every_encoding_produces_its_format() {
        let input = b"hello hello hello hello hello hello hello hello".repeat(50);
        let gzip = encode(Encoding::Gzip, 6, &input).unwrap();
        assert_eq!(&gzip[..2], &[0x1f, 0x8b], "gzip magic");
        let zstd = encode(Encoding::Zstd, 19, &input).unwrap();
        assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let zlib = encode(Encoding::Deflate, 6, &input).unwrap();
        assert_eq!(zlib[0] & 0x0f, 8, "zlib CM=8 (deflate)");
        let br = encode(Encoding::Br, 11, &input).unwrap();
        for out in [&gzip, &zstd, &zlib, &br] {
            assert!(out.len() < input.len() / 10, "{} bytes", out.len());
        }
    }
}
