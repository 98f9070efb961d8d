//! Storability and freshness: lifetimes, what is never stored, bypasses, large bodies, `HEAD`, custom keys and `Vary` variants.

use super::*;

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let Setup {
        server: _server,
        clock,
        calls,
        app,
        ..
    } = setup("max-age=60");
    let first = fetch(&app, "/item/1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_status(), "tower-scale; fwd=uri-miss; stored");
    assert_eq!(first.text(), "item 1 #1");
    clock.advance(Duration::from_secs(5));
    let second = fetch(&app, "/item/1").await;
    assert_eq!(second.text(), "item 1 #1");
    assert_eq!(second.cache_status(), "tower-scale; hit; ttl=55");
    assert_eq!(second.headers["age"], "5");
    assert_eq!(second.headers["cache-control"], "max-age=60");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another URI is another entry; the query is normalised.
    assert_eq!(fetch(&app, "/item/2?b=1&a=2").await.text(), "item 2 #2");
    assert_eq!(fetch(&app, "/item/2?a=2&b=1").await.text(), "item 2 #2");
    // Expired: fetched again.
    clock.advance(Duration::from_secs(56));
    let third = fetch(&app, "/item/1").await;
    assert_eq!(third.text(), "item 1 #3");
    assert_eq!(third.cache_status(), "tower-scale; fwd=uri-miss; stored");
}

#[tokio::test]
async fn ttl_from_s_maxage_max_age_or_the_route() {
    let Setup {
        server, clock, app, ..
    } = setup("max-age=60, s-maxage=10");
    fetch(&app, "/item/1").await;
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        fetch(&app, "/item/1").await.cache_status(),
        "tower-scale; hit; ttl=1"
    );
    clock.advance(Duration::from_secs(2));
    assert!(
        fetch(&app, "/item/1")
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );

    // No lifetime in the response: not stored, unless the route has a TTL.
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        counter(),
        "public",
    );
    assert_eq!(
        fetch(&app, "/item/9").await.cache_status(),
        "tower-scale; fwd=uri-miss; detail=no-ttl"
    );
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).ttl(Duration::from_secs(30)),
        counter(),
        "public",
    );
    fetch(&app, "/item/8").await;
    assert_eq!(
        fetch(&app, "/item/8").await.cache_status(),
        "tower-scale; hit; ttl=30"
    );
    // The route's TTL can override the origin's.
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock))
            .ttl(Duration::from_secs(5))
            .override_origin_ttl(true),
        counter(),
        "max-age=600",
    );
    fetch(&app, "/item/7").await;
    assert_eq!(
        fetch(&app, "/item/7").await.cache_status(),
        "tower-scale; hit; ttl=5"
    );
}

/// Every response the rules forbid storing is passed through and fetched again next time.
#[tokio::test]
async fn unstorable_responses_are_not_stored() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/{case}",
            get(move |Path(case): Path<String>| {
                c.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut h = HeaderMap::new();
                    let mut status = StatusCode::OK;
                    let cc = |v: &'static str| HeaderValue::from_static(v);
                    match case.as_str() {
                        "no-store" => h.insert(header::CACHE_CONTROL, cc("no-store, max-age=60")),
                        "private" => h.insert(header::CACHE_CONTROL, cc("private, max-age=60")),
                        "no-cache" => h.insert(header::CACHE_CONTROL, cc("no-cache, max-age=60")),
                        "set-cookie" => {
                            h.insert(header::SET_COOKIE, cc("sid=1"));
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        "vary-star" => {
                            h.insert(header::VARY, cc("*"));
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        "status" => {
                            status = StatusCode::CREATED;
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        _ => None,
                    };
                    (status, h, "body")
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    for (case, reason) in [
        ("no-store", "no-store"),
        ("private", "private"),
        ("no-cache", "no-cache"),
        ("set-cookie", "set-cookie"),
        ("vary-star", "vary"),
        ("status", "status"),
    ] {
        let before = calls.load(Ordering::SeqCst);
        for _ in 0..2 {
            let r = fetch(&app, &format!("/{case}")).await;
            assert_eq!(
                r.cache_status(),
                format!("tower-scale; fwd=uri-miss; detail={reason}"),
                "{case}"
            );
            assert_eq!(r.text(), "body");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 2,
            "{case} reached the origin twice"
        );
        if case == "set-cookie" {
            assert_eq!(
                fetch(&app, "/set-cookie").await.headers["set-cookie"],
                "sid=1"
            );
        }
    }
    assert_eq!(
        server.cli(&["KEYS", "ts:cache:*"]),
        "",
        "nothing was written to Redis"
    );
}

#[tokio::test]
async fn authorization_and_cookie_bypass_unless_configured() {
    let Setup {
        server,
        clock,
        calls,
        app,
    } = setup("max-age=60");
    let with = |name: &str, value: &str| {
        Request::get("/item/1")
            .header(name, value)
            .body(Body::empty())
            .unwrap()
    };
    fetch(&app, "/item/1").await; // stored
    let r = send(&app, with("authorization", "Bearer x")).await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=bypass; detail=authorization"
    );
    let r = send(&app, with("cookie", "sid=1")).await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=bypass; detail=cookie");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "both bypassed to the origin"
    );

    // A public route serves requests with cookies from the cache.
    let public = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).public(true),
        counter(),
        "max-age=60",
    );
    let r = send(&public, with("cookie", "sid=1")).await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; hit; ttl=60",
        "shares the entry stored above"
    );

    // Authorized requests, when allowed, store only explicitly shareable responses.
    let authed = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).cache_authorized(true),
        counter(),
        "max-age=60",
    );
    let r = send(&authed, with("authorization", "Bearer x")).await;
    assert_eq!(r.cache_status(), "tower-scale; hit; ttl=60");
    let r = send(
        &authed,
        Request::get("/item/5")
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=uri-miss; detail=authorization"
    );
    let shared = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).cache_authorized(true),
        counter(),
        "s-maxage=60",
    );
    let r = send(
        &shared,
        Request::get("/item/6")
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=uri-miss; stored");
}

