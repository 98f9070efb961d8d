//! RFC 9111 shared-cache rules: `Cache-Control` parsing and the storability decision, with
//! freshness (`freshness`) and the targeted fields of RFC 9213 (`targeted`).

mod freshness;
mod targeted;

use http::header::{self, HeaderMap, HeaderName};
use http::{HeaderValue, StatusCode};

pub(crate) use self::freshness::http_date;
use self::freshness::{MAX_SECS, expires_lifetime, heuristic_lifetime, initial_age};

/// The `Cache-Control` directives a shared cache acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
    pub(crate) must_understand: bool,
}

impl Directives {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                // Unreadable directives: be safe.
                d.no_store = true;
                continue;
            };
            for directive in split_list(value) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    // Qualified forms (`no-cache="set-cookie"`) are treated like the plain ones.
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                    // A malformed delta makes the response stale at once (RFC 9111 §4.2.1).
                    "max-age" => d.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" => d.s_maxage = Some(secs().unwrap_or(0)),
                    "stale-while-revalidate" => d.stale_while_revalidate = secs(),
                    "stale-if-error" => d.stale_if_error = secs(),
                    "must-understand" => d.must_understand = true,
                    _ => {}
                }
            }
        }
        d
    }
}

/// Comma-separated list members, trimmed, empty ones skipped.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The response's `Vary` names, lowercase, sorted, deduplicated; `Err` for `Vary: *`.
pub(crate) fn vary_names(headers: &HeaderMap) -> Result<Vec<HeaderName>, ()> {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        let value = value.to_str().map_err(|_| ())?;
        for name in split_list(value) {
            if name == "*" {
                return Err(());
            }
            names.push(HeaderName::from_bytes(name.as_bytes()).map_err(|_| ())?);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Ok(names)
}

/// The variant field of a request for `names`: `GET|name=value|...`; values are the request's
/// values joined by `,`, except `Accept-Encoding`'s: the content coding it would be answered
/// in ([`negotiated_coding`]), so that however a client spells it, it picks one of five.
pub(crate) fn variant_field(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut field = String::from(BASE_FIELD);
    for name in names {
        field.push('|');
        field.push_str(name.as_str());
        field.push('=');
        if name == header::ACCEPT_ENCODING {
            field.push_str(negotiated_coding(request));
            continue;
        }
        let mut values: Vec<String> = Vec::new();
        for v in request.get_all(name) {
            let v = String::from_utf8_lossy(v.as_bytes());
            values.extend(split_list(&v).map(str::to_owned));
        }
        field.push_str(&values.join(","));
    }
    field
}

/// The content codings a stored response can be in besides `identity`, the server's preference
/// first (the compression layer's default order).
pub(crate) const CODINGS: [&str; 4] = ["zstd", "br", "gzip", "deflate"];

/// The content coding a request's `Accept-Encoding` gets: the one of [`CODINGS`] with the
/// highest q-value (its first entry's, else the last `*`'s, else 0; ties go to the preferred),
/// or `identity` when none is acceptable or the field is absent. Codings and `q` are
/// case-insensitive; a q-value that does not parse counts as 1, others are clamped to 0..=1.
pub(crate) fn negotiated_coding(request: &HeaderMap) -> &'static str {
    let mut explicit = [None::<f32>; CODINGS.len()];
    let mut star = None;
    for value in request.get_all(header::ACCEPT_ENCODING) {
        // Not text: no coding named, nothing accepted from this line.
        let Ok(value) = value.to_str() else { continue };
        for item in split_list(value) {
            let (coding, params) = item.split_once(';').unwrap_or((item, ""));
            let coding = coding.trim();
            if coding == "*" {
                star = Some(q_value(params));
            } else if let Some(i) = CODINGS.iter().position(|c| c.eq_ignore_ascii_case(coding))
                && explicit[i].is_none()
            {
                explicit[i] = Some(q_value(params));
            }
        }
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, q) in explicit.iter().enumerate() {
        let q = q.or(star).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((i, q));
        }
    }
    best.map_or("identity", |(i, _)| CODINGS[i])
}

/// The q-value of one `Accept-Encoding` entry's parameters: the first `q=` that parses,
/// clamped to 0..=1; 1 without one (or when it does not parse).
fn q_value(params: &str) -> f32 {
    params
        .split(';')
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("q")
                .then_some(value.trim())
        })
        .find_map(|q| q.parse::<f32>().ok())
        .filter(|q| !q.is_nan())
        .unwrap_or(1.0)
        .clamp(0.0, 1.0)
}

/// Whether a response in `content_encoding` (its field, if any) may be stored as the variant
/// of a request negotiated to `coding`: `identity` suits every request, another coding only
/// the requests negotiated to it.
pub(crate) fn coding_matches(content_encoding: Option<&HeaderValue>, coding: &str) -> bool {
    match content_encoding.map(|v| v.to_str().map(str::trim)) {
        None => true,
        Some(Ok(ce)) => {
            ce.is_empty() || ce.eq_ignore_ascii_case("identity") || ce.eq_ignore_ascii_case(coding)
        }
        Some(Err(_)) => false,
    }
}

pub(crate) use crate::store::BASE_FIELD;

/// Why a response was not stored (the `detail` of `Cache-Status`).
pub(crate) type Reason = &'static str;

/// Lifetimes of a storable response, in milliseconds, counted from when it was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    /// Fresh for this long (its freshness lifetime less its initial age; 0: stale at once).
    pub(crate) ttl_ms: u64,
    pub(crate) swr_ms: u64,
    pub(crate) sie_ms: u64,
    /// Kept this long past its windows to be revalidated (0 without a validator).
    pub(crate) keep_ms: u64,
    /// Its corrected initial age in seconds (RFC 9111 §4.2.3).
    pub(crate) age_secs: u32,
}

