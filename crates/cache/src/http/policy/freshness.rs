//! RFC 9111 §4.2: a response's freshness lifetime (explicit, or heuristic) and its age when
//! the cache receives it, from `Age`, `Date`, `Expires` and `Last-Modified`.

use http::HeaderValue;
use http::header::{self, HeaderMap};

/// The largest `Age` (and lifetime) in seconds this cache counts with: 2^31, which RFC 9111
/// §1.2.2 says a cache must treat as "infinity" beyond.
pub(crate) const MAX_SECS: u64 = 1 << 31;

/// Seconds since the Unix epoch of an HTTP-date (IMF-fixdate, RFC 850 or asctime, RFC 9110
/// §5.6.7); `None` when it does not parse.
pub(crate) fn http_date(value: &HeaderValue) -> Option<u64> {
    let s = value.to_str().ok()?;
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The response's `Age` in seconds (RFC 9111 §5.1): the first member of its first line when it
/// is a non-negative integer (saturating at [`MAX_SECS`]); 0 when absent or invalid.
pub(crate) fn age_value(headers: &HeaderMap) -> u64 {
    let Some(first) = headers.get(header::AGE) else {
        return 0;
    };
    let Ok(line) = first.to_str() else { return 0 };
    let member = line.split(',').next().unwrap_or("").trim();
    if member.is_empty() || !member.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    member.parse::<u64>().map_or(MAX_SECS, |n| n.min(MAX_SECS))
}

/// The response's `Date` (one valid line), else `None`.
fn date(headers: &HeaderMap) -> Option<u64> {
    single(headers, &header::DATE).and_then(http_date)
}

/// The field's value when it has exactly one line.
fn single<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// The corrected initial age in seconds of a response received at `now_secs` (RFC 9111
/// §4.2.3, the response delay taken as 0): the larger of its `Age` and `now - Date`.
pub(crate) fn initial_age(headers: &HeaderMap, now_secs: u64) -> u64 {
    let apparent = date(headers).map_or(0, |d| now_secs.saturating_sub(d));
    apparent.max(age_value(headers)).min(MAX_SECS)
}

/// The freshness lifetime in seconds that `Expires` gives (RFC 9111 §4.2.1): `Expires - Date`
/// (or `Expires - now` without a valid `Date`), 0 when `Expires` is invalid or in the past;
/// `None` when the response has no `Expires`.
pub(crate) fn expires_lifetime(headers: &HeaderMap, now_secs: u64) -> Option<u64> {
    headers.get(header::EXPIRES)?;
    let Some(expires) = single(headers, &header::EXPIRES).and_then(http_date) else {
        return Some(0);
    };
    let base = date(headers).unwrap_or(now_secs);
    Some(expires.saturating_sub(base).min(MAX_SECS))
}

/// A heuristic freshness lifetime in seconds (RFC 9111 §4.2.2): a tenth of the time since
/// `Last-Modified` (up to `Date`, or `now`), at most `max_secs`; `None` without a valid
/// `Last-Modified`.
pub(crate) fn heuristic_lifetime(headers: &HeaderMap, now_secs: u64, max_secs: u64) -> Option<u64> {
    let modified = single(headers, &header::LAST_MODIFIED).and_then(http_date)?;
    let base = date(headers).unwrap_or(now_secs);
    Some((base.saturating_sub(modified) / 10).min(max_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    const NOW: u64 = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT

    #[test]
    fn age_uses_the_first_member_of_the_first_line_and_ignores_invalid_values() {
        assert_eq!(age_value(&h(&[("age", "30")])), 30);
        assert_eq!(age_value(&h(&[("age", "7200, 0")])), 7200);
        assert_eq!(age_value(&h(&[("age", "0"), ("age", "7200")])), 0);
        for bad in ["-1", "1.5", "abc", "", " "] {
            assert_eq!(age_value(&h(&[("age", bad)])), 0, "{bad:?}");
        }
        assert_eq!(age_value(&h(&[("age", "2147483649")])), MAX_SECS);
        assert_eq!(
            age_value(&h(&[("age", "99999999999999999999999")])),
            MAX_SECS
        );
    }

    #[test]
    fn initial_age_is_the_larger_of_age_and_apparent_age() {
        let date = "Tue, 14 Nov 2023 22:12:20 GMT"; // NOW - 60
        assert_eq!(initial_age(&h(&[("date", date)]), NOW), 60);
        assert_eq!(initial_age(&h(&[("date", date), ("age", "90")]), NOW), 90);
        assert_eq!(initial_age(&h(&[("age", "5")]), NOW), 5);
        assert_eq!(initial_age(&h(&[]), NOW), 0);
    }

    #[test]
    fn expires_counts_from_date_and_an_invalid_one_is_already_stale() {
        let date = "Tue, 14 Nov 2023 22:13:20 GMT";
        let in_100 = "Tue, 14 Nov 2023 22:15:00 GMT";
        assert_eq!(expires_lifetime(&h(&[("expires", in_100)]), NOW), Some(100));
        assert_eq!(
            expires_lifetime(
                &h(&[
                    ("expires", in_100),
                    ("date", "Tue, 14 Nov 2023 22:14:20 GMT")
                ]),
                NOW
            ),
            Some(40)
        );
        assert_eq!(
            expires_lifetime(&h(&[("expires", "0"), ("date", date)]), NOW),
            Some(0)
        );
        // RFC 850 and asctime forms are read too.
        assert_eq!(
            expires_lifetime(&h(&[("expires", "Tuesday, 14-Nov-23 22:15:00 GMT")]), NOW),
            Some(100)
        );
        assert_eq!(
            expires_lifetime(&h(&[("expires", "Tue Nov 14 22:15:00 2023")]), NOW),
            Some(100)
        );
        assert_eq!(
            expires_lifetime(&h(&[("expires", in_100), ("expires", in_100)]), NOW),
            Some(0),
            "two lines are invalid"
        );
        assert_eq!(expires_lifetime(&h(&[]), NOW), None);
    }

    #[test]
    fn heuristic_is_a_tenth_of_the_time_since_last_modified_capped() {
        let lm = "Tue, 14 Nov 2023 21:13:20 GMT"; // NOW - 3600
        assert_eq!(
            heuristic_lifetime(&h(&[("last-modified", lm)]), NOW, 86_400),
            Some(360)
        );
        assert_eq!(
            heuristic_lifetime(&h(&[("last-modified", lm)]), NOW, 60),
            Some(60)
        );
        assert_eq!(heuristic_lifetime(&h(&[]), NOW, 60), None);
    }
}
