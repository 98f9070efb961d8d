//! Item 3: with the host in the key, a `Host` that is not an authority bypasses the cache,
//! and host and path cannot be confused.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Uri, header};
use tower_scale_cache::{DefaultKey, ResponseCacheLayer};

use crate::support::{request, send, stores};

/// Echoes the host and path it was asked for.
fn echo(layer: ResponseCacheLayer<DefaultKey>) -> Router {
    Router::new()
        .fallback(|uri: Uri, headers: axum::http::HeaderMap| async move {
            let host = headers
                .get(header::HOST)
                .map_or("", |h| h.to_str().unwrap_or(""))
                .to_owned();
            (
                [(header::CACHE_CONTROL, "max-age=60")],
                format!("host={host} path={}", uri.path()),
            )
        })
        .layer(layer)
}

fn get(host: &str, path: &str) -> Request<Body> {
    request("GET", path, &[("host", host)])
}

#[tokio::test]
async fn host_with_a_path_cannot_poison_another_hosts_page() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let layer =
            ResponseCacheLayer::new(cache.clone()).key_with(DefaultKey::new().with_host(true));
        let app = echo(layer);
        // The attacker's Host carries a path: not an authority, not looked up nor stored.
        let attack = send(&app, get("example.com/a", "/x")).await;
        assert_eq!(
            attack.cache_status(),
            "tower-scale; fwd=bypass; detail=key",
            "{name}"
        );
        let victim = send(&app, get("example.com", "/a/x")).await;
        assert_eq!(
            victim.text(),
            "host=example.com path=/a/x",
            "{name}: poisoned"
        );
        // Other invalid hosts bypass as well.
        for bad in [
            "exa mple.com",
            "user@example.com",
            "example.com?x",
            "",
            "example.com#f",
        ] {
            let r = send(&app, get(bad, "/y")).await;
            assert_eq!(
                r.cache_status(),
                "tower-scale; fwd=bypass; detail=key",
                "{name}: {bad:?}"
            );
        }
        // A valid host is one entry, whatever its case.
        send(&app, get("Example.COM:8080", "/z")).await;
        let again = send(&app, get("example.com:8080", "/z")).await;
        assert!(
            again.cache_status().contains("hit"),
            "{name}: {}",
            again.cache_status()
        );
    }
}
