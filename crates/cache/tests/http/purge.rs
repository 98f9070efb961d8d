//! Purges: tags (header and extension) and successful unsafe requests.

use super::*;

#[tokio::test]
async fn tags_from_header_and_extension_purge_together() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let cache = cache(&server, &clock);
    let calls = counter();
    let (c1, c2) = (calls.clone(), calls.clone());
    let app = Router::new()
        .route(
            "/a",
            get(move || {
                c1.fetch_add(1, Ordering::SeqCst);
                async {
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (
                                header::HeaderName::from_static("surrogate-key"),
                                "catalog product-1",
                            ),
                        ],
                        "a",
                    )
                }
            }),
        )
        .route(
            "/b",
            get(move || {
                c2.fetch_add(1, Ordering::SeqCst);
                async {
                    (
                        Extension(CacheTags(vec!["catalog".into()])),
                        [(header::CACHE_CONTROL, "max-age=60")],
                        "b",
                    )
                        .into_response()
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    let a = fetch(&app, "/a").await;
    assert!(
        !a.headers.contains_key("surrogate-key"),
        "the tag header is not sent on"
    );
    fetch(&app, "/b").await;
    assert!(fetch(&app, "/a").await.cache_status().contains("hit"));
    assert!(fetch(&app, "/b").await.cache_status().contains("hit"));
    cache.invalidate_tag("product-1").await.unwrap();
    assert!(fetch(&app, "/a").await.cache_status().contains("miss"));
    assert!(fetch(&app, "/b").await.cache_status().contains("hit"));
    cache.invalidate_tag("catalog").await.unwrap();
    assert!(fetch(&app, "/a").await.cache_status().contains("miss"));
    assert!(fetch(&app, "/b").await.cache_status().contains("miss"));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn successful_unsafe_requests_purge_their_uri() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/r",
            get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { ([(header::CACHE_CONTROL, "max-age=60")], "r") }
            })
            .put(move || {
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let put = || Request::put("/r").body(Body::empty()).unwrap();
    fetch(&app, "/r").await;
    fail.store(true, Ordering::SeqCst);
    let r = send(&app, put()).await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=method");
    assert!(
        fetch(&app, "/r").await.cache_status().contains("hit"),
        "a failed PUT purges nothing"
    );
    fail.store(false, Ordering::SeqCst);
    send(&app, put()).await;
    assert!(
        fetch(&app, "/r").await.cache_status().contains("miss"),
        "a successful PUT purges"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
