use http::header::{self, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Body;
use tower_http::compression::predicate::{Predicate, SizeAbove};

/// Types already compressed, or that must reach the client byte for byte, never compressed.
/// Server-sent events (`text/event-stream`) are compressed and flushed event by event. The
/// reference list: [`skipped_content_type`] answers the same, faster (tested).
#[cfg(test)]
const SKIPPED_TYPES: &[&str] = &[
    "image/",
    "video/",
    "audio/",
    "font/woff",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/x-bzip2",
    "application/x-xz",
    "application/octet-stream",
    "application/grpc",
];

/// The layer's decision on a response: large enough, of a compressible type, and not marked
/// `Cache-Control: no-transform`.
#[derive(Clone, Copy, Debug)]
pub struct DefaultPredicate {
    min_size: u64,
    size: SizeAbove,
}

impl DefaultPredicate {
    pub(crate) fn new(min_size: u16) -> Self {
        Self {
            min_size: u64::from(min_size),
            size: SizeAbove::new(u64::from(min_size)),
        }
    }

    /// Whether a response with these headers is one whose body depends on `Accept-Encoding`
    /// (content type, `no-transform`, and the body's size when known).
    pub(crate) fn varies(&self, headers: &HeaderMap, body_size: Option<u64>) -> bool {
        let small = body_size
            .or_else(|| {
                headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .is_some_and(|len| len < self.min_size);
        !small && !skipped_type(headers) && !no_transform(headers)
    }
}

impl Predicate for DefaultPredicate {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: Body,
    {
        self.size.should_compress(response)
            && !skipped_type(response.headers())
            && !no_transform(response.headers())
    }
}

/// Whether the `Content-Type` starts with one of the skipped types (one header lookup for all
/// of them).
fn skipped_type(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    skipped_content_type(content_type)
}

/// The `application/` entries of `SKIPPED_TYPES` (the skipped types), without that prefix.
const SKIPPED_APPLICATION: &[&str] = &[
    "zip",
    "gzip",
    "x-gzip",
    "zstd",
    "x-7z-compressed",
    "x-rar-compressed",
    "x-bzip2",
    "x-xz",
    "octet-stream",
    "grpc",
];

/// `SKIPPED_TYPES.iter().any(|t| content_type.starts_with(t))`, dispatched on the first byte
/// (this runs for every response).
fn skipped_content_type(content_type: &str) -> bool {
    match content_type.as_bytes().first() {
        Some(b'a') => {
            if let Some(sub) = content_type.strip_prefix("application/") {
                let Some(&first) = sub.as_bytes().first() else {
                    return false;
                };
                SKIPPED_APPLICATION
                    .iter()
                    .any(|t| t.as_bytes()[0] == first && sub.starts_with(t))
            } else {
                content_type.starts_with("audio/")
            }
        }
        Some(b'i') => content_type.starts_with("image/"),
        Some(b'v') => content_type.starts_with("video/"),
        Some(b'f') => content_type.starts_with("font/woff"),
        _ => false,
    }
}

/// The predicate of one tower-http variant: the default decision, minus the bodies this layer
/// encodes on the pool itself (known length from `offload_from` up to `max_buffered`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VariantPredicate {
    pub(crate) base: DefaultPredicate,
    pub(crate) offload: Option<(u64, u64)>,
}

impl VariantPredicate {
    /// Whether a body of this exact length is encoded on the pool.
    pub(crate) fn offloads(&self, exact: Option<u64>) -> bool {
        match (self.offload, exact) {
            (Some((from, max)), Some(len)) => len >= from && len <= max,
            _ => false,
        }
    }
}

impl Predicate for VariantPredicate {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: Body,
    {
        !self.offloads(response.body().size_hint().exact()) && self.base.should_compress(response)
    }
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

fn lists_accept_encoding(headers: &HeaderMap) -> bool {
    let values = headers.get_all(header::VARY);
    // The usual value (the one tower-http adds), without splitting it.
    if values.iter().any(|v| {
        let v = v.as_bytes();
        v == b"accept-encoding" || v.eq_ignore_ascii_case(b"accept-encoding")
    }) {
        return true;
    }
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let v = v.trim();
            v == "*" || v.eq_ignore_ascii_case("accept-encoding")
        })
}

pub(crate) fn add_vary(headers: &mut HeaderMap) {
    if !lists_accept_encoding(headers) {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// Drops `accept-encoding` from `Vary` (a body that can never be encoded does not vary, and
/// saying it does splits caches). Allocates only when there is something to drop.
pub(crate) fn remove_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("accept-encoding"));
    if !listed {
        return;
    }
    let values: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("accept-encoding"))
        .map(str::to_owned)
        .collect();
    headers.remove(header::VARY);
    if !values.is_empty()
        && let Ok(value) = HeaderValue::from_str(&values.join(", "))
    {
        headers.insert(header::VARY, value);
    }
}

