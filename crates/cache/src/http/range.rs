//! `Range` requests answered from a stored full `200` response (RFC 9110 §14): one byte range,
//! served as `206 Partial Content`; anything else (several ranges, another unit, a range past
//! the end, `If-Range`) gets the whole response, as a server may answer.

use http::HeaderValue;

/// The first and last byte (inclusive) of a body of `len` bytes that a `Range` value asks for,
/// when it is one satisfiable byte range.
pub(super) fn single(range: &HeaderValue, len: usize) -> Option<(usize, usize)> {
    let spec = range.to_str().ok()?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        // A suffix: the last `n` bytes.
        if !digits(last) {
            return None;
        }
        let n = last.parse::<usize>().unwrap_or(usize::MAX);
        return (n > 0).then(|| (len.saturating_sub(n), len - 1));
    }
    if !digits(first) {
        return None;
    }
    let start = first.parse::<usize>().ok()?;
    if start >= len {
        return None;
    }
    let end = if last.is_empty() {
        len - 1
    } else if digits(last) {
        last.parse::<usize>().unwrap_or(usize::MAX).min(len - 1)
    } else {
        return None;
    };
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str, len: usize) -> Option<(usize, usize)> {
        single(&HeaderValue::from_str(s).unwrap(), len)
    }

    #[test]
    fn one_byte_range_of_each_form() {
        assert_eq!(r("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(r("bytes=5-", 10), Some((5, 9)));
        assert_eq!(r("bytes=-3", 10), Some((7, 9)));
        assert_eq!(r("bytes=-30", 10), Some((0, 9)));
        assert_eq!(r("bytes=8-100", 10), Some((8, 9)));
    }

    #[test]
    fn anything_else_is_the_whole_response() {
        for s in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=-0",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(r(s, 10), None, "{s}");
        }
        assert_eq!(r("bytes=0-0", 0), None);
    }
}
