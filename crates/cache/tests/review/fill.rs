//! Item 4: one client cannot fill the shared store: `Accept-Encoding` variants are the coding
//! that would be chosen, variants per resource and key lengths are bounded.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use tower_scale_cache::ResponseCacheLayer;

use crate::support::{Stores, calls, count, counter, fetch, request, send, stores};

/// `/page` with `Vary: <vary>`, counting calls.
fn varying(layer: ResponseCacheLayer, vary: &'static str, n: &Arc<AtomicUsize>) -> Router {
    let n = n.clone();
    Router::new()
        .route(
            "/page",
            get(move || {
                let c = count(&n);
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=600"), (header::VARY, vary)],
                        format!("page #{c}"),
                    )
                }
            }),
        )
        .layer(layer)
}

/// [`varying`] on each store's cache with the default layer, with its call counter.
fn apps(stores: &Stores, vary: &'static str) -> Vec<(&'static str, Arc<AtomicUsize>, Router)> {
    let apps = stores.caches.iter().map(|(name, cache)| {
        let n = counter();
        let app = varying(ResponseCacheLayer::new(cache.clone()), vary, &n);
        (*name, n, app)
    });
    apps.collect()
}

fn with(name: &str, value: &str) -> Request<Body> {
    request("GET", "/page", &[(name, value)])
}

#[tokio::test]
async fn ten_thousand_accept_encodings_cannot_fill_the_store() {
    let stores = stores();
    for (name, n, app) in apps(&stores, "accept-encoding") {
        for i in 0..10_000 {
            let value = match i % 5 {
                0 => format!("gzip;q=0.{i}"),
                1 => format!("br;q=0.{i}, gzip;q=0.0{i}"),
                2 => format!("x-coding-{i}, deflate"),
                3 => format!("GZIP ; q=1 , identity;q=0.{i}"),
                _ => format!("zstd;q=0.5, *;q=0.{i}"),
            };
            send(&app, with("accept-encoding", &value)).await;
        }
        let made = calls(&n);
        assert!(made <= 5, "{name}: {made} entries for one resource");
    }
}

#[tokio::test]
async fn variants_of_one_resource_are_capped() {
    let stores = stores();
    for (name, n, app) in apps(&stores, "accept-language") {
        for round in 0..2 {
            for i in 0..100 {
                let r = send(&app, with("accept-language", &format!("x-{i}"))).await;
                if round == 0 && i >= 16 {
                    assert_eq!(
                        r.cache_status(),
                        "tower-scale; fwd=vary-miss; detail=too-many-variants",
                        "{name}: {i}"
                    );
                }
            }
        }
        let stored = 200 - calls(&n);
        assert_eq!(stored, 16, "{name}: variants stored");
    }
}

#[tokio::test]
async fn flood_of_long_query_strings_is_served_uncached() {
    let stores = stores();
    for (name, n, app) in apps(&stores, "accept-language") {
        let padding = "p".repeat(1100);
        for round in 0..2 {
            for i in 0..50 {
                let r = fetch(&app, &format!("/page?q={i}&pad={padding}")).await;
                if round == 1 {
                    assert_eq!(
                        r.cache_status(),
                        "tower-scale; fwd=bypass; detail=key-too-long",
                        "{name}"
                    );
                }
            }
        }
        assert_eq!(calls(&n), 100, "{name}: long keys stored");
        // Too many query parameters: served uncached as well.
        let many: String = (0..100).map(|i| format!("k{i}=v&")).collect();
        for _ in 0..2 {
            let r = fetch(&app, &format!("/page?{many}")).await;
            assert_eq!(
                r.cache_status(),
                "tower-scale; fwd=bypass; detail=too-many-params",
                "{name}"
            );
        }
        assert_eq!(calls(&n), 102, "{name}: many-parameter keys stored");
    }
}
