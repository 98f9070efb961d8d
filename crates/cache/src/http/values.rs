//! Header values computed once, so that a hit formats nothing and, for the usual ages,
//! lifetimes and stored values, allocates nothing: `Age` values, each layer's `Cache-Status`
//! values of fresh hits (`<name>; hit; ttl=<seconds>`), and the common values of stored
//! headers (a `Content-Length`, a `Content-Type`), taken as static values when decoded.

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http::header::{self, HeaderName};

/// The default name of the cache in `Cache-Status`.
pub(crate) const DEFAULT_NAME: &str = "tower-scale";

/// Seconds covered by the `Cache-Status` tables; larger numbers are written per response.
const TABLE: u64 = 1024;

/// Numbers with a static value: 0 to 4096 (`Age` up to over an hour, the `Content-Length` of
/// responses up to 4 KiB).
const DECIMALS: usize = 4097;

/// The decimal digits of 0..DECIMALS, one after the other: the storage of [`DECIMAL`].
static DIGITS: LazyLock<String> = LazyLock::new(|| (0..DECIMALS).map(|n| n.to_string()).collect());

/// The values of 0..DECIMALS, slices of [`DIGITS`] (cloning one copies no bytes and counts no
/// references).
static DECIMAL: LazyLock<Box<[HeaderValue]>> = LazyLock::new(|| {
    let digits: &'static str = DIGITS.as_str();
    let mut at = 0;
    (0..DECIMALS)
        .map(|n| {
            let len = itoa::Buffer::new().format(n).len();
            let value = HeaderValue::from_static(&digits[at..at + len]);
            at += len;
            value
        })
        .collect()
});

