//! Stampedes: one origin call per instance (single flight) and across instances (the lock).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_requests_make_one_origin_call() {
    let server = RedisServer::start();
    let calls = counter();
    let app = slow_app(
        ResponseCacheLayer::new(Cache::new(RedisStore::new(support::patient_backend(
            &server,
        )))),
        calls.clone(),
    );
    let replies = join_all((0..1000).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { fetch(&app, "/slow").await })
    }))
    .await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!((r.status, r.text()), (StatusCode::OK, "slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_the_lock_make_one_origin_call_in_total() {
    let server = RedisServer::start();
    let calls = counter();
    let lock = support::patient_lock();
    let apps: Vec<_> = (0..3)
        .map(|_| {
            // Each instance has its own backend (connections) and cache state.
            let cache = Cache::builder(RedisStore::new(support::patient_backend(&server)))
                .lock(lock)
                .build()
                .unwrap();
            slow_app(ResponseCacheLayer::new(cache), calls.clone())
        })
        .collect();
    let replies = join_all((0..3000).map(|i| {
        let app = apps[i % 3].clone();
        tokio::spawn(async move { fetch(&app, "/slow").await })
    }))
    .await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!((r.status, r.text()), (StatusCode::OK, "slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
