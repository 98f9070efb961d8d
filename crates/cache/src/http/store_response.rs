//! Storing what the origin answered a miss's leader: whether it may be stored, its entry
//! (the headers kept, its `Content-Length`, lifetimes), its `Vary` marker and its tags.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;

use super::body::{Buffered, ResponseBody, buffer};
use super::forward::{HttpOutcome, Miss};
use super::key::MakeCacheKey;
use super::layer::Shared;
use super::lead::{Asked, Flight};
use super::policy::{
    BASE_FIELD, Lifetimes, Reason, coding_matches, is_unstored, named_by_connection,
    negotiated_coding, storable, variant_field, vary_names,
};
use crate::entry::{Entry, EntryBody, StoredResponse, headers_fit};
use crate::{BoxError, names};

/// Tags of a response set by a handler as a response extension, in addition to the tag
/// header; purged together with [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
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
    /// Stores the origin's response to a miss when it may be stored (not personal, storable,
    /// headers that fit, the negotiated coding, room for one more variant, a body within the
    /// limit and no trailers), ends the flight, and answers with it.
    pub(super) async fn store<B>(
        &self,
        res: Response<B>,
        asked: &Asked,
        miss: &Miss<'_>,
        flight: Flight<'_>,
    ) -> Response<ResponseBody<B>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let cache = self.cache();
        let (group, verb) = (miss.group, miss.verb);
        let (mut rparts, rbody) = res.into_parts();
        let lifetimes = match self.verdict(asked, &rparts, cache.now_ms()) {
            Ok(lifetimes) => lifetimes,
            Err(reason) => {
                names::refused(reason);
                flight.end(HttpOutcome::Pass).await;
                let res = Response::from_parts(rparts, rbody);
                return self.pass(res, &format!("{verb}; detail={reason}"));
            }
        };
        let names: Arc<[HeaderName]> = vary_names(&rparts.headers).unwrap_or_default().into();
        // A variant keyed by the request's negotiated coding holds a response in that coding
        // (or identity): another one (a compression layer preferring differently) is not stored.
        let refused = if !headers_fit(&rparts.headers) {
            Some("header-too-large")
        } else if names.contains(&header::ACCEPT_ENCODING)
            && !coding_matches(
                rparts.headers.get(header::CONTENT_ENCODING),
                negotiated_coding(&asked.headers),
            )
        {
            Some("content-encoding")
        } else if !names.is_empty()
            && !miss.store_down
            && miss.stale.is_none()
            && !cache
                .has_room(group, self.settings().max_variants().saturating_add(1))
                .await
        {
            Some("too-many-variants")
        } else {
            None
        };
        if let Some(reason) = refused {
            names::refused(reason);
            flight.end(HttpOutcome::Pass).await;
            let res = Response::from_parts(rparts, rbody);
            return self.pass(res, &format!("{verb}; detail={reason}"));
        }
        let buffered = buffer(Box::pin(rbody), self.settings().max_body()).await;
        let (bytes, trailers) = match buffered {
            Buffered::Complete(bytes, trailers) => (bytes, trailers),
            Buffered::TooLarge(prefix, rest) => {
                names::refused("too-large");
                flight.end(HttpOutcome::Pass).await;
                let res = Response::from_parts(rparts, ResponseBody::resume(prefix, None, rest));
                return self.annotate(res, &format!("{verb}; detail=too-large"));
            }
            Buffered::Failed(prefix, error, rest) => {
                names::refused("body-error");
                flight.end(HttpOutcome::Pass).await;
                let res =
                    Response::from_parts(rparts, ResponseBody::resume(prefix, Some(error), rest));
                return self.annotate(res, &format!("{verb}; detail=body-error"));
            }
        };
        if let Some(trailers) = trailers {
            names::refused("trailers");
            flight.end(HttpOutcome::Pass).await;
            let res =
                Response::from_parts(rparts, ResponseBody::full_with_trailers(bytes, trailers));
            return self.annotate(res, &format!("{verb}; detail=trailers"));
        }
        self.save_and_end(
            &rparts,
            bytes.clone(),
            lifetimes,
            names,
            asked,
            miss,
            flight,
        )
        .await;
        self.strip_tags(&mut rparts.headers);
        let res = Response::from_parts(rparts, ResponseBody::full(bytes));
        if miss.store_down {
            self.annotate(res, verb)
        } else {
            self.annotate(res, &format!("{verb}; stored"))
        }
    }

    /// Stores a response (its headers `rparts`, its whole body `bytes`) under the miss's group
    /// with its `Vary` marker and tags, ends the flight handing it to the followers, and
    /// returns the entry.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn save_and_end(
        &self,
        rparts: &http::response::Parts,
        bytes: Bytes,
        lifetimes: Lifetimes,
        names: Arc<[HeaderName]>,
        asked: &Asked,
        miss: &Miss<'_>,
        mut flight: Flight<'_>,
    ) -> Arc<Entry> {
        let cache = self.cache();
        let group = miss.group;
        let tags = self.tags(&rparts.headers, &rparts.extensions);
        let entry = Arc::new(self.entry(rparts, bytes, lifetimes, cache.now_ms()));
        let stored_field = variant_field(&names, &asked.headers);
        if miss.store_down {
            // Nothing to write to: the response is shared with the waiting requests only.
        } else if names.is_empty() {
            let saved = cache
                .save(
                    group,
                    &[(BASE_FIELD, Arc::clone(&entry))],
                    &tags,
                    lifetimes.keep_ms,
                )
                .await;
            if !saved {
                flight.forget_lock();
            }
        } else {
            let marker = Arc::new(Entry {
                stored_at: entry.stored_at,
                ttl_ms: entry.ttl_ms,
                swr_ms: entry.swr_ms,
                sie_ms: entry.sie_ms,
                body: EntryBody::Vary(names.to_vec().into()),
            });
            let saved = cache
                .save(
                    group,
                    &[(BASE_FIELD, marker), (&stored_field, Arc::clone(&entry))],
                    &tags,
                    lifetimes.keep_ms,
                )
                .await;
            if !saved {
                flight.forget_lock();
            }
            cache.remember_vary(group, Arc::clone(&names));
        }
        flight
            .end(HttpOutcome::Stored {
                entry: Arc::clone(&entry),
                names,
                field: stored_field,
            })
            .await;
        entry
    }

    /// Whether the response to `asked` (`rparts`, received at `now`) may be stored, and for how
    /// long: not when a layer inside made it personal, else RFC 9111's rules.
    pub(super) fn verdict(
        &self,
        asked: &Asked,
        rparts: &http::response::Parts,
        now: u64,
    ) -> Result<Lifetimes, Reason> {
        if asked.mark.is_set() {
            return Err("private");
        }
        let rules = self.settings().rules(asked.authorized);
        storable(&rules, rparts.status, &rparts.headers, now).map(|(l, _)| l)
    }

    pub(super) fn tags(&self, headers: &HeaderMap, extensions: &http::Extensions) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        if let Some(h) = self.settings().tag_header() {
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
                || self.settings().tag_header() == Some(name)
                || self.settings().targeted().contains(name)
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
        Entry {
            stored_at: now,
            ttl_ms: l.ttl_ms,
            swr_ms: l.swr_ms,
            sie_ms: l.sie_ms,
            body: EntryBody::Response(StoredResponse {
                status: parts.status,
                age: l.age_secs,
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
