//! `HybridStore` over Redis: the lease bound, round trips saved, renewals, its headers.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tower_scale_ratelimit::{HybridStore, Quota, RateLimitLayer, RedisStore, Store};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

use crate::support::*;

/// These tests count round trips and admitted requests: each request that asks for a lease
/// waits for it (up to the command timeout), however slow the loaded machine makes Redis,
/// instead of being decided on the local share after the default 5 ms.
const PATIENT: Duration = Duration::from_secs(1);

/// 4 instances, leases of 5 (for 200 ms), asked through `Store::check` (no background
/// renewal) or as the layer asks (renewed below 2 units left): at most `4 × 5` (or
/// `4 × (5 + 2)`) below the quota, never above it.
async fn hybrid_bound(as_the_layer: bool) {
    let server = RedisServer::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::new(server.url())).unwrap())
        .collect();
    let store = |b| {
        HybridStore::new(RedisStore::new(b), 5, Duration::from_millis(200)).wait_at_most(PATIENT)
    };
    if as_the_layer {
        let make = |b| Arc::new(AsTheLayerAsks(store(b).prefetch_below(2))) as Arc<dyn Store>;
        accuracy_with(backends, make, 4 * (5 + 2)).await;
    } else {
        accuracy_with(backends, |b| Arc::new(store(b)) as Arc<dyn Store>, 4 * 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_leases_stay_within_the_documented_bound() {
    hybrid_bound(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_leases_renewed_ahead_stay_within_the_documented_bound() {
    hybrid_bound(true).await;
}

#[tokio::test]
async fn hybrid_leases_cut_round_trips_tenfold() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let quotas = [Quota::per_second(100_000)];
    let plain = RedisStore::new(backend.clone());
    let hybrid = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60))
        .wait_at_most(PATIENT);
    plain.check("warm", &quotas, 1).await.unwrap(); // loads the script
    server.reset_stats();
    for _ in 0..1_000 {
        assert!(plain.check("p", &quotas, 1).await.unwrap().allowed);
    }
    assert_eq!(server.calls("evalsha"), 1_000);
    server.reset_stats();
    for _ in 0..1_000 {
        assert!(hybrid.check("h", &quotas, 1).await.unwrap().allowed);
    }
    assert_eq!(
        server.calls("evalsha"),
        100,
        "one round trip per lease of 10"
    );
}

/// Through the layer: requests served from a lease make no round trip and still carry the
/// headers; a key's lease is its own, and two policies sharing one `HybridStore` never share
/// a lease (nor Redis keys); the quota still binds once the leases are spent.
#[tokio::test]
async fn hybrid_leases_through_the_layer_are_per_policy_and_per_key() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    // Leases taken only when spent (no background renewal: its timing is the next test's).
    let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60))
        .wait_at_most(PATIENT)
        .prefetch_below(0);
    let policy = |name: &str| {
        app(RateLimitLayer::new(store.clone(), [Quota::per_hour(25)])
            .unwrap()
            .name(name)
            .unwrap()
            .key_with(api_key()))
    };
    let (a, b) = (policy("a"), policy("b"));
    hit(&a, Some("warm")).await; // loads the script
    server.reset_stats();
    for i in 0..20 {
        let res = hit(&a, Some("k1")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["ratelimit-policy"], "\"a\";q=25;w=3600");
        // What the quota has left: Redis's figures at the last lease plus the lease's
        // unspent units.
        let field = res.headers()["ratelimit"].to_str().unwrap().to_owned();
        let expected = format!("\"a\";r={};", 24 - i);
        assert!(field.starts_with(&expected), "request {i}: {field}");
    }
    assert_eq!(server.calls("evalsha"), 2, "one round trip per lease of 10");
    // Policy b, same store, same key: its own lease and its own Redis key.
    server.reset_stats();
    assert_eq!(hit(&b, Some("k1")).await.status(), StatusCode::OK);
    assert_eq!(server.calls("evalsha"), 1);
    let mut keys = server.cli(&["--scan", "--pattern", "*ratelimit*"]);
    keys = keys.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert!(keys.contains("{a:k1}") && keys.contains("{b:k1}"), "{keys}");
    // Another key of policy a: a lease of its own.
    server.reset_stats();
    assert_eq!(hit(&a, Some("k2")).await.status(), StatusCode::OK);
    assert_eq!(server.calls("evalsha"), 1);
    // k1 of policy a: 20 units leased of 25; 5 are left, less than a lease, so each request
    // asks for a lease, is refused it, and is decided alone (two round trips); then the quota
    // binds (one: not even a single unit is left).
    server.reset_stats();
    for _ in 0..5 {
        assert_eq!(hit(&a, Some("k1")).await.status(), StatusCode::OK);
    }
    let res = hit(&a, Some("k1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(server.calls("evalsha"), 2 * 5 + 1);
}

/// Through the layer, a busy key's next lease is taken in the background once its lease falls
/// below the low-water mark: after the first request, no request waits for a round trip, and
/// the quota still binds once the leases are spent.
#[tokio::test]
async fn hybrid_leases_are_renewed_before_they_run_out() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60))
        .wait_at_most(PATIENT)
        .prefetch_below(5);
    let app = app(RateLimitLayer::new(store.clone(), [Quota::per_hour(115)])
        .unwrap()
        .key_with(api_key()));
    hit(&app, Some("warm")).await; // loads the script
    server.reset_stats();
    let settled = || renewals_settled(&store);
    for i in 0..100 {
        let res = hit(&app, Some("k")).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        settled().await;
    }
    // Request 0 took the first lease itself; requests 5, 15, …, 95 each left 4 units and
    // started one renewal of 10: 11 round trips, none made while a request waited.
    assert_eq!(server.calls("evalsha"), 11);
    // 110 units leased of 115, 10 of them still here: they serve 10 more requests, and the
    // renewal started on the way is refused (5 left in the quota, less than a lease); once
    // the lease is spent each request asks alone: 5 more, then the quota binds.
    server.reset_stats();
    for i in 0..10 + 5 {
        assert_eq!(
            hit(&app, Some("k")).await.status(),
            StatusCode::OK,
            "request {i}"
        );
        settled().await;
    }
    assert_eq!(
        hit(&app, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Through `HybridStore`, `RateLimit` reports what the quota has left (as of the last lease,
/// plus this instance's unspent lease units), not what is left of the local lease.
#[tokio::test]
async fn hybrid_ratelimit_header_reports_the_quotas_remainder_not_the_leases() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60))
        .wait_at_most(PATIENT)
        .prefetch_below(0);
    // One unit every 144 s: none comes back during the test.
    let app = app(RateLimitLayer::new(store, [Quota::per_hour(25)])
        .unwrap()
        .key_with(api_key()));
    for i in 0..25 {
        let res = hit(&app, Some("k")).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        let field = res.headers()["ratelimit"].to_str().unwrap().to_owned();
        let (remaining, reset) = field
            .strip_prefix("\"default\";r=")
            .and_then(|rest| rest.split_once(";t="))
            .unwrap_or_else(|| panic!("request {i}: {field}"));
        assert_eq!(remaining, (24 - i).to_string(), "request {i}: {field}");
        // Full again once the units spent so far have come back, 144 s each (less the time
        // the test has taken, under a second).
        let reset: u64 = reset.parse().unwrap();
        let full = 144 * (i + 1);
        assert!((full - 2..=full).contains(&reset), "request {i}: {field}");
    }
    assert_eq!(
        hit(&app, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