/// Settings the decision depends on.
pub(crate) struct Rules<'a> {
    /// Statuses stored without an explicit lifetime (all final ones but 206 and 304 with one
    /// when `any_status`).
    pub(crate) statuses: &'a [u16],
    pub(crate) any_status: bool,
    pub(crate) route_ttl: Option<u64>,
    pub(crate) override_origin_ttl: bool,
    pub(crate) swr_ms: u64,
    pub(crate) sie_ms: u64,
    pub(crate) authorized: bool,
    /// Heuristic freshness (RFC 9111 §4.2.2) up to this many seconds; `None`: off.
    pub(crate) heuristic_max_secs: Option<u64>,
    /// How long a stale response with a validator is kept to be revalidated (0: not kept, and
    /// `no-cache` responses are not stored).
    pub(crate) keep_ms: u64,
    /// Targeted cache-control fields, the first valid one replacing `Cache-Control` and
    /// `Expires` (RFC 9213).
    pub(crate) targeted: &'a [HeaderName],
}

/// Statuses this cache understands (RFC 9111 §5.2.2.3 `must-understand`): those RFC 9110
/// defines as heuristically cacheable, and 206 and the redirects it knows.
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether a response has a validator (`ETag` or `Last-Modified`) to revalidate it with.
pub(crate) fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}

/// RFC 9111 §3 for a shared cache, with the lifetimes of §4.2, for a response received at
/// `now_ms` (wall clock).
pub(crate) fn storable(
    rules: &Rules<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<(Lifetimes, Directives), Reason> {
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err("status");
    }
    let targeted = targeted::targeted(headers, rules.targeted);
    let d = targeted.unwrap_or_else(|| Directives::parse(headers));
    if d.must_understand && !understood(status) {
        return Err("status");
    }
    if d.no_store && !d.must_understand {
        return Err("no-store");
    }
    if d.private {
        return Err("private");
    }
    let validator = has_validator(headers);
    if d.no_cache && !(validator && rules.keep_ms > 0) {
        // Without a validator (or with revalidation off), a response that must be
        // revalidated on every use is not worth storing.
        return Err("no-cache");
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err("set-cookie");
    }
    if vary_names(headers).is_err() {
        return Err("vary");
    }
    // RFC 9111 §3.5: a response to an authorized request only with explicit permission.
    if rules.authorized && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err("authorization");
    }
    let now_secs = now_ms / 1000;
    let explicit = match d.s_maxage.or(d.max_age) {
        Some(secs) => Some(secs.min(MAX_SECS)),
        None if targeted.is_none() => expires_lifetime(headers, now_secs),
        None => None,
    };
    let listed = rules.statuses.contains(&status.as_u16());
    // Any status may be stored with an explicit lifetime or `public` (RFC 9111 §3).
    if !(listed || (rules.any_status && (explicit.is_some() || d.public))) {
        return Err("status");
    }
    let heuristic = || {
        let max = rules.heuristic_max_secs?;
        (listed || d.public)
            .then(|| heuristic_lifetime(headers, now_secs, max))
            .flatten()
    };
    let lifetime_ms = if rules.override_origin_ttl {
        rules.route_ttl.or(explicit.map(|s| s * 1000))
    } else {
        explicit
            .map(|s| s * 1000)
            .or(rules.route_ttl)
            .or_else(|| heuristic().map(|s| s * 1000))
    };
    let age_secs = initial_age(headers, now_secs);
    let keep_ms = if validator { rules.keep_ms } else { 0 };
    let ttl_ms = match lifetime_ms {
        _ if d.no_cache => 0,
        Some(t) => t.saturating_sub(age_secs * 1000),
        None => return Err("no-ttl"),
    };
    let (swr_ms, sie_ms) = if d.must_revalidate || d.no_cache {
        (0, 0)
    } else {
        (
            d.stale_while_revalidate
                .map_or(rules.swr_ms, |s| s.saturating_mul(1000)),
            d.stale_if_error
                .map_or(rules.sie_ms, |s| s.saturating_mul(1000)),
        )
    };
    if ttl_ms == 0 && keep_ms == 0 && swr_ms == 0 && sie_ms == 0 {
        // Stale on arrival with no use left.
        return Err("no-ttl");
    }
    Ok((
        Lifetimes {
            ttl_ms,
            swr_ms,
            sie_ms,
            keep_ms,
            age_secs: u32::try_from(age_secs).unwrap_or(u32::MAX),
        },
        d,
    ))
}

/// Headers never stored: hop-by-hop ones (RFC 9110 §7.6.1) and `Age` (kept apart).
pub(crate) fn is_unstored(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "age"
    )
}

/// Whether the response's `Connection` field names `name` (a hop-by-hop header of that
/// connection, never stored: RFC 9111 §3.1).
pub(crate) fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| split_list(v).any(|t| t.eq_ignore_ascii_case(name.as_str())))
    })
}

/// Whether `If-None-Match` matches a stored response with `etag` (RFC 9110 §13.1.2): `*`
/// matches any, a list of entity tags the `ETag` by weak comparison. Only a stored 2xx
/// response may be matched at all (the caller checks).
pub(crate) fn etag_matches(if_none_match: &HeaderValue, etag: Option<&HeaderValue>) -> bool {
    let Ok(inm) = if_none_match.to_str() else {
        return false;
    };
    // Compared in place: a conditional hit allocates nothing here.
    fn opaque(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    let etag = etag.and_then(|e| e.to_str().ok()).map(opaque);
    split_list(inm).any(|t| t == "*" || etag.is_some_and(|e| opaque(t) == e))
}

#[cfg(test)]
mod tests;
