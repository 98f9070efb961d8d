//! The lookup path of a `GET`/`HEAD` request with a key: a fresh hit is answered here,
//! anything else goes on to [`forward`].

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::ResponseBody;
use super::forward::forward;
use super::key::{CacheKey, MakeCacheKey};
use super::layer::Shared;
use super::policy::{BASE_FIELD, variant_field};
use crate::entry::{Entry, EntryBody, Freshness};
use crate::names::{self, Answered};
use crate::{BoxError, StoreError};

/// What a lookup found.
pub(super) struct Found {
    pub(super) entry: Option<Arc<Entry>>,
    pub(super) names: Option<Arc<[HeaderName]>>,
    /// The field looked up: the base field (no allocation) or a variant.
    pub(super) field: Cow<'static, str>,
    pub(super) vary_miss: bool,
}

/// What [`forward`] is handed of a lookup that found no fresh hit.
pub(super) struct Lookup {
    pub(super) found: Found,
    /// The store failed the read: no lock, no store, one origin call for all waiters.
    pub(super) store_down: bool,
    /// When the entry was judged not fresh.
    pub(super) now: u64,
    /// The flight mark taken before the read: whether a flight ended since tells whether
    /// the store may hold what the read missed.
    pub(super) mark: u64,
}

/// A `GET`/`HEAD` request with a key: the lookup, then a fresh hit served here or the rest
/// in [`forward`].
pub(super) async fn handle<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    inner: S,
    parts: Parts,
    body: ReqBody,
    key: CacheKey,
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
    // The paths that may call the origin run in a boxed future of their own, so that this
    // future stays the size a hit needs: what the lookup found lives only inside this block
    // (a local of the function would be kept in the future across the forward's `await`).
    let forwarded = {
        // Taken before the read: a flight that ends after it may store what the read misses.
        let mark = shared.cache().flight_mark();
        // A failing store is a miss: the origin answers, still once for concurrent requests.
        let (found, store_down) = match shared.find(key.as_str(), &parts.headers).await {
            Ok(found) => (found, false),
            Err(e) => {
                tracing::debug!(error = %e, "cache store unavailable; forwarding");
                let found = Found {
                    entry: None,
                    names: None,
                    field: Cow::Borrowed(BASE_FIELD),
                    vary_miss: false,
                };
                (found, true)
            }
        };
        let now = shared.cache().now_ms();
        if let Some(entry) = &found.entry
            && let Freshness::Fresh(left) = entry.freshness(now)
        {
            let status = shared.settings().hit_status(left / 1000);
            names::request(Answered::Hit);
            let Some(entry) = found.entry else {
                unreachable!("checked above")
            };
            return Ok(shared.respond(entry, &parts, now, status));
        }
        let req = Request::from_parts(parts, body);
        let lookup = Lookup {
            found,
            store_down,
            now,
            mark,
        };
        Box::pin(forward(shared, inner, req, key, lookup))
    };
    forwarded.await
}

impl<K: MakeCacheKey> Shared<K> {
    /// The entry for a request: through the `Vary` names remembered for the group (one read),
    /// else the group's base field (a response, or the `Vary` marker and then the variant).
    pub(super) async fn find(&self, group: &str, headers: &HeaderMap) -> Result<Found, StoreError> {
        let cache = self.cache();
        let known = cache.vary_names(group);
        if let Some(names) = &known {
            let field = variant_field(names, headers);
            if let Some(e) = cache.lookup(group, &field).await?
                && matches!(e.body, EntryBody::Response(_))
            {
                return Ok(Found {
                    entry: Some(e),
                    names: known.clone(),
                    field: field.into(),
                    vary_miss: false,
                });
            }
        }
        let base = cache.lookup(group, BASE_FIELD).await?;
        let Some(base) = base else {
            return Ok(Found {
                entry: None,
                field: known.as_ref().map_or(Cow::Borrowed(BASE_FIELD), |n| {
                    Cow::Owned(variant_field(n, headers))
                }),
                names: known,
                vary_miss: false,
            });
        };
        match &base.body {
            EntryBody::Response(_) => Ok(Found {
                entry: Some(base),
                names: None,
                field: Cow::Borrowed(BASE_FIELD),
                vary_miss: false,
            }),
            EntryBody::Vary(names) => {
                let names: Arc<[HeaderName]> = names.to_vec().into();
                let field = variant_field(&names, headers);
                let same = known.as_deref() == Some(&*names);
                if !same {
                    cache.remember_vary(group, Arc::clone(&names));
                }
                let entry = if same {
                    None
                } else {
                    cache
                        .lookup(group, &field)
                        .await?
                        .filter(|e| matches!(e.body, EntryBody::Response(_)))
                };
                Ok(Found {
                    vary_miss: entry.is_none(),
                    entry,
                    names: Some(names),
                    field: field.into(),
                })
            }
            EntryBody::Value(_) => Ok(Found {
                entry: None,
                names: None,
                field: Cow::Borrowed(BASE_FIELD),
                vary_miss: false,
            }),
        }
    }
}