pub(crate) fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let Ok(etag) = etag.to_str() else {
        return;
    };
    if etag.starts_with("W/") {
        return;
    }
    if let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}")) {
        headers.insert(header::ETAG, weak);
    }
}

/// The position in `preference` of the encoding to use for `accept` (an `Accept-Encoding`
/// value); `None` means identity.
///
/// One pass over the header, in place, without allocating: an encoding's q-value is that of its
/// first entry, else that of the last `*`, else 0; a q-value that does not parse counts as 1.
pub(crate) fn negotiate_index(
    accept: Option<&str>,
    preference: &[crate::Encoding],
) -> Option<usize> {
    let accept = accept?;
    // A header of just one token ("gzip", what many clients send): nothing to parse.
    if let Some(index) = preference.iter().position(|e| e.token() == accept) {
        return Some(index);
    }
    let mut explicit = [None; crate::Encoding::ALL.len()];
    let mut star = None;
    for item in accept.split(',') {
        let (coding, params) = item.split_once(';').unwrap_or((item, ""));
        let coding = coding.trim();
        if coding == "*" {
            star = Some(q_value(params));
        } else if let Some(encoding) = crate::Encoding::from_token(coding) {
            let slot = &mut explicit[encoding.index()];
            if slot.is_none() {
                *slot = Some(q_value(params));
            }
        }
    }
    let mut best: Option<(usize, f32)> = None;
    for (index, encoding) in preference.iter().enumerate() {
        let q = explicit[encoding.index()].or(star).unwrap_or(0.0);
        // Strictly greater: on a tie the earlier (preferred) encoding stays.
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((index, q));
        }
    }
    best.map(|(i, _)| i)
}

/// The q-value in the parameters of one `Accept-Encoding` entry (what follows its first `;`):
/// the first `q=` that parses, clamped to 0..=1; 1 without one.
fn q_value(params: &str) -> f32 {
    if params.is_empty() {
        return 1.0;
    }
    params
        .split(';')
        .filter_map(|p| {
            let p = p.trim();
            p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
        })
        .find_map(|q| q.trim().parse::<f32>().ok())
        .unwrap_or(1.0)
        .clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_content_types_are_the_listed_prefixes() {
        let naive = |ct: &str| SKIPPED_TYPES.iter().any(|t| ct.starts_with(t));
        for ct in [
            "",
            "image/png",
            "image/",
            "image",
            "imagex/png",
            "video/mp4",
            "audio/ogg",
            "font/woff2",
            "font/woff",
            "font/ttf",
            "application/json",
            "application/json; charset=utf-8",
            "application/zip",
            "application/zstd",
            "application/gzip",
            "application/x-gzip",
            "application/grpc+proto",
            "application/grpc-web",
            "application/octet-stream",
            "application/x-7z-compressed",
            "application/x-xz",
            "application/xml",
            "application/",
            "text/plain",
            "text/event-stream",
            "Image/png",
            "/image/png",
            "application/jsonx",
            "application/zipx",
            "application/x-",
            "audio",
            "a",
        ]
        .into_iter()
        .chain(SKIPPED_TYPES.iter().copied())
        {
            assert_eq!(skipped_content_type(ct), naive(ct), "{ct:?}");
        }
    }
}
