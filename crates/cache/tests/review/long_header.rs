//! Item 7: a response with a header value over 64 KiB is served but not stored (it used to be
//! stored cut, and the cut value replayed).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use tower_scale_cache::ResponseCacheLayer;

use crate::support::{calls, count, counter, fetch, stores};

#[tokio::test]
async fn header_value_over_64_kib_is_never_replayed_cut() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let n = counter();
        let big = "b".repeat(70_000);
        let handler_big = big.clone();
        let handler_n = n.clone();
        let app = Router::new()
            .route(
                "/page",
                get(move || {
                    count(&handler_n);
                    let v = HeaderValue::from_str(&handler_big).unwrap();
                    async move {
                        (
                            [
                                (
                                    header::CACHE_CONTROL,
                                    HeaderValue::from_static("max-age=60"),
                                ),
                                (header::LINK, v),
                            ],
                            "page",
                        )
                    }
                }),
            )
            .layer(ResponseCacheLayer::new(cache.clone()));
        for _ in 0..2 {
            let r = fetch(&app, "/page").await;
            assert_eq!(r.headers[header::LINK].len(), big.len(), "{name}: cut");
            assert_eq!(
                r.cache_status(),
                "tower-scale; fwd=uri-miss; detail=header-too-large",
                "{name}"
            );
        }
        assert_eq!(calls(&n), 2, "{name}");
    }
}
