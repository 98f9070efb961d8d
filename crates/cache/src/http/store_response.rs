//! What a stored response is made of: its entry (the headers kept, its `Content-Length`,
//! lifetimes) and its tags.

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::key::MakeCacheKey;
use super::layer::Shared;
use super::policy::{Lifetimes, is_unstored, named_by_connection};
use crate::entry::{Entry, EntryBody, StoredResponse};

/// Tags of a response set by a handler as a response extension, in addition to the tag
/// header; purged together with [`Cache::invalidate_tag`].
///
/// ```
/// use axum::{Extension, response::IntoResponse};
/// use tower_scale_cache::CacheTags;
///
/// async fn product() -> impl IntoResponse {
///     (Extension(CacheTags(vec!["product:7".into(), "catalog".into()])), "{\"id\":7}")
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTags(pub Vec<String>);

impl<K: MakeCacheKey> Shared<K> {
    pub(super) fn tags(&self, headers: &HeaderMap, extensions: &http::Extensions) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        if let Some(h) = &self.settings().tag_header {
            for v in headers.get_all(h) {
                if let Ok(v) = v.to_str() {
                    tags.extend(
                        v.split(|c: char| c == ',' || c.is_ascii_whitespace())
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned),
                    );
                }
            }
        }
        if let Some(CacheTags(more)) = extensions.get::<CacheTags>() {
            tags.extend(more.iter().cloned());
        }
        tags.sort();
        tags.dedup();
        tags
    }

    pub(super) fn entry(
        &self,
        parts: &http::response::Parts,
        body: Bytes,
        l: Lifetimes,
        now: u64,
    ) -> Entry {
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if is_unstored(name)
                || self.settings().tag_header.as_ref() == Some(name)
                || named_by_connection(&parts.headers, name)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // Stored with the entry, a hit's `Content-Length` is a slice of the bytes read (else
        // a server or router would format it for every hit); a `HEAD` hit carries it too.
        if !headers.contains_key(header::CONTENT_LENGTH) && may_have_content_length(parts.status) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let age = parts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Entry {
            stored_at: now,
            ttl_ms: l.ttl_ms,
            swr_ms: l.swr_ms,
            sie_ms: l.sie_ms,
            body: EntryBody::Response(StoredResponse {
                status: parts.status,
                age,
                headers,
                body,
            }),
        }
    }
}

/// Whether a response of `status` may carry `Content-Length` (not 1xx, 204 or 304, RFC 9110
/// §8.6).
fn may_have_content_length(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}
