//! The leader of a miss: the cross-instance lock, the origin call, stale-if-error, and
//! storing what may be stored.

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tower_scale_core::PrivateMark;
use tower_service::Service;

use super::body::{Buffered, ResponseBody, buffer};
use super::forward::{HttpOutcome, Miss};
use super::key::MakeCacheKey;
use super::layer::Shared;
use super::policy::{
    BASE_FIELD, coding_matches, negotiated_coding, storable, variant_field, vary_names,
};
use crate::BoxError;
use crate::cache::Coordinated;
use crate::entry::{Entry, EntryBody, headers_fit};
use crate::flight::{Leader, Outcome};

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
        let finish = |leader: Leader, o: HttpOutcome| leader.finish(Arc::new(o) as Outcome);
        let verb = miss.verb;
        let coordinated = if miss.store_down {
            Coordinated::Fetch(None)
        } else {
            cache
                .coordinate(group, &field, miss.stale.is_some(), || async {
                    let found = self.find(group, &parts.headers).await.ok()?;
                    found.entry
                })
                .await
        };
        let token = match coordinated {
            Coordinated::Fetch(token) => token,
            Coordinated::Filled(entry) => {
                let names = self.names_of(group);
                let res = self.serve(&entry, &parts, &format!("{verb}; collapsed"));
                let field = variant_field(&names, &parts.headers);
                finish(
                    leader,
                    HttpOutcome::Stored {
                        entry,
                        names,
                        field,
                    },
                );
                return Ok(res);
            }
            Coordinated::ServeStale => {
                let Some(stale) = miss.stale else {
                    unreachable!("ServeStale needs a stale entry")
                };
                let names = self.names_of(group);
                let res = self.serve(&stale, &parts, "hit; detail=stale-locked");
                let field = variant_field(&names, &parts.headers);
                finish(
                    leader,
                    HttpOutcome::Stored {
                        entry: stale,
                        names,
                        field,
                    },
                );
                return Ok(res);
            }
        };
        let authorized = parts.headers.contains_key(header::AUTHORIZATION);
        let req_headers = parts.headers.clone();
        let method = parts.method.clone();
        // A layer inside (sessions) sets the mark when it makes the response personal.
        let mark = PrivateMark::get_or_insert(&mut parts.extensions);
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
                cache.unlock(group, &field, token).await;
                if let Some(stale) = stale_for_error(cache.now_ms()) {
                    let (p, _) = Request::new(()).into_parts();
                    let mut p = p;
                    p.method = method;
                    p.headers = req_headers;
                    let res = self.serve(&stale, &p, "fwd=stale; detail=stale-if-error");
                    finish(leader, HttpOutcome::Pass);
                    return Ok(res);
                }
                finish(leader, HttpOutcome::Pass);
                return Err(e);
            }
        };
        if res.status().is_server_error()
            && let Some(stale) = stale_for_error(cache.now_ms())
        {
            cache.unlock(group, &field, token).await;
            let (mut p, _) = Request::new(()).into_parts();
            p.method = method;
            p.headers = req_headers;
            let detail = format!(
                "fwd=stale; fwd-status={}; detail=stale-if-error",
                res.status().as_u16()
            );
            finish(leader, HttpOutcome::Pass);
            return Ok(self.serve(&stale, &p, &detail));
        }
        let (mut rparts, rbody) = res.into_parts();
        let verdict = if mark.is_set() {
            Err("private")
        } else {
            storable(
                &self.settings().rules(authorized),
                rparts.status,
                &rparts.headers,
            )
        };
        let lifetimes = match verdict {
            Ok((lifetimes, _)) => lifetimes,
            Err(reason) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res = Response::from_parts(rparts, rbody);
                return Ok(self.pass(res, &format!("{verb}; detail={reason}")));
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
                negotiated_coding(&req_headers),
            )
        {
            Some("content-encoding")
        } else if !names.is_empty()
            && !miss.store_down
            && miss.stale.is_none()
            && !cache
                .has_room(group, self.settings().max_variants.saturating_add(1))
                .await
        {
            Some("too-many-variants")
        } else {
            None
        };
        if let Some(reason) = refused {
            cache.unlock(group, &field, token).await;
            finish(leader, HttpOutcome::Pass);
            let res = Response::from_parts(rparts, rbody);
            return Ok(self.pass(res, &format!("{verb}; detail={reason}")));
        }
        let buffered = buffer(Box::pin(rbody), self.settings().max_body).await;
        let (bytes, trailers) = match buffered {
            Buffered::Complete(bytes, trailers) => (bytes, trailers),
            Buffered::TooLarge(prefix, rest) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res = Response::from_parts(rparts, ResponseBody::resume(prefix, None, rest));
                return Ok(self.annotate(res, &format!("{verb}; detail=too-large")));
            }
            Buffered::Failed(prefix, error, rest) => {
                cache.unlock(group, &field, token).await;
                finish(leader, HttpOutcome::Pass);
                let res =
                    Response::from_parts(rparts, ResponseBody::resume(prefix, Some(error), rest));
                return Ok(self.annotate(res, &format!("{verb}; detail=body-error")));
            }
        };
        if let Some(trailers) = trailers {
            cache.unlock(group, &field, token).await;
            finish(leader, HttpOutcome::Pass);
            let res =
                Response::from_parts(rparts, ResponseBody::full_with_trailers(bytes, trailers));
            return Ok(self.annotate(res, &format!("{verb}; detail=trailers")));
        }
        let tags = self.tags(&rparts.headers, &rparts.extensions);
        let entry = Arc::new(self.entry(&rparts, bytes.clone(), lifetimes, cache.now_ms()));
        let stored_field = variant_field(&names, &req_headers);
        if miss.store_down {
            // Nothing to write to: the response is shared with the waiting requests only.
        } else if names.is_empty() {
            cache
                .save(group, &[(BASE_FIELD, Arc::clone(&entry))], &tags)
                .await;
        } else {
            let marker = Arc::new(Entry {
                stored_at: entry.stored_at,
                ttl_ms: entry.ttl_ms,
                swr_ms: entry.swr_ms,
                sie_ms: entry.sie_ms,
                body: EntryBody::Vary(names.to_vec().into()),
            });
            cache
                .save(
                    group,
                    &[(BASE_FIELD, marker), (&stored_field, Arc::clone(&entry))],
                    &tags,
                )
                .await;
            cache.remember_vary(group, Arc::clone(&names));
        }
        cache.unlock(group, &field, token).await;
        finish(
            leader,
            HttpOutcome::Stored {
                entry,
                names,
                field: stored_field,
            },
        );
        self.strip_tags(&mut rparts.headers);
        let res = Response::from_parts(rparts, ResponseBody::full(bytes));
        if miss.store_down {
            Ok(self.annotate(res, verb))
        } else {
            Ok(self.annotate(res, &format!("{verb}; stored")))
        }
    }
}
