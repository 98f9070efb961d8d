//! Header values of served responses computed once, so that a hit formats nothing and, for
//! the usual ages and lifetimes, allocates nothing: `Age` values, and each layer's
//! `Cache-Status` values of fresh hits (`<name>; hit; ttl=<seconds>`).

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

/// The default name of the cache in `Cache-Status`.
pub(crate) const DEFAULT_NAME: &str = "tower-scale";

/// Seconds covered by the tables; larger numbers are written per response.
const TABLE: u64 = 1024;

/// The decimal digits of 0..TABLE, one after the other: the storage of [`AGES`].
static DIGITS: LazyLock<String> = LazyLock::new(|| (0..TABLE).map(|n| n.to_string()).collect());

/// `Age` values 0..TABLE, slices of [`DIGITS`] (cloning one copies no bytes and counts no
/// references).
static AGES: LazyLock<Box<[HeaderValue]>> = LazyLock::new(|| {
    let digits: &'static str = DIGITS.as_str();
    let mut at = 0;
    (0..TABLE)
        .map(|n| {
            let len = itoa::Buffer::new().format(n).len();
            let value = HeaderValue::from_static(&digits[at..at + len]);
            at += len;
            value
        })
        .collect()
});

/// Appends `n` in decimal.
fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The `Age` header value of `secs`.
pub(crate) fn age(secs: u64) -> HeaderValue {
    match AGES.get(usize::try_from(secs).unwrap_or(usize::MAX)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(secs),
    }
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
            86_400,
            u64::MAX,
        ] {
            assert_eq!(age(n), n.to_string().as_str(), "{n}");
        }
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
