//! The layer on Redis Cluster.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new(T0);
    let make = || {
        Cache::builder(RedisStore::new(support::cluster_backend(&cluster)))
            .l1(1 << 20)
            .lock(LockConfig::default())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(a.ready(Duration::from_secs(10)).await && b.ready(Duration::from_secs(10)).await);
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
    for i in 0..20 {
        fetch(&app_a, &format!("/item/{i}")).await;
        assert!(
            fetch(&app_b, &format!("/item/{i}"))
                .await
                .cache_status()
                .contains("hit")
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        20,
        "keys spread over the slots all stored"
    );
    a.invalidate("/item/3").await.unwrap();
    assert!(
        fetch(&app_b, "/item/3")
            .await
            .cache_status()
            .contains("miss")
    );
    assert!(
        fetch(&app_b, "/item/4")
            .await
            .cache_status()
            .contains("hit")
    );
}
