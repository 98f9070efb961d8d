//! Item 8: `If-None-Match` makes a `304` only from a stored 2xx response (RFC 9110 §13.1.2):
//! `*` does not turn a cached 404 into a 304.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tower_scale_cache::ResponseCacheLayer;

use crate::support::{fetch, request, send, stores};

fn conditional(uri: &str, inm: &str) -> Request<Body> {
    request("GET", uri, &[("if-none-match", inm)])
}

#[tokio::test]
async fn if_none_match_star_cannot_turn_a_cached_404_into_a_304() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let app = Router::new()
            .route(
                "/gone",
                get(|| async {
                    (
                        StatusCode::NOT_FOUND,
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (header::ETAG, "\"e\""),
                        ],
                        "not found",
                    )
                }),
            )
            .route(
                "/ok",
                get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "ok") }),
            )
            .layer(ResponseCacheLayer::new(cache.clone()));
        fetch(&app, "/gone").await;
        for inm in ["*", "\"e\"", "W/\"e\""] {
            let r = send(&app, conditional("/gone", inm)).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}: {inm}");
            assert_eq!(r.text(), "not found", "{name}: {inm}");
        }
        // A stored 2xx: `*` matches it even without an ETag.
        fetch(&app, "/ok").await;
        let r = send(&app, conditional("/ok", "*")).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{name}");
        let r = send(&app, conditional("/ok", "\"other\"")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
    }
}