/// Common values of some stored headers, static (cloning one copies no bytes and counts no
/// references): what a stored value is taken as when it has the same bytes.
static COMMON: LazyLock<[(HeaderName, Box<[HeaderValue]>); 4]> = LazyLock::new(|| {
    let values = |list: &[&'static str]| list.iter().map(|v| HeaderValue::from_static(v)).collect();
    [
        (
            header::CONTENT_TYPE,
            values(&[
                "application/json",
                "text/html; charset=utf-8",
                "text/plain; charset=utf-8",
                "text/html",
                "text/plain",
                "text/css",
                "text/javascript",
                "application/javascript",
                "application/octet-stream",
                "application/xml",
                "image/png",
                "image/jpeg",
                "image/svg+xml",
                "image/webp",
            ]),
        ),
        (
            header::CONTENT_ENCODING,
            values(&["gzip", "br", "zstd", "deflate"]),
        ),
        (
            header::VARY,
            values(&["accept-encoding", "Accept-Encoding"]),
        ),
        (header::ACCEPT_RANGES, values(&["bytes"])),
    ]
});

/// Appends `n` in decimal.
fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in decimal as a static value, if below [`DECIMALS`].
fn decimal(n: u64) -> Option<HeaderValue> {
    DECIMAL
        .get(usize::try_from(n).unwrap_or(usize::MAX))
        .cloned()
}

/// The `Age` header value of `secs`.
pub(crate) fn age(secs: u64) -> HeaderValue {
    decimal(secs).unwrap_or_else(|| HeaderValue::from(secs))
}

/// A stored header value as a static value when it is a common one: a `Content-Length` below
/// [`DECIMALS`] written as [`decimal`] writes it, a usual `Content-Type`, `Content-Encoding`,
/// `Vary` or `Accept-Ranges`; `None` for any other (then a slice of the stored bytes, checked).
/// The value returned has exactly the bytes `raw` has.
pub(crate) fn stored(name: &HeaderName, raw: &[u8]) -> Option<HeaderValue> {
    if *name == header::CONTENT_LENGTH {
        // Canonical decimals only: "0", or digits without a leading zero.
        if raw.is_empty() || raw.len() > 4 || (raw[0] == b'0' && raw.len() > 1) {
            return None;
        }
        let mut n = 0u64;
        for &b in raw {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u64::from(b - b'0');
        }
        return decimal(n);
    }
    let (_, values) = COMMON.iter().find(|(n, _)| n == name)?;
    values.iter().find(|v| v.as_bytes() == raw).cloned()
}

/// A layer's `Cache-Status` values of fresh hits, `<name>; hit; ttl=<n>` for n in 0..TABLE,
/// all slices of one buffer.
pub(crate) struct HitStatuses {
    prefix: Bytes,
    table: Box<[HeaderValue]>,
}

impl std::fmt::Debug for HitStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitStatuses")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The table of the default name, shared by every layer that keeps it.
static DEFAULT: LazyLock<Arc<HitStatuses>> =
    LazyLock::new(|| Arc::new(HitStatuses::new(DEFAULT_NAME)));

impl HitStatuses {
    /// The values of the cache named `name`: one table (about 70 KB) shared by every layer
    /// with the default name, one per layer for another name.
    pub(crate) fn for_name(name: &str) -> Arc<Self> {
        if name == DEFAULT_NAME {
            Arc::clone(&DEFAULT)
        } else {
            Arc::new(Self::new(name))
        }
    }

    /// The values of the cache named `name` (a token: checked by the layer's settings).
    fn new(name: &str) -> Self {
        let prefix = Bytes::from(format!("{name}; hit; ttl="));
        let mut all = BytesMut::with_capacity(
            (prefix.len() + 4) * usize::try_from(TABLE).unwrap_or(usize::MAX),
        );
        let mut ends = Vec::with_capacity(TABLE as usize);
        for n in 0..TABLE {
            all.put_slice(&prefix);
            put_decimal(&mut all, n);
            ends.push(all.len());
        }
        let all = all.freeze();
        let mut start = 0;
        let table = ends
            .into_iter()
            .map(|end| {
                let value = HeaderValue::from_maybe_shared(all.slice(start..end))
                    .unwrap_or_else(|_| HeaderValue::from_static("cache"));
                start = end;
                value
            })
            .collect();
        Self { prefix, table }
    }

    /// `<name>; hit; ttl=<secs>`.
    pub(crate) fn get(&self, secs: u64) -> HeaderValue {
        if let Some(v) = self.table.get(usize::try_from(secs).unwrap_or(usize::MAX)) {
            return v.clone();
        }
        let mut out = BytesMut::with_capacity(self.prefix.len() + 20);
        out.put_slice(&self.prefix);
        put_decimal(&mut out, secs);
        HeaderValue::from_maybe_shared(out.freeze())
            .unwrap_or_else(|_| HeaderValue::from_static("cache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_the_decimal_seconds() {
        for n in [
            0,
            1,
            9,
            10,
            59,
            99,
            100,
            999,
            1000,
            1023,
            1024,
            4096,
            4097,
            86_400,
            u64::MAX,
        ] {
            assert_eq!(age(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn decimals_are_static_slices_of_the_digits() {
        for n in 0..DECIMALS as u64 {
            let v = decimal(n).unwrap();
            assert_eq!(v, n.to_string().as_str(), "{n}");
            assert!(
                DIGITS
                    .as_bytes()
                    .as_ptr_range()
                    .contains(&v.as_bytes().as_ptr()),
                "{n}"
            );
        }
        assert_eq!(decimal(DECIMALS as u64), None);
    }

    #[test]
    fn stored_values_are_static_only_when_common_and_byte_for_byte() {
        let cl = header::CONTENT_LENGTH;
        for raw in ["0", "7", "1024", "4096"] {
            assert_eq!(stored(&cl, raw.as_bytes()).unwrap(), raw, "{raw}");
        }
        // Not canonical, too large, or not a number: the stored bytes are kept as they are.
        for raw in ["", "01", "0000", "4097", "10000", "12a", "-1", " 1", "1 "] {
            assert_eq!(stored(&cl, raw.as_bytes()), None, "{raw:?}");
        }
        let ct = header::CONTENT_TYPE;
        assert_eq!(
            stored(&ct, b"application/json").unwrap(),
            "application/json"
        );
        assert_eq!(stored(&ct, b"application/JSON"), None);
        assert_eq!(stored(&ct, b"application/json\n"), None);
        assert_eq!(stored(&header::CONTENT_ENCODING, b"gzip").unwrap(), "gzip");
        assert_eq!(stored(&header::ETAG, b"gzip"), None, "only for its header");
        assert_eq!(stored(&HeaderName::from_static("x-custom"), b"1024"), None);
    }

    #[test]
    fn hit_statuses_name_the_cache_and_the_seconds_left() {
        let s = HitStatuses::for_name("edge");
        for n in [0, 7, 60, 1023, 1024, 31_536_000, u64::MAX] {
            assert_eq!(s.get(n), format!("edge; hit; ttl={n}").as_str(), "{n}");
        }
        let a = HitStatuses::for_name(DEFAULT_NAME);
        assert!(
            Arc::ptr_eq(&a, &HitStatuses::for_name("tower-scale")),
            "shared"
        );
        assert_eq!(a.get(59), "tower-scale; hit; ttl=59");
    }
}
