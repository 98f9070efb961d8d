//! `count_if`: counting only failed logins, in memory, in Redis and while Redis is down.

use std::time::Duration;

use axum::http::StatusCode;
use tower_scale_ratelimit::{MemoryStore, Quota, RateLimitLayer, RedisStore};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn count_if_counts_only_failed_logins_in_memory() {
    let app = failed_logins(MemoryStore::new(1_000), Quota::per_minute(3));
    only_failures_count(&app).await;
    // One emission interval later, one failure fits again; successes still cost nothing.
    tokio::time::advance(Duration::from_secs(20)).await;
    for _ in 0..3 {
        assert_eq!(login(&app, "u", true).await, StatusCode::OK);
    }
    assert_eq!(login(&app, "u", false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, "u", true).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn count_if_counts_only_failed_logins_in_redis() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let app = failed_logins(RedisStore::new(backend.clone()), Quota::per_hour(3));
    only_failures_count(&app).await;
    // A success costs one round trip (peek), a failure two (peek, then count).
    server.reset_stats();
    assert_eq!(login(&app, "v", true).await, StatusCode::OK);
    assert_eq!(server.calls("evalsha"), 1);
    assert_eq!(login(&app, "v", false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.calls("evalsha"), 3);
    // The count lives in Redis: another instance (its own backend) sees it.
    let other = failed_logins(
        RedisStore::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap()),
        Quota::per_hour(3),
    );
    assert_eq!(
        login(&other, "u", true).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..2 {
        assert_eq!(login(&other, "v", false).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(&app, "v", true).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn count_if_while_redis_is_down_counts_on_the_local_share() {
    let mut server = RedisServer::start();
    let backend = impatient_backend(&server);
    let app = login_app(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_hour(6)])
            .unwrap()
            .key_with(api_key())
            .fallback_instances(2)
            .unwrap()
            .count_if(|status: StatusCode| status == StatusCode::UNAUTHORIZED),
    );
    server.kill();
    // This instance's share: 3 failures per 2 hours; successes still free.
    only_failures_count(&app).await;
}
