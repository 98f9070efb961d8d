//! Responses the cache builds: from a stored entry (a hit, `304`), or the origin's passed
//! through, each with its `Cache-Status`.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::body::ResponseBody;
use super::key::MakeCacheKey;
use super::layer::Shared;
use super::policy::{etag_matches, http_date};
use super::range;
use super::values;
use crate::entry::{ADDED_HEADERS, Entry, EntryBody, StoredResponse};

/// The `Cache-Status` response header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

pub(super) fn status(name: &str, detail: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}; {detail}"))
        .unwrap_or_else(|_| HeaderValue::from_static("tower-scale"))
}

pub(super) fn with_status<B>(mut res: Response<B>, value: HeaderValue) -> Response<B> {
    res.headers_mut().append(CACHE_STATUS, value);
    res
}

impl<K: MakeCacheKey> Shared<K> {
    /// A response from the origin, passed through.
    pub(super) fn pass<B>(&self, res: Response<B>, detail: &str) -> Response<ResponseBody<B>> {
        let mut res = res.map(ResponseBody::stream);
        self.strip_tags(res.headers_mut());
        with_status(res, status(self.settings().name(), detail))
    }

    /// Removes what is for this cache only: the tag header and the targeted cache-control
    /// fields (RFC 9213).
    pub(super) fn strip_tags(&self, headers: &mut HeaderMap) {
        if let Some(h) = self.settings().tag_header() {
            headers.remove(h);
        }
        for name in self.settings().targeted() {
            headers.remove(name);
        }
    }

    /// A response from a stored entry: `304` when it is a 2xx response `If-None-Match` matches.
    pub(super) fn serve<B>(
        &self,
        entry: &Arc<Entry>,
        parts: &Parts,
        detail: &str,
    ) -> Response<ResponseBody<B>> {
        let status = status(self.settings().name(), detail);
        self.respond(Arc::clone(entry), parts, self.cache().now_ms(), status)
    }

    /// A response from a stored entry with the `Cache-Status` value `cache_status`. The
    /// entry's headers and body are moved into the response when nothing else holds the entry
    /// (a hit read from Redis), else copied into a map sized for them and the two headers
    /// added here (header values and the body share their bytes with the entry either way).
    pub(super) fn respond<B>(
        &self,
        entry: Arc<Entry>,
        parts: &Parts,
        now: u64,
        cache_status: HeaderValue,
    ) -> Response<ResponseBody<B>> {
        let age = values::age(entry.age_secs(now));
        let EntryBody::Response(stored) = &entry.body else {
            unreachable!("only responses are served")
        };
        // The stored validators are looked up only for a conditional request.
        if not_modified(&parts.headers, stored, entry.stored_at) {
            let mut res = Response::new(ResponseBody::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            let h = res.headers_mut();
            for name in [
                header::CACHE_CONTROL,
                header::CONTENT_LOCATION,
                header::DATE,
                header::ETAG,
                header::EXPIRES,
                header::VARY,
            ] {
                for v in stored.headers.get_all(&name) {
                    h.append(name.clone(), v.clone());
                }
            }
            h.insert(header::AGE, age);
            return with_status(res, cache_status);
        }
        let head = parts.method == Method::HEAD;
        let (mut status, mut headers, mut body) = match Arc::try_unwrap(entry) {
            Ok(Entry {
                body: EntryBody::Response(stored),
                ..
            }) => (stored.status, stored.headers, stored.body),
            Ok(_) => unreachable!("only responses are served"),
            Err(shared) => {
                let EntryBody::Response(stored) = &shared.body else {
                    unreachable!("only responses are served")
                };
                let mut headers = HeaderMap::with_capacity(stored.headers.len() + ADDED_HEADERS);
                for (name, value) in &stored.headers {
                    headers.append(name.clone(), value.clone());
                }
                (stored.status, headers, stored.body.clone())
            }
        };
        if !head
            && status == StatusCode::OK
            && let Some(range) = parts.headers.get(header::RANGE)
            && !parts.headers.contains_key(header::IF_RANGE)
            && let Some((first, last)) = range::single(range, body.len())
        {
            let content_range = format!("bytes {first}-{last}/{}", body.len());
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                status = StatusCode::PARTIAL_CONTENT;
                headers.insert(header::CONTENT_RANGE, v);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last + 1 - first));
                body = body.slice(first..=last);
            }
        }
        headers.insert(header::AGE, age);
        headers.append(CACHE_STATUS, cache_status);
        let body = if head {
            ResponseBody::empty()
        } else {
            ResponseBody::full(body)
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        res
    }

    pub(super) fn annotate<B>(
        &self,
        mut res: Response<ResponseBody<B>>,
        detail: &str,
    ) -> Response<ResponseBody<B>> {
        self.strip_tags(res.headers_mut());
        with_status(res, status(self.settings().name(), detail))
    }

    pub(super) fn names_of(&self, group: &str) -> Arc<[HeaderName]> {
        self.cache()
            .vary_names(group)
            .unwrap_or_else(|| Arc::new([]))
    }
}

/// Whether a stored response answers a request's conditionals with `304` (RFC 9111 §4.3.2):
/// only a 2xx response; `If-None-Match` against its `ETag` (weakly), else `If-Modified-Since`
/// against its `Last-Modified` (or `Date`, or when it was stored: `stored_at`, ms).
fn not_modified(request: &HeaderMap, stored: &StoredResponse, stored_at: u64) -> bool {
    if !stored.status.is_success() {
        return false;
    }
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        return etag_matches(inm, stored.headers.get(header::ETAG));
    }
    let Some(since) = request.get(header::IF_MODIFIED_SINCE).and_then(http_date) else {
        return false;
    };
    stored
        .headers
        .get(header::LAST_MODIFIED)
        .or_else(|| stored.headers.get(header::DATE))
        .and_then(http_date)
        .unwrap_or(stored_at / 1000)
        <= since
}
