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

/// A request's read misses, and before it joins the in-process flight, another request for
/// the same URI calls the origin, stores the response and ends its flight: the late request
/// is served the stored response instead of calling the origin again.
#[tokio::test]
async fn a_miss_that_joins_after_the_flight_ended_does_not_call_the_origin_again() {
    let server = RedisServer::start();
    let memory = late_miss(MemoryStore::default()).await;
    let redis = late_miss(RedisStore::new(support::patient_backend(&server))).await;
    // The body the late request got (the origin numbers its calls), and the origin's calls.
    let expected = ("item 1 #1".to_owned(), 1);
    assert_eq!(
        [("memory", memory), ("redis", redis)],
        [("memory", expected.clone()), ("redis", expected)]
    );
}

/// On `store`, another request for `/item/1` runs to the end between a request's read and
/// its joining the flight: that request's body and the origin's calls.
async fn late_miss(store: impl Store) -> (String, usize) {
    let other = Arc::new(OnceLock::new());
    let cache = Cache::new(Interleaved::new(store, Moment::AfterRead, &other));
    let calls = counter();
    let app = counting_app(ResponseCacheLayer::new(cache), calls.clone(), "max-age=60");
    let first = app.clone();
    let runs_first: Other = Box::new(move || {
        let app = first.clone();
        Box::pin(async move {
            let r = fetch(&app, "/item/1").await;
            assert_eq!(r.text(), "item 1 #1", "the first request calls the origin");
        })
    });
    assert!(other.set(runs_first).is_ok());
    let late = fetch(&app, "/item/1").await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.cache_status());
    (late.text().to_owned(), calls.load(Ordering::SeqCst))
}
