//! `RedisStore` on a real redis-server: exact global limits, the script's keys, garbage,
//! local blocking, keys that cannot share a bucket.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{Key, Quota, RateLimitLayer, RedisStore, Store};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_is_exact_across_four_instances() {
    let server = RedisServer::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::new(server.url())).unwrap())
        .collect();
    accuracy_across_instances(backends).await;
}

#[tokio::test]
async fn redis_store_policies_headers_and_retry_after() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let app = app(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_minute(2)])
            .unwrap()
            .key_with(api_key()),
    );
    assert_eq!(hit(&app, Some("r")).await.status(), StatusCode::OK);
    let res = hit(&app, Some("r")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=60"#);
    let res = hit(&app, Some("r")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&wait), "{wait}");
    // Keys expire by themselves after the quota has refilled (TTL set, never persistent):
    // the TAT is 60 s ahead, and the expiry lies one to two 60 s steps after it.
    let ttl: i64 = server
        .cli(&["PTTL", "ts:ratelimit:{default:r}:0"])
        .parse()
        .unwrap();
    assert!(ttl > 60_000 + 59_000 && ttl <= 180_000, "{ttl}");
}

#[tokio::test]
async fn redis_keys_outlive_their_tat_and_their_expiry_moves_in_steps() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    // 600 per minute: each request moves the TAT 100 ms ahead, a window of 60 s, so 600
    // requests carry the TAT across at least one 60 s expiry step.
    let store = RedisStore::new(backend);
    let quota = [Quota::per_minute(600)];
    let key = "ts:ratelimit:{steps}:0";
    for i in 0..600 {
        let d = store.check("steps", &quota, 1).await.unwrap();
        assert!(d.allowed, "request {i}");
        let tat_us: u64 = server.cli(&["GET", key]).parse().unwrap();
        let expires_ms: u64 = server.cli(&["PEXPIRETIME", key]).parse().unwrap();
        // Never lost before the quota has refilled: at least one step after the TAT.
        assert!(expires_ms * 1000 >= tat_us + 60_000_000, "request {i}");
        assert!(expires_ms * 1000 <= tat_us + 120_000_000, "request {i}");
    }
    // One SET for the new key, then INCRBY; the expiry rewritten only when the TAT crossed
    // into a new step (once or twice in 60 s), not per request.
    assert_eq!(server.calls("set"), 1);
    assert_eq!(server.calls("incrby"), 599);
    assert!((1..=2).contains(&server.calls("pexpireat")));
}

#[tokio::test]
async fn a_redis_key_holding_garbage_is_overwritten_and_counting_goes_on() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = RedisStore::new(backend);
    let quota = [Quota::per_minute(2)];
    let key = "ts:ratelimit:{junk}:0";
    // Not a number, a number `INCRBY` refuses, a TAT far in the past.
    for junk in ["junk", "1.5", "12"] {
        server.cli(&["SET", key, junk]);
        assert!(
            store.check("junk", &quota, 1).await.unwrap().allowed,
            "{junk}"
        );
        assert!(
            store.check("junk", &quota, 1).await.unwrap().allowed,
            "{junk}"
        );
        let third = store.check("junk", &quota, 1).await.unwrap();
        assert!(!third.allowed, "{junk}");
        assert!(third.retry_after > Duration::from_secs(29), "{junk}");
        let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0, "{junk}: {ttl}");
    }
    // A key of another type is the store's error (the layer's `OnStoreError` decides).
    server.cli(&["DEL", key]);
    server.cli(&["HSET", key, "f", "v"]);
    assert!(store.check("junk", &quota, 1).await.is_err());
}

#[tokio::test]
async fn far_over_the_limit_keys_are_rejected_without_a_round_trip() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let app = app(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_minute(2)])
            .unwrap()
            .key_with(api_key())
            .block_locally(Duration::from_secs(5), 1_000),
    );
    for _ in 0..2 {
        assert_eq!(hit(&app, Some("abuser")).await.status(), StatusCode::OK);
    }
    assert_eq!(
        hit(&app, Some("abuser")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    server.reset_stats();
    for _ in 0..10 {
        let res = hit(&app, Some("abuser")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(
        server.total_calls(),
        0,
        "blocked locally: {:?}",
        server.command_calls()
    );
    // Other keys still go to Redis.
    assert_eq!(hit(&app, Some("someone")).await.status(), StatusCode::OK);
    assert!(server.total_calls() > 0);
}

/// A key extractor keying signed-in users by name and everyone else by address: a user named
/// like an address, or like another key once Redis's hash-tag braces are rewritten, must not
/// count in that key's Redis bucket.
#[tokio::test]
async fn a_text_key_cannot_share_another_keys_redis_bucket() {
    use axum::http::request::Parts;
    use std::net::SocketAddr;
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let user_or_address = |parts: &Parts| -> Option<Key> {
        match parts.headers.get("x-user") {
            Some(user) => Some(Key::from(user.to_str().ok()?)),
            None => parts
                .extensions
                .get::<SocketAddr>()
                .map(|a| Key::ip(a.ip(), 64)),
        }
    };
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_hour(1)])
            .unwrap()
            .key_with(user_or_address),
    );
    let call = |peer: &str, user: Option<&str>| {
        let mut req = Request::get("/");
        if let Some(user) = user {
            req = req.header("x-user", user);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        app.clone().oneshot(req)
    };
    let pairs = [
        // (the first key's request, a request with another key)
        (("203.0.113.9:1", None), ("10.0.0.1:1", Some("203.0.113.9"))),
        (
            ("[2001:db8::1]:1", None),
            ("10.0.0.1:1", Some("2001:db8::/64")),
        ),
        (("10.0.0.1:1", Some("a{b}")), ("10.0.0.1:1", Some("a_b_"))),
        (("10.0.0.1:1", Some("x}{")), ("10.0.0.1:1", Some("x__"))),
    ];
    for ((peer, user), (other_peer, other_user)) in pairs {
        let first = call(peer, user).await.unwrap().status();
        assert_eq!(first, StatusCode::OK, "{peer} {user:?}");
        let other = call(other_peer, other_user).await.unwrap().status();
        assert_eq!(
            other,
            StatusCode::OK,
            "{other_user:?} after {peer} {user:?}"
        );
    }
}
