//! The leader of a miss: the cross-instance lock, the origin call and stale-if-error; what the
//! origin answered is stored by [`Shared::store`].

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_scale_core::PrivateMark;
use tower_service::Service;

use super::body::ResponseBody;
use super::forward::{HttpOutcome, Miss};
use super::key::MakeCacheKey;
use super::layer::Shared;
use super::policy::{BASE_FIELD, variant_field};
use super::revalidate::make_conditional;
use crate::cache::Coordinated;
use crate::entry::Entry;
use crate::flight::{Leader, Outcome};
use crate::names::{self, Answered};
use crate::{BoxError, Cache};

/// A miss's flight once the lock step is done: the lock to release (if taken) and the
/// followers to tell.
pub(super) struct Flight<'a> {
    cache: &'a Cache,
    group: &'a str,
    field: String,
    token: Option<u64>,
    leader: Leader,
}

impl Flight<'_> {
    /// Leaves the lock to expire by itself: the store did not answer, and releasing it would
    /// make the request wait for the store once more.
    pub(super) fn forget_lock(&mut self) {
        self.token = None;
    }

    /// Releases the lock, then hands `outcome` to the followers.
    pub(super) async fn end(self, outcome: HttpOutcome) {
        self.cache.unlock(self.group, &self.field, self.token).await;
        self.leader.finish(Arc::new(outcome) as Outcome);
    }
}

/// What the leader keeps of the request once it went to the origin.
pub(super) struct Asked {
    /// It carried `Authorization`.
    pub(super) authorized: bool,
    pub(super) headers: HeaderMap,
    /// Set by a layer inside (sessions) when it made the response personal.
    pub(super) mark: PrivateMark,
}

impl<K: MakeCacheKey> Shared<K> {
    /// The leader of a miss: takes the cross-instance lock (if on), calls the origin, stores
    /// what may be stored, and hands the outcome to the followers.
    pub(super) async fn lead<S, ReqBody, ResBody>(
        &self,
        mut inner: S,
        mut parts: Parts,
        body: ReqBody,
        miss: Miss<'_>,
        leader: Leader,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        let cache = self.cache();
        let group = miss.group;
        let field = miss.names.as_ref().map_or_else(
            || BASE_FIELD.to_owned(),
            |n| variant_field(n, &parts.headers),
        );
        let verb = miss.verb;
        // Served while another instance refreshes: a stale entry within one of its windows.
        let servable = miss.stale.as_ref().is_some_and(|e| {
            let now = cache.now_ms();
            e.can_revalidate_stale(now) || e.can_serve_on_error(now)
        });
        let coordinated = if miss.store_down {
            Coordinated::Fetch(None)
        } else {
            cache
                .coordinate(group, &field, servable, || async {
                    let found = self.find(group, &parts.headers).await.ok()?;
                    found.entry
                })
                .await
        };
        let token = match coordinated {
            Coordinated::Fetch(token) => token,
            Coordinated::Filled(entry) => {
                let detail = format!("{verb}; collapsed");
                return Ok(self.serve_to_all(entry, group, &parts, &detail, leader));
            }
            Coordinated::ServeStale => {
                names::request(Answered::Stale);
                let Some(stale) = miss.stale else {
                    unreachable!("ServeStale needs a stale entry")
                };
                let detail = "hit; detail=stale-locked";
                return Ok(self.serve_to_all(stale, group, &parts, detail, leader));
            }
        };
        let flight = Flight {
            cache,
            group,
            field,
            token,
            leader,
        };
        let asked = Asked {
            authorized: parts.headers.contains_key(header::AUTHORIZATION),
            headers: parts.headers.clone(),
            mark: PrivateMark::get_or_insert(&mut parts.extensions),
        };
        let conditional = make_conditional(miss.stale.as_deref(), &mut parts.headers);
        let method = parts.method.clone();
        let called = inner.call(Request::from_parts(parts, body)).await;
        let stale_for_error = |now: u64| {
            miss.stale
                .as_ref()
                .filter(|e| e.can_serve_on_error(now))
                .cloned()
        };
        let res = match called {
            Ok(res) => res,
            Err(e) => {
                if conditional {
                    names::revalidation("error");
                }
                flight.end(HttpOutcome::Pass).await;
                if let Some(stale) = stale_for_error(cache.now_ms()) {
                    let (mut p, ()) = Request::new(()).into_parts();
                    p.method = method;
                    p.headers = asked.headers;
                    names::request(Answered::Stale);
                    return Ok(self.serve(&stale, &p, "fwd=stale; detail=stale-if-error"));
                }
                return Err(e);
            }
        };
        if res.status().is_server_error()
            && let Some(stale) = stale_for_error(cache.now_ms())
        {
            flight.end(HttpOutcome::Pass).await;
            let (mut p, ()) = Request::new(()).into_parts();
            p.method = method;
            p.headers = asked.headers;
            let detail = format!(
                "fwd=stale; fwd-status={}; detail=stale-if-error",
                res.status().as_u16()
            );
            names::request(Answered::Stale);
            return Ok(self.serve(&stale, &p, &detail));
        }
        if conditional {
            names::revalidation(match res.status() {
                StatusCode::NOT_MODIFIED => "not_modified",
                s if s.is_server_error() => "error",
                _ => "modified",
            });
        }
        if res.status() == StatusCode::NOT_MODIFIED
            && conditional
            && let Some(stale) = miss.stale.as_deref()
        {
            let (not_modified, _) = res.into_parts();
            return Ok(self
                .revalidated(not_modified, stale, asked, method, &miss, flight)
                .await);
        }
        Ok(self.store(res, &asked, &miss, flight).await)
    }

    /// Serves `entry` (stored by another instance meanwhile, or stale while another
    /// recomputes) and hands it to the followers.
    pub(super) fn serve_to_all<B>(
        &self,
        entry: Arc<Entry>,
        group: &str,
        parts: &Parts,
        detail: &str,
        leader: Leader,
    ) -> Response<ResponseBody<B>> {
        let names: Arc<[HeaderName]> = self.names_of(group);
        let res = self.serve(&entry, parts, detail);
        let field = variant_field(&names, &parts.headers);
        let outcome = HttpOutcome::Stored {
            entry,
            names,
            field,
        };
        leader.finish(Arc::new(outcome) as Outcome);
        res
    }
}
