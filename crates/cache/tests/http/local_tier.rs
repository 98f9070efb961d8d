//! The local tier: purges reach every instance, unconfirmed purges are reported, and its hits equal Redis hits.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_instance_a_is_seen_by_instance_bs_local_tier() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let l1_cache = || {
        Cache::builder(RedisStore::new(backend(&server)))
            .l1(1 << 20)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (l1_cache(), l1_cache());
    assert!(a.ready(Duration::from_secs(5)).await && b.ready(Duration::from_secs(5)).await);
    let calls = counter();
    let app_a = counting_app(
        ResponseCacheLayer::new(a.clone()),
        calls.clone(),
        "max-age=60",
    );
    let app_b = counting_app(
        ResponseCacheLayer::new(b.clone()),
        calls.clone(),
        "max-age=60",
    );
    fetch(&app_b, "/item/1").await; // B stores, keeps it in its local tier
    server.reset_stats();
    for _ in 0..10 {
        assert!(
            fetch(&app_b, "/item/1")
                .await
                .cache_status()
                .contains("hit")
        );
    }
    assert_eq!(
        server.calls("hget"),
        0,
        "B's hits came from its local tier, not Redis"
    );
    // A purges; when it returns, B serves the entry no more.
    a.invalidate("/item/1").await.unwrap();
    let r = fetch(&app_b, "/item/1").await;
    assert!(r.cache_status().contains("miss"), "{}", r.cache_status());
    assert_eq!(r.text(), "item 1 #2");
    // The same through a tag, and through an unsafe request on A.
    fetch(&app_a, "/item/2").await;
    fetch(&app_b, "/item/2").await;
    send(
        &app_a,
        Request::post("/item/2").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        fetch(&app_b, "/item/2")
            .await
            .cache_status()
            .contains("miss")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_not_confirmed_by_every_instance_is_reported() {
    let server = RedisServer::start();
    let a = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .purge_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(a.ready(Duration::from_secs(5)).await);
    // A foreign subscriber that never acknowledges.
    let client =
        tower_scale_redis::redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let config = tower_scale_redis::redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    conn.subscribe("ts:cache:{bus}:inv").await.unwrap();
    let err = a.invalidate("/x").await.unwrap_err();
    assert!(
        matches!(
            err,
            tower_scale_cache::Error::PurgeUnconfirmed {
                expected: 2,
                acknowledged: 1
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_from_the_local_tier_and_from_redis_carry_the_same_headers() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let l1 = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(l1.ready(Duration::from_secs(5)).await);
    assert!(l1.l1_active());
    let calls = counter();
    // Local-tier hits serve a shared entry (headers copied), Redis hits a decoded one of
    // their own (headers moved): the responses must not differ.
    let local = counting_app(ResponseCacheLayer::new(l1), calls.clone(), "max-age=60");
    let remote = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        calls.clone(),
        "max-age=60",
    );
    fetch(&local, "/item/1").await;
    clock.advance(Duration::from_secs(3));
    server.reset_stats();
    let a = fetch(&local, "/item/1").await;
    let b = fetch(&local, "/item/1").await;
    assert_eq!(server.total_calls(), 0, "both from the local tier");
    let c = fetch(&remote, "/item/1").await;
    assert_eq!(server.total_calls(), 1, "one GET");
    assert_eq!(a.headers["age"], "3");
    assert_eq!(a.cache_status(), "tower-scale; hit; ttl=57");
    for r in [&a, &b, &c] {
        assert_eq!(r.text(), "item 1 #1");
        assert_eq!(r.headers, a.headers);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
