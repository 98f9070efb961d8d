//! Stale entries and validators: stale-while-revalidate, stale-if-error and `304` for `If-None-Match`.

use super::*;

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let Setup {
        server,
        clock,
        calls,
        app,
    } = setup("max-age=10, stale-while-revalidate=30");
    assert_eq!(fetch(&app, "/item/1").await.text(), "item 1 #1");
    clock.advance(Duration::from_secs(15));
    // 50 concurrent requests on the stale entry: all served stale at once, one refresh.
    let replies = join_all((0..50).map(|_| fetch(&app, "/item/1"))).await;
    for r in &replies {
        assert_eq!(r.text(), "item 1 #1");
        assert_eq!(
            r.cache_status(),
            "tower-scale; hit; ttl=-5; detail=stale-while-revalidate"
        );
    }
    eventually("the background refresh stored #2", || {
        calls.load(Ordering::SeqCst) == 2
            && server
                .cli(&["GET", "ts:cache:{/item/1}:s:GET"])
                .contains("#2")
    })
    .await;
    let fresh = fetch(&app, "/item/1").await;
    assert_eq!(fresh.text(), "item 1 #2");
    assert!(fresh.cache_status().starts_with("tower-scale; hit;"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one refresh");
    // Past the window: a plain miss.
    clock.advance(Duration::from_secs(41));
    assert_eq!(fetch(&app, "/item/1").await.text(), "item 1 #3");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let app = Router::new()
        .route(
            "/x",
            get(move || {
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CACHE_CONTROL, "no-store")],
                            "down",
                        )
                    } else {
                        (
                            StatusCode::OK,
                            [(header::CACHE_CONTROL, "max-age=10")],
                            "good",
                        )
                    }
                }
            }),
        )
        .layer(
            ResponseCacheLayer::new(cache(&server, &clock)).stale_if_error(Duration::from_secs(60)),
        );
    fetch(&app, "/x").await;
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let r = fetch(&app, "/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "good");
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    // Beyond the window the failure goes through.
    clock.advance(Duration::from_secs(60));
    let r = fetch(&app, "/x").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // The origin recovered: stored again.
    failing.store(false, Ordering::SeqCst);
    assert_eq!(
        fetch(&app, "/x").await.cache_status(),
        "tower-scale; fwd=uri-miss; stored"
    );
}

#[tokio::test]
async fn etag_and_if_none_match_answer_304_from_the_cache() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = fixed_route(
        "/doc",
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "document".into(),
        &calls,
    )
    .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    fetch(&app, "/doc").await;
    let r = send(
        &app,
        Request::get("/doc")
            .header("if-none-match", "\"v0\", W/\"v1\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["etag"], "\"v1\"");
    assert!(r.cache_status().contains("hit"));
    let r = send(
        &app,
        Request::get("/doc")
            .header("if-none-match", "\"v2\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "document");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
