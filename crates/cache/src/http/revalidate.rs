//! Revalidation (RFC 9111 §4.3): the conditional request a miss's leader sends for a stale
//! stored response with a validator, and the `304` that refreshes it (§4.3.4): the stored
//! headers updated (§3.2), stored again, and served from the store.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response};

use super::body::ResponseBody;
use super::forward::{HttpOutcome, Miss};
use super::key::MakeCacheKey;
use super::layer::Shared;
use super::lead::{Asked, Flight};
use super::policy::{Lifetimes, is_unstored, named_by_connection, vary_names};
use crate::entry::{Entry, EntryBody};
use crate::names;

/// Makes `headers` (the request to the origin) conditional on the validators of `stale`
/// (`If-None-Match` with its `ETag`, `If-Modified-Since` with its `Last-Modified`), replacing
/// the client's own; whether it did (a response without a validator is not revalidated).
pub(super) fn make_conditional(stale: Option<&Entry>, headers: &mut HeaderMap) -> bool {
    let Some(Entry {
        body: EntryBody::Response(stored),
        ..
    }) = stale
    else {
        return false;
    };
    let etag = stored.headers.get(header::ETAG);
    let modified = stored.headers.get(header::LAST_MODIFIED);
    if etag.is_none() && modified.is_none() {
        return false;
    }
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    if let Some(etag) = etag {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = modified {
        headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
    }
    true
}

/// The stored headers updated with a `304`'s (RFC 9111 §3.2): each field the `304` carries
/// replaces the stored one, except `Content-Length` and the fields never stored.
fn updated(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    for name in not_modified.keys() {
        if name == header::CONTENT_LENGTH
            || (is_unstored(name) && name != header::AGE)
            || named_by_connection(not_modified, name)
        {
            continue;
        }
        headers.remove(name);
        for v in not_modified.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    headers
}

impl<K: MakeCacheKey> Shared<K> {
    /// The origin answered the leader's conditional request for `stale` with `304`: stores the
    /// stored response with its headers updated (when it may still be stored), ends the flight
    /// and serves it as a hit would (a `304` to the client's own matching conditional).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn revalidated<B>(
        &self,
        not_modified: http::response::Parts,
        stale: &Entry,
        asked: Asked,
        method: Method,
        miss: &Miss<'_>,
        flight: Flight<'_>,
    ) -> Response<ResponseBody<B>> {
        let EntryBody::Response(stored) = &stale.body else {
            unreachable!("only responses are revalidated")
        };
        let (mut rparts, ()) = Response::new(()).into_parts();
        rparts.status = stored.status;
        rparts.headers = updated(&stored.headers, &not_modified.headers);
        rparts.extensions = not_modified.extensions;
        let now = self.cache().now_ms();
        let (entry, detail) = match self.verdict(&asked, &rparts, now) {
            Ok(lifetimes) => {
                let names = vary_names(&rparts.headers).unwrap_or_default().into();
                let body = stored.body.clone();
                let entry = self
                    .save_and_end(&rparts, body, lifetimes, names, &asked, miss, flight)
                    .await;
                (entry, "fwd=stale; fwd-status=304; stored".to_owned())
            }
            Err(reason) => {
                names::refused(reason);
                flight.end(HttpOutcome::Pass).await;
                let none = Lifetimes {
                    ttl_ms: 0,
                    swr_ms: 0,
                    sie_ms: 0,
                    keep_ms: 0,
                    age_secs: 0,
                };
                let entry = self.entry(&rparts, stored.body.clone(), none, now);
                let detail = format!("fwd=stale; fwd-status=304; detail={reason}");
                (Arc::new(entry), detail)
            }
        };
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.headers = asked.headers;
        self.serve(&entry, &parts, &detail)
    }
}
