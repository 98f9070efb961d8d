//! RFC 9111 conformance of the response cache, each rule on the memory store and on a real
//! redis-server: freshness (`Age`, `Date`, `Expires`, heuristics), revalidation with
//! conditional requests and `304`, answering the client's conditionals from the store,
//! targeted fields (RFC 9213), storable statuses and `Range` requests.

#[path = "../support/mod.rs"]
mod support;

mod freshness;
mod revalidation;
mod rules;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::routing::any;
use support::{Reply, send};
use tower_scale_cache::{Clock, ManualClock, ResponseCacheLayer};

/// What the origin answers: status, headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// An origin whose answer a test sets, counting its calls and keeping the request headers it
/// saw.
#[derive(Clone, Default)]
struct Origin {
    calls: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Origin {
    /// An origin answering `200`, `body` and `headers`.
    fn new(headers: &[(&str, &str)], body: &str) -> Self {
        let o = Self::default();
        o.answer(200, headers, body);
        o
    }

    /// From now on, answer `status`, `headers` and `body`.
    fn answer(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        *self.answer.lock().unwrap() = (status, headers, body.to_owned());
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The request headers of the origin's last call.
    fn last_request(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Every path of the origin behind `layer`.
    fn behind(&self, layer: ResponseCacheLayer) -> Router {
        let o = self.clone();
        Router::new()
            .fallback(any(move |req: Request<Body>| {
                let o = o.clone();
                async move {
                    o.calls.fetch_add(1, Ordering::SeqCst);
                    o.seen.lock().unwrap().push(req.headers().clone());
                    let (status, headers, body) = o.answer.lock().unwrap().clone();
                    let mut res = axum::response::Response::new(Body::from(body));
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    for (n, v) in headers {
                        res.headers_mut().append(
                            HeaderName::from_bytes(n.as_bytes()).unwrap(),
                            HeaderValue::from_str(&v).unwrap(),
                        );
                    }
                    res
                }
            }))
            .layer(layer)
    }
}

/// The HTTP-date `secs` seconds from the manual clock's time.
fn date(clock: &ManualClock, secs: i64) -> String {
    let base = std::time::UNIX_EPOCH + std::time::Duration::from_millis(clock.now_ms());
    let by = std::time::Duration::from_secs(secs.unsigned_abs());
    httpdate::fmt_http_date(if secs >= 0 { base + by } else { base - by })
}

/// A `GET` of `uri` with `headers`.
async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Reply {
    send(app, support::request("GET", uri, headers)).await
}

/// Whether a reply came from the store (its `Cache-Status` says `hit`).
fn hit(r: &Reply) -> bool {
    r.cache_status().contains("; hit")
}
