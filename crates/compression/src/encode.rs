//! Whole-body encoding for the offloaded path, with async-compression's encoders (the ones
//! tower-http streams through), driven to completion on the calling thread.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Encoding;

/// Encodes `input` at `level`, with the parameters tower-http uses for the same encoding and
/// level, so both paths produce the same stream for the same bytes.
pub(crate) fn encode(encoding: Encoding, level: i32, input: &[u8]) -> io::Result<Vec<u8>> {
    // JSON and text compress 4-10x; start near that and let the vector grow when it is not.
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    let quality = Level::Precise(level);
    match encoding {
        Encoding::Gzip => drive(GzipEncoder::with_quality(input, quality), &mut out)?,
        Encoding::Deflate => drive(ZlibEncoder::with_quality(input, quality), &mut out)?,
        Encoding::Br => drive(BrotliEncoder::with_quality(input, quality), &mut out)?,
        Encoding::Zstd if level >= 17 => {
            // As tower-http does: keep the window at 8 MiB, the most browsers decode.
            let params = [async_compression::zstd::CParameter::window_log(23)];
            drive(
                ZstdEncoder::with_quality_and_params(input, quality, &params),
                &mut out,
            )?;
        }
        Encoding::Zstd => drive(ZstdEncoder::with_quality(input, quality), &mut out)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
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
