//! A failing Redis: fail open on this instance's share, admit, fail closed.

use std::time::Duration;

use axum::http::StatusCode;
use tower_scale_ratelimit::{HybridStore, OnStoreError, Quota, RateLimitLayer, RedisStore};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

use crate::support::*;

/// A lease renewal that meets a hung Redis (SIGSTOP) fails in the background: the lease still
/// serves its units, and the request that finds it spent gets the layer's `OnStoreError`.
#[tokio::test]
async fn a_failed_background_renewal_leaves_the_lease_serving_then_the_policy_applies() {
    let server = RedisServer::start();
    let backend = impatient_backend(&server);
    // Patient: the first request waits for its lease however slow the loaded machine is.
    let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60))
        .wait_at_most(Duration::from_secs(1))
        .prefetch_below(5);
    let app = app(RateLimitLayer::new(store.clone(), [Quota::per_hour(1000)])
        .unwrap()
        .key_with(api_key())
        .on_store_error(OnStoreError::FailClosed));
    assert_eq!(hit(&app, Some("k")).await.status(), StatusCode::OK); // the lease: 9 left
    server.pause();
    for i in 1..10 {
        assert_eq!(
            hit(&app, Some("k")).await.status(),
            StatusCode::OK,
            "request {i}"
        );
    }
    // The renewal started at request 5 waits out the command timeout.
    renewals_settled(&store).await;
    assert_eq!(
        hit(&app, Some("k")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.resume();
}

#[tokio::test]
async fn a_failing_redis_admits_or_fails_closed_as_configured() {
    let server = RedisServer::start();
    let backend = impatient_backend(&server);
    let open = app(
        RateLimitLayer::new(RedisStore::new(backend.clone()), [Quota::per_minute(1)])
            .unwrap()
            .key_with(api_key())
            .on_store_error(OnStoreError::Admit),
    );
    let closed = app(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_minute(1)])
            .unwrap()
            .key_with(api_key())
            .on_store_error(OnStoreError::FailClosed),
    );
    server.pause();
    // A hung Redis: each decision waits at most the command timeout, then the policy applies.
    for _ in 0..3 {
        assert_eq!(hit(&open, Some("f")).await.status(), StatusCode::OK);
        assert_eq!(
            hit(&closed, Some("f")).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    server.resume();
    drop(server);
    // A dead Redis: the same.
    for _ in 0..3 {
        assert_eq!(hit(&open, Some("f")).await.status(), StatusCode::OK);
        assert_eq!(
            hit(&closed, Some("f")).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

#[tokio::test]
async fn a_dead_redis_falls_back_to_this_instances_share_then_redis_decides_again() {
    let mut server = RedisServer::start();
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(200);
    let backend = RedisBackend::new(config).unwrap();
    let app = shared_by_two(backend);
    redis_admits_the_whole_quota(&app, &server, "before").await;

    server.kill();
    // The local share on paused time: per window of 2 hours, 5 admitted, then 429s. Each
    // failed Redis call ends within the command timeout (a refused connection, a timeout, or
    // at once once the breaker is open), however the paused clock jumps.
    tokio::time::pause();
    for window in 0..3 {
        for n in 0..5 {
            let res = hit(&app, Some("k")).await;
            assert_eq!(res.status(), StatusCode::OK, "window {window}, request {n}");
            assert!(res.headers().contains_key("ratelimit"));
        }
        for _ in 0..3 {
            let res = hit(&app, Some("k")).await;
            assert_eq!(
                res.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "window {window}"
            );
            assert!(res.headers().contains_key("retry-after"));
        }
        tokio::time::advance(Duration::from_secs(7200)).await;
    }
    // Another key has its own local share.
    assert_eq!(hit(&app, Some("k2")).await.status(), StatusCode::OK);
    tokio::time::resume();

    server.restart();
    until_redis_decides(&app, &server).await;
    // Redis decides again: the whole quota for a key, not this instance's share of 5.
    redis_admits_the_whole_quota(&app, &server, "after").await;
}

#[tokio::test]
async fn a_hung_redis_falls_back_to_this_instances_share_within_the_timeout() {
    let server = RedisServer::start();
    let backend = impatient_backend(&server);
    let app = shared_by_two(backend);
    redis_admits_the_whole_quota(&app, &server, "before").await;

    server.pause();
    // Each request waits at most the command timeout (until the backend's breaker opens, then
    // not at all), then the local share decides: 5 of the 5-per-2-hours share, then 429s.
    // (The local limiter regains one request every 24 minutes.)
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(hit(&app, Some("k")).await.status());
    }
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(admitted, 5, "{statuses:?}");
    assert!(statuses[..5].iter().all(|s| *s == StatusCode::OK));
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );

    server.resume();
    until_redis_decides(&app, &server).await;
    redis_admits_the_whole_quota(&app, &server, "after").await;
}

/// A `HybridStore` whose lease is spent while Redis hangs (SIGSTOP) decides on this instance's
/// share without waiting for Redis: on paused time, every request during the pause ends
/// within the store's wait for a lease (5 ms by default), long before the command timeout
/// (500 ms) could have ended a Redis command. The lease asked for meanwhile lands once Redis
/// answers, and requests are served from it again.
#[tokio::test]
async fn a_spent_lease_decides_on_this_instances_share_without_waiting_for_a_hung_redis() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    // Leases taken only when spent: every 10th request asks Redis.
    let store =
        HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60)).prefetch_below(0);
    let app = app(RateLimitLayer::new(store, [Quota::per_hour(1000)])
        .unwrap()
        .key_with(api_key()));
    for _ in 0..10 {
        assert_eq!(hit(&app, Some("k")).await.status(), StatusCode::OK);
    }
    server.reset_stats();

    server.pause();
    tokio::time::pause();
    for i in 0..30 {
        let start = tokio::time::Instant::now();
        let res = hit(&app, Some("k")).await;
        let waited = start.elapsed();
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        // The store's wait (5 ms), rounded up to the timer's millisecond.
        assert!(
            waited <= Duration::from_millis(5 + 1),
            "request {i} waited {waited:?} for a paused Redis"
        );
    }
    tokio::time::resume();
    server.resume();
    // Within a second of Redis answering again, requests are served from a lease: at most
    // one round trip per 10 requests.
    let back = std::time::Instant::now();
    let mut from_lease = 0;
    while from_lease < 10 {
        server.reset_stats();
        for _ in 0..10 {
            assert_eq!(hit(&app, Some("k")).await.status(), StatusCode::OK);
        }
        if server.calls("evalsha") <= 1 {
            from_lease += 10;
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "Redis still not deciding a second after it returned"
        );
    }
}

