//! Item 5: a successful response to any unsafe method (RFC 9111 §4.4), unknown ones included,
//! invalidates the target URI and the same-origin `Location`/`Content-Location` URIs.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::http::{Method, Request, StatusCode, header};
use tower_scale_cache::ResponseCacheLayer;

use crate::support::{count, counter, fetch, request, send, stores};

/// Any method on any path: `GET` answers `<path> #<call>` (cacheable); other methods answer
/// the status in `x-status` (default 200) with the `Location`/`Content-Location` in
/// `x-location`/`x-content-location`.
fn app(layer: ResponseCacheLayer, n: &Arc<AtomicUsize>) -> Router {
    let n = n.clone();
    Router::new()
        .fallback(move |req: AxumRequest| {
            let n = n.clone();
            async move {
                let mut res = axum::response::Response::new(Body::empty());
                if req.method() == Method::GET {
                    let c = count(&n);
                    *res.body_mut() = Body::from(format!("{} #{c}", req.uri().path()));
                    res.headers_mut()
                        .insert(header::CACHE_CONTROL, "max-age=600".parse().unwrap());
                    return res;
                }
                let h = req.headers();
                if let Some(s) = h.get("x-status") {
                    *res.status_mut() = StatusCode::from_bytes(s.as_bytes()).unwrap();
                }
                for (from, to) in [
                    ("x-location", header::LOCATION),
                    ("x-content-location", header::CONTENT_LOCATION),
                ] {
                    if let Some(v) = h.get(from) {
                        res.headers_mut().insert(to, v.clone());
                    }
                }
                res
            }
        })
        .layer(layer)
}

fn unsafe_req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut all = vec![("host", "example.com")];
    all.extend_from_slice(headers);
    request(method, uri, &all)
}

/// Whether `/path` is still cached.
async fn cached(app: &Router, path: &str) -> bool {
    fetch(app, path).await.cache_status().contains("hit")
}

#[tokio::test]
async fn any_successful_unsafe_method_invalidates_even_unknown_ones() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let n = counter();
        let app = app(ResponseCacheLayer::new(cache.clone()), &n);
        for method in [
            "POST", "PUT", "PATCH", "DELETE", "M-SEARCH", "PURGE", "LOCK",
        ] {
            for status in ["200", "204", "303"] {
                fetch(&app, "/r").await;
                assert!(cached(&app, "/r").await, "{name}");
                send(&app, unsafe_req(method, "/r", &[("x-status", status)])).await;
                assert!(
                    !cached(&app, "/r").await,
                    "{name}: {method} {status} left /r cached"
                );
            }
            // A failed one does not.
            fetch(&app, "/r").await;
            send(&app, unsafe_req(method, "/r", &[("x-status", "500")])).await;
            assert!(cached(&app, "/r").await, "{name}: {method} 500 purged /r");
        }
        // Safe methods do not invalidate.
        for method in ["OPTIONS", "TRACE"] {
            fetch(&app, "/r").await;
            send(&app, unsafe_req(method, "/r", &[])).await;
            assert!(cached(&app, "/r").await, "{name}: {method} purged /r");
        }
    }
}

#[tokio::test]
async fn same_origin_location_is_invalidated_and_another_origins_is_not() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let n = counter();
        let app = app(ResponseCacheLayer::new(cache.clone()), &n);
        for (header, value, purged) in [
            ("x-location", "/a", true),
            ("x-content-location", "/a", true),
            ("x-location", "http://example.com/a", true),
            ("x-content-location", "http://example.com/a?", true),
            ("x-location", "a", true),
            ("x-location", "http://evil.example/a", false),
            ("x-content-location", "https://evil.example/a", false),
            ("x-location", "//evil.example/a", false),
        ] {
            fetch(&app, "/a").await;
            assert!(cached(&app, "/a").await, "{name}");
            send(&app, unsafe_req("M-SEARCH", "/b", &[(header, value)])).await;
            assert_eq!(
                !cached(&app, "/a").await,
                purged,
                "{name}: {header}: {value}"
            );
        }
    }
}
