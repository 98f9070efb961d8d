//! Redis failing mid-run: origin responses, never errors.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_mid_run_gives_origin_responses_not_errors() {
    let server = RedisServer::start();
    let calls = counter();
    let cache = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .lock(LockConfig::default())
        .build()
        .unwrap();
    let app = counting_app(ResponseCacheLayer::new(cache), calls.clone(), "max-age=60");
    fetch(&app, "/item/1").await;
    server.pause();
    // Cold keys while Redis hangs: every request answered by the origin.
    let replies = join_all((0..20).map(|i| {
        let app = app.clone();
        tokio::spawn(async move { fetch(&app, &format!("/item/cold{i}")).await })
    }))
    .await;
    for (i, r) in replies.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.text().starts_with(&format!("item cold{i} #")),
            "{}",
            r.text()
        );
    }
    server.resume();
    let mut stored = false;
    for i in 0..300 {
        let r = fetch(&app, &format!("/item/after{i}")).await;
        assert_eq!(r.status, StatusCode::OK);
        if fetch(&app, &format!("/item/after{i}"))
            .await
            .cache_status()
            .contains("hit")
        {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored, "the cache recovers once Redis answers again");
}

/// Redis hangs (SIGSTOP) while the origin answers a miss, after the lookup and the lock
/// succeeded: the request waits for Redis at most once, one command timeout. The write of the
/// entry fails on that timeout, and no other command of the request waits again after it (the
/// lock is left to expire by itself). On paused time from the origin's answer on, so the
/// request's wait shows as the time that passed.
#[tokio::test]
async fn a_miss_waits_for_a_hung_redis_at_most_one_command_timeout() {
    let server = Arc::new(RedisServer::start());
    let b = backend(&server);
    let timeout = b.config().command_timeout;
    b.ping().await.unwrap();
    let cache = Cache::builder(RedisStore::new(b))
        .lock(LockConfig::default())
        .build()
        .unwrap();
    let answered = Arc::new(std::sync::Mutex::new(None));
    let (hang, at) = (Arc::clone(&server), Arc::clone(&answered));
    let origin = move || {
        let (hang, at) = (Arc::clone(&hang), Arc::clone(&at));
        async move {
            hang.pause();
            tokio::time::pause();
            *at.lock().unwrap() = Some(tokio::time::Instant::now());
            ([(header::CACHE_CONTROL, "max-age=60")], "item")
        }
    };
    let app = Router::new()
        .route("/item/{id}", get(origin))
        .layer(ResponseCacheLayer::new(cache));
    let reply = fetch(&app, "/item/1").await;
    let waited = answered.lock().unwrap().unwrap().elapsed();
    tokio::time::resume();
    server.resume();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "item");
    // (+ 1 ms: the timer's rounding)
    assert!(
        waited <= timeout + Duration::from_millis(1),
        "the request waited {waited:?} for Redis after the origin answered (command timeout {timeout:?})"
    );
}