#[tokio::test]
async fn large_bodies_stream_through_uncached() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                // A streamed body of 64 chunks of 1 KiB: no size hint.
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024]));
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        Body::from_stream(futures_util::stream::iter(chunks)),
                    )
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)).max_body_size(10_000));
    for _ in 0..2 {
        let r = fetch(&app, "/big").await;
        assert_eq!(r.body.len(), 64 * 1024, "the whole body arrives");
        assert_eq!(
            r.cache_status(),
            "tower-scale; fwd=uri-miss; detail=too-large"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn vary_keys_variants_by_the_named_request_headers() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/v",
            get(move |headers: HeaderMap| {
                c.fetch_add(1, Ordering::SeqCst);
                let lang = headers
                    .get("accept-language")
                    .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
                async move {
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (header::VARY, "Accept-Language"),
                        ],
                        format!("lang={lang}"),
                    )
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let lang = |l: &str| {
        Request::get("/v")
            .header("accept-language", l)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, lang("fr")).await.text(), "lang=fr");
    let de = send(&app, lang("de")).await;
    assert_eq!(de.text(), "lang=de");
    assert_eq!(de.cache_status(), "tower-scale; fwd=vary-miss; stored");
    let fr = send(&app, lang("fr")).await;
    assert_eq!(
        (fr.text(), fr.cache_status()),
        ("lang=fr", "tower-scale; hit; ttl=60")
    );
    assert_eq!(send(&app, lang("de")).await.text(), "lang=de");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A fresh instance (no remembered Vary) finds the variant through the marker.
    let other = Router::new()
        .route("/v", get(|| async { "origin must not be called" }))
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let fr = send(&other, lang("fr")).await;
    assert_eq!(
        (fr.text(), fr.cache_status()),
        ("lang=fr", "tower-scale; hit; ttl=60")
    );
    // Purging the URI removes every variant.
    cache(&server, &clock).invalidate("/v").await.unwrap();
    assert!(
        send(&app, lang("de"))
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry() {
    let Setup {
        server: _server,
        calls,
        app,
        ..
    } = setup("max-age=60");
    fetch(&app, "/item/1").await;
    let r = send(&app, Request::head("/item/1").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert!(r.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_custom_key_can_bypass_or_share_entries() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let layer = ResponseCacheLayer::new(cache(&server, &clock)).key_with(
        |parts: &axum::http::request::Parts| {
            let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
            Some(CacheKey::new(format!("{tenant}:{}", parts.uri.path())))
        },
    );
    let app = counting_app(layer, calls.clone(), "max-age=60");
    let req = |tenant: Option<&str>| {
        let mut b = Request::get("/item/1");
        if let Some(t) = tenant {
            b = b.header("x-tenant", t);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(
        send(&app, req(None)).await.cache_status(),
        "tower-scale; fwd=bypass; detail=key"
    );
    send(&app, req(Some("a"))).await;
    assert!(
        send(&app, req(Some("a")))
            .await
            .cache_status()
            .contains("hit")
    );
    assert!(
        send(&app, req(Some("b")))
            .await
            .cache_status()
            .contains("miss")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
