//! Redis URLs with their password hidden, for `Debug` output, errors and log lines.

use std::borrow::Cow;

/// What a password is replaced with.
const HIDDEN: &str = "***";

/// `url` with its password replaced by `***`, for logs, errors and `Debug` output; the
/// username, host, port and database stay readable.
///
/// The password of the user-info part (`redis://user:password@host`, `redis://:password@host`)
/// is hidden, and so is the value of a `pass` or `password` query parameter (how
/// `redis+unix://` URLs carry it). Everything after the first `:` of the user-info is taken
/// as the password, up to the last `@` of the URL, so a password with unescaped `@`, `/` or `:`
/// is hidden whole as well. A URL with nothing to hide is returned as it is, without
/// allocating.
///
/// ```
/// use tower_scale_redis::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/2"), "redis://app:***@10.0.0.5:6379/2");
/// assert_eq!(redact_url("redis://:s3cret@10.0.0.5"), "redis://:***@10.0.0.5");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// assert_eq!(redact_url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let mut out = Cow::Borrowed(url);
    // The user-info: up to the last `@`; its password: after its first `:`.
    if let Some(at) = url[rest_at..].rfind('@').map(|i| rest_at + i)
        && let Some(colon) = url[rest_at..at].find(':').map(|i| rest_at + i)
    {
        out = Cow::Owned(format!("{}{HIDDEN}{}", &url[..=colon], &url[at..]));
    }
    redact_query(out)
}

/// `url` with the values of its `pass` and `password` query parameters hidden.
fn redact_query(url: Cow<'_, str>) -> Cow<'_, str> {
    let Some(query_at) = url.find('?') else {
        return url;
    };
    let query_end = url[query_at..]
        .find('#')
        .map_or(url.len(), |i| query_at + i);
    let query = &url[query_at + 1..query_end];
    let secret = |param: &str| {
        param.split_once('=').is_some_and(|(name, _)| {
            matches!(name.to_ascii_lowercase().as_str(), "pass" | "password")
        })
    };
    if !query.split('&').any(secret) {
        return url;
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..=query_at]);
    for (i, param) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _)) if secret(param) => {
                out.push_str(name);
                out.push('=');
                out.push_str(HIDDEN);
            }
            _ => out.push_str(param),
        }
    }
    out.push_str(&url[query_end..]);
    Cow::Owned(out)
}

/// The URLs of a list, redacted (for `Debug` output).
pub(crate) struct RedactedUrls<'a>(pub(crate) &'a [String]);

impl std::fmt::Debug for RedactedUrls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|url| redact_url(url)))
            .finish()
    }
}
