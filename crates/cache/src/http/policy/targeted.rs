//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and a field of the operator's
//! own, Structured Field Dictionaries (RFC 9651) read into [`Directives`].

use http::header::{HeaderMap, HeaderName};

use super::Directives;

/// The directives of the first of `fields` that `headers` carry with a valid, non-empty value
/// (RFC 9213 §2.1); `None` when none does (the cache then reads `Cache-Control`).
pub(crate) fn targeted(headers: &HeaderMap, fields: &[HeaderName]) -> Option<Directives> {
    fields.iter().find_map(|name| {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        // A dictionary split over lines is one dictionary (RFC 9651 §4.2).
        let mut joined = String::new();
        for line in lines {
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(line.to_str().ok()?);
        }
        parse_dictionary(&joined).filter(|d| *d != Directives::default())
    })
}

/// A member value of a dictionary, as far as cache directives need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// `true` (a bare key) or `?0`/`?1`.
    Boolean(bool),
    Integer(i64),
    /// A decimal, string, token or byte sequence: valid, not a type any directive takes.
    Other,
}

/// The cache directives of an SF Dictionary; `None` when it does not parse or a known
/// directive has the wrong type.
fn parse_dictionary(s: &str) -> Option<Directives> {
    let mut d = Directives::default();
    let mut rest = s.trim_matches(' ');
    while !rest.is_empty() {
        let (key, after) = key(rest)?;
        let (item, after) = match after.strip_prefix('=') {
            Some(v) => bare_item(v)?,
            None => (Item::Boolean(true), after),
        };
        let after = parameters(after)?;
        let secs = |i: Item| match i {
            Item::Integer(n) if n >= 0 => Some(Some(n as u64)),
            _ => None,
        };
        let flag = |i: Item| match i {
            Item::Boolean(b) => Some(b),
            _ => None,
        };
        match key {
            "max-age" => d.max_age = secs(item)?,
            "s-maxage" => d.s_maxage = secs(item)?,
            "stale-while-revalidate" => d.stale_while_revalidate = secs(item)?,
            "stale-if-error" => d.stale_if_error = secs(item)?,
            "no-store" => d.no_store = flag(item)?,
            "no-cache" => d.no_cache = flag(item)?,
            "private" => d.private = flag(item)?,
            "public" => d.public = flag(item)?,
            "must-revalidate" | "proxy-revalidate" => d.must_revalidate |= flag(item)?,
            "must-understand" => d.must_understand = flag(item)?,
            _ => {}
        }
        rest = after.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return None; // a trailing comma
        }
    }
    Some(d)
}

/// A key: `lcalpha / "*"` then `lcalpha / DIGIT / "_" / "-" / "." / "*"`.
fn key(s: &str) -> Option<(&str, &str)> {
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_lowercase() || first == b'*') {
        return None;
    }
    let end = s
        .bytes()
        .position(|b| {
            !(b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'.' | b'*'))
        })
        .unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// `;key[=value]` parameters, skipped.
fn parameters(mut s: &str) -> Option<&str> {
    while let Some(p) = s.strip_prefix(';') {
        let (_, after) = key(p.trim_start_matches(' '))?;
        s = match after.strip_prefix('=') {
            Some(v) => bare_item(v)?.1,
            None => after,
        };
    }
    Some(s)
}

/// A bare item: integer or decimal, string, token, byte sequence, boolean.
fn bare_item(s: &str) -> Option<(Item, &str)> {
    let b = s.as_bytes();
    match *b.first()? {
        b'-' | b'0'..=b'9' => {
            let digits_from = usize::from(b[0] == b'-');
            let end = s[digits_from..]
                .bytes()
                .position(|c| !(c.is_ascii_digit() || c == b'.'))
                .map_or(s.len(), |p| p + digits_from);
            let num = &s[..end];
            if num.contains('.') {
                let (int, frac) = num[digits_from..].split_once('.')?;
                let ok = !int.is_empty()
                    && int.len() <= 12
                    && (1..=3).contains(&frac.len())
                    && !frac.contains('.');
                return ok.then_some((Item::Other, &s[end..]));
            }
            let len = end - digits_from;
            if len == 0 || len > 15 {
                return None;
            }
            Some((Item::Integer(num.parse().ok()?), &s[end..]))
        }
        b'"' => {
            let mut escaped = false;
            for (i, c) in s.bytes().enumerate().skip(1) {
                match c {
                    _ if escaped => {
                        if c != b'"' && c != b'\\' {
                            return None;
                        }
                        escaped = false;
                    }
                    b'\\' => escaped = true,
                    b'"' => return Some((Item::Other, &s[i + 1..])),
                    0x20..=0x7e => {}
                    _ => return None,
                }
            }
            None
        }
        b'?' => match b.get(1)? {
            b'0' => Some((Item::Boolean(false), &s[2..])),
            b'1' => Some((Item::Boolean(true), &s[2..])),
            _ => None,
        },
        b':' => {
            let end = s[1..].find(':')? + 1;
            let ok = s[1..end]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
            ok.then_some((Item::Other, &s[end + 1..]))
        }
        c if c.is_ascii_alphabetic() || c == b'*' => {
            let end = s
                .bytes()
                .position(|c| !(c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)))
                .unwrap_or(s.len());
            Some((Item::Other, &s[end..]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(field: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(field.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    const CDN: HeaderName = HeaderName::from_static("cdn-cache-control");

    #[test]
    fn directives_of_a_valid_dictionary() {
        let d = targeted(
            &with("cdn-cache-control", "max-age=600, must-revalidate"),
            &[CDN],
        )
        .unwrap();
        assert_eq!((d.max_age, d.must_revalidate), (Some(600), true));
        let d = targeted(&with("cdn-cache-control", "no-store"), &[CDN]).unwrap();
        assert!(d.no_store);
        let d = targeted(
            &with("cdn-cache-control", "private, foo=\"bar\";a=1, x=1.5"),
            &[CDN],
        )
        .unwrap();
        assert!(d.private);
        let d = targeted(&with("cdn-cache-control", "max-age=99999999999"), &[CDN]).unwrap();
        assert_eq!(d.max_age, Some(99_999_999_999));
    }

    #[test]
    fn an_invalid_field_or_a_wrong_type_is_ignored() {
        for bad in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age =10",
            "max-age= 10",
            "MaX-aGe=10",
            "max-age=10,",
            "no-store=5",
        ] {
            assert_eq!(
                targeted(&with("cdn-cache-control", bad), &[CDN]),
                None,
                "{bad}"
            );
        }
        assert_eq!(targeted(&with("cache-control", "max-age=5"), &[CDN]), None);
    }

    #[test]
    fn the_first_listed_field_with_a_valid_value_wins() {
        let mine = HeaderName::from_static("edge-cache-control");
        let mut h = with("cdn-cache-control", "max-age=5");
        h.insert(mine.clone(), HeaderValue::from_static("max-age=50"));
        assert_eq!(
            targeted(&h, &[mine.clone(), CDN]).unwrap().max_age,
            Some(50)
        );
        h.insert(mine.clone(), HeaderValue::from_static("max-age=\"x\""));
        assert_eq!(targeted(&h, &[mine, CDN]).unwrap().max_age, Some(5));
    }
}
