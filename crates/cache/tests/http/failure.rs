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
