//! Item 6: headers the response's `Connection` field names are hop-by-hop: never stored nor
//! replayed (RFC 9111 §3.1).

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tower_scale_cache::ResponseCacheLayer;

use crate::support::{fetch, stores};

#[tokio::test]
async fn headers_named_by_connection_are_not_replayed_to_other_clients() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let app = Router::new()
            .route(
                "/page",
                get(|| async {
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (header::CONNECTION, "X-Upstream-Token, close"),
                            (
                                header::HeaderName::from_static("x-upstream-token"),
                                "secret",
                            ),
                            (header::CONTENT_LANGUAGE, "en"),
                        ],
                        "page",
                    )
                }),
            )
            .layer(ResponseCacheLayer::new(cache.clone()));
        fetch(&app, "/page").await;
        let hit = fetch(&app, "/page").await;
        assert!(
            hit.cache_status().contains("hit"),
            "{name}: {}",
            hit.cache_status()
        );
        assert!(
            !hit.headers.contains_key("x-upstream-token"),
            "{name}: replayed"
        );
        assert!(!hit.headers.contains_key(header::CONNECTION), "{name}");
        assert_eq!(hit.headers[header::CONTENT_LANGUAGE], "en", "{name}");
    }
}