/// A background lease renewal stuck on a hung Redis (SIGSTOP) holds the key's refill until
/// the command timeout. Requests that find the lease spent meanwhile do not each wait the
/// store's wait for a lease (5 ms) behind it: once the renewal has been in flight that long,
/// they decide at once on this instance's share. On paused time: of 30 requests during the
/// pause, at most the first one to find the lease spent waits (the renewal's first 5 ms); the
/// others end without time passing.
#[tokio::test]
async fn a_stuck_renewal_lets_the_requests_after_it_decide_at_once() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    // Renewed in the background below 2 units left (a quarter of the lease).
    let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60));
    let app = app(RateLimitLayer::new(store.clone(), [Quota::per_hour(1000)])
        .unwrap()
        .key_with(api_key()));
    // Until a request is served from a lease (the first lease may land after the first
    // request on a loaded machine): at least 8 units left.
    for attempt in 0.. {
        assert!(attempt < 1_000, "no lease taken from a healthy Redis");
        server.reset_stats();
        assert_eq!(hit(&app, Some("k")).await.status(), StatusCode::OK);
        if server.calls("evalsha") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    renewals_settled(&store).await;

    server.pause();
    tokio::time::pause();
    let mut waited_for_redis = 0;
    for i in 0..30 {
        let start = tokio::time::Instant::now();
        let res = hit(&app, Some("k")).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        if start.elapsed() > Duration::ZERO {
            waited_for_redis += 1;
        }
    }
    tokio::time::resume();
    server.resume();
    assert!(
        waited_for_redis <= 1,
        "{waited_for_redis} of 30 requests waited behind a stuck renewal"
    );
}
