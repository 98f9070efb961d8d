//! Everything but a fresh hit: stale entries (stale-while-revalidate), `HEAD` misses, and
//! misses joining the in-process single flight, whose leader runs [`Shared::lead`].

use std::borrow::Cow;
use std::sync::Arc;

use http::header::HeaderName;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::ResponseBody;
use super::key::{CacheKey, MakeCacheKey};
use super::layer::Shared;
use super::lookup::Lookup;
use super::policy::variant_field;
use crate::BoxError;
use crate::entry::{Entry, Freshness};
use crate::flight::Join;
use crate::names::{self, Answered};

/// What the leader of a miss hands its followers.
pub(super) enum HttpOutcome {
    Stored {
        entry: Arc<Entry>,
        names: Arc<[HeaderName]>,
        field: String,
    },
    Pass,
}

/// Everything but a fresh hit: stale entries, misses (single flight, lock, store), `HEAD`
/// misses.
pub(super) async fn forward<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    inner: S,
    req: Request<ReqBody>,
    key: CacheKey,
    lookup: Lookup,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: MakeCacheKey,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let Lookup {
        found,
        store_down,
        now,
        mark,
    } = lookup;
    let mut inner = inner;
    let (mut parts, body) = req.into_parts();
    // What the key leaves out must not reach the origin of a response that may be stored.
    shared.key().strip_unkeyed(&mut parts);
    let cache = shared.cache();
    let group = key.as_str();
    let mut stale = None;
    if let Some(entry) = found.entry {
        match entry.freshness(now) {
            Freshness::Fresh(left) => {
                names::request(Answered::Hit);
                let status = shared.settings().hit_status(left / 1000);
                return Ok(shared.respond(entry, &parts, now, status));
            }
            Freshness::Stale(by) if entry.can_revalidate_stale(now) => {
                if parts.method == Method::GET
                    && let Join::Leader(leader) = cache.join_flight(group, &found.field)
                {
                    let req = rebuild::<ReqBody>(&parts);
                    let shared = Arc::clone(&shared);
                    let group = group.to_owned();
                    let names = found.names.clone();
                    let stale = Arc::clone(&entry);
                    // In the request's span: the refresh is part of its trace.
                    let refresh = async move {
                        let (parts, body) = req.into_parts();
                        let miss = Miss {
                            group: &group,
                            names,
                            stale: Some(stale),
                            verb: "fwd=stale",
                            store_down: false,
                        };
                        drop(shared.lead(inner, parts, body, miss, leader).await);
                    };
                    tokio::spawn(tracing::Instrument::in_current_span(refresh));
                }
                names::request(Answered::Stale);
                let detail = format!(
                    "hit; ttl=-{}; detail=stale-while-revalidate",
                    by.div_ceil(1000)
                );
                return Ok(shared.serve(&entry, &parts, &detail));
            }
            // Served if the origin fails (stale-if-error), or revalidated (with a validator).
            Freshness::Stale(_) => stale = Some(entry),
        }
    }
    names::request(Answered::Miss);
    if parts.method == Method::HEAD {
        let res = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(shared.pass(res, "fwd=uri-miss; detail=head"));
    }
    let (miss, verb) = match (store_down, found.vary_miss) {
        (true, _) => ("miss", "fwd=miss; detail=store-unavailable"),
        (false, true) => ("vary-miss", "fwd=vary-miss"),
        (false, false) => ("uri-miss", "fwd=uri-miss"),
    };
    // The variant whose flight this request joins: its own, or the one looked up.
    let mut field: Cow<'_, str> = Cow::Borrowed(&found.field);
    loop {
        match cache.join_flight(group, &field) {
            Join::Leader(leader) => {
                // A flight that ended since the lookup may have stored the response it missed
                // (with the lock, the leader reads again anyway once it holds it).
                if !store_down
                    && !cache.has_lock()
                    && leader.ended_since(mark)
                    && let Ok(again) = shared.find(group, &parts.headers).await
                    && let Some(entry) = again.entry
                    && entry.is_fresh(cache.now_ms())
                {
                    let detail = format!("{verb}; collapsed");
                    return Ok(shared.serve_to_all(entry, group, &parts, &detail, leader));
                }
                let miss = Miss {
                    group,
                    names: found.names,
                    stale,
                    verb,
                    store_down,
                };
                return shared.lead(inner, parts, body, miss, leader).await;
            }
            Join::Follower(f) => {
                let Some(outcome) = f.wait().await else {
                    field = Cow::Borrowed(&found.field);
                    continue;
                };
                match outcome.downcast_ref::<HttpOutcome>() {
                    Some(HttpOutcome::Stored {
                        entry,
                        names,
                        field: stored,
                    }) => {
                        let mine = variant_field(names, &parts.headers);
                        if mine == *stored {
                            let detail = format!("fwd={miss}; collapsed");
                            return Ok(shared.serve(entry, &parts, &detail));
                        }
                        // Another variant was fetched: wait for (or lead) ours.
                        field = Cow::Owned(mine);
                    }
                    _ => {
                        let res = inner.call(Request::from_parts(parts, body)).await?;
                        return Ok(
                            shared.pass(res, &format!("fwd={miss}; collapsed; detail=uncacheable"))
                        );
                    }
                }
            }
        }
    }
}

/// A miss being fetched by its leader.
pub(super) struct Miss<'a> {
    pub(super) group: &'a str,
    /// The `Vary` names known for the group.
    pub(super) names: Option<Arc<[HeaderName]>>,
    /// A stale entry: served if the origin fails within its stale-if-error window, and
    /// revalidated when it has a validator.
    pub(super) stale: Option<Arc<Entry>>,
    /// How `Cache-Status` names the forward: `fwd=uri-miss`, `fwd=vary-miss`, `fwd=miss`
    /// (store unavailable), or `fwd=stale` for a stale-while-revalidate refresh.
    pub(super) verb: &'static str,
    /// The store failed the lookup: no lock, no store, one origin call for all waiters.
    pub(super) store_down: bool,
}

/// A request like `parts` (method, URI, version, headers, extensions), with an empty body.
fn rebuild<B: Default>(parts: &Parts) -> Request<B> {
    let mut req = Request::new(B::default());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}
