//! Item 2: a query parameter the key ignores never reaches the handler, so a page reflecting
//! it cannot be stored with an attacker's value under the clean key.

use axum::Router;
use axum::http::{Uri, header};
use tower_scale_cache::{ResponseCacheConfig, ResponseCacheLayer};

use crate::support::{fetch, stores};

/// A page that reflects its query (as pages echoing `utm_source` into links do).
fn reflecting(layer: ResponseCacheLayer) -> Router {
    Router::new()
        .route(
            "/landing",
            axum::routing::get(|uri: Uri| async move {
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    format!("query: {}", uri.query().unwrap_or("")),
                )
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn ignored_tracking_parameter_reflected_by_the_page_never_reaches_a_clean_request() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let mut config = ResponseCacheConfig::default();
        config.ignore_query_params = vec!["utm_source".into()];
        let app = reflecting(ResponseCacheLayer::from_config(cache.clone(), &config).unwrap());
        let attack = fetch(&app, "/landing?utm_source=%3Cscript%3Eevil&page=2").await;
        assert!(!attack.text().contains("evil"), "{name}: {}", attack.text());
        assert_eq!(attack.text(), "query: page=2", "{name}");
        let clean = fetch(&app, "/landing?page=2").await;
        assert!(
            clean.cache_status().contains("hit"),
            "{name}: {}",
            clean.cache_status()
        );
        assert_eq!(
            clean.text(),
            "query: page=2",
            "{name}: the attacker's value was served"
        );
        // An ignored parameter alone: the handler sees no query at all.
        let only = fetch(&app, "/landing?utm_source=evil").await;
        assert_eq!(only.text(), "query: ", "{name}");
        assert_eq!(fetch(&app, "/landing").await.text(), "query: ", "{name}");
    }
}
