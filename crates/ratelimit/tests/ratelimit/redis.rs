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
    // The key's expiry is the quota's TAT: 60 s ahead (two requests of 30 s), so the key is
    // gone as soon as the quota is full again, never persistent.
    let ttl: i64 = server
        .cli(&["PTTL", "ts:ratelimit:{default:r}:t0"])
        .parse()
        .unwrap();
    assert!(ttl > 59_000 && ttl <= 60_000, "{ttl}");
}

/// Redis commands per decision, as `INFO commandstats` counts them (a script's own commands
/// included): 3 per admitted request, 2 per rejected one, none of them `TIME`.
#[tokio::test]
async fn an_admitted_decision_costs_redis_three_commands_and_a_rejected_one_two() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = RedisStore::new(backend);
    // 100 per hour: one request every 36 s, so real time cannot refill the quota mid-test.
    let quota = [Quota::per_hour(100)];
    store.check("load-the-script", &quota, 1).await.unwrap();
    server.reset_stats();
    for i in 0..100 {
        assert!(store.check("k", &quota, 1).await.unwrap().allowed, "{i}");
    }
    let admitted = server.command_calls();
    server.reset_stats();
    for _ in 0..10 {
        assert!(!store.check("k", &quota, 1).await.unwrap().allowed);
    }
    let rejected = server.command_calls();
    let total = |calls: &[(String, u64)]| {
        calls
            .iter()
            .filter(|(name, _)| !name.starts_with("config"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let of = |calls: &[(String, u64)], name: &str| {
        calls.iter().find(|(n, _)| n == name).map_or(0, |(_, n)| *n)
    };
    // The first request finds no key (`SET`), the 99 after it move its expiry.
    assert_eq!(
        (of(&admitted, "evalsha"), of(&admitted, "pttl")),
        (100, 100),
        "{admitted:?}"
    );
    assert_eq!(
        (of(&admitted, "set"), of(&admitted, "pexpire")),
        (1, 99),
        "{admitted:?}"
    );
    assert_eq!(total(&admitted), 300, "{admitted:?}");
    assert_eq!(
        (
            of(&rejected, "evalsha"),
            of(&rejected, "pttl"),
            total(&rejected)
        ),
        (10, 10, 20),
        "{rejected:?}"
    );
}

/// A quota whose increment is not a whole number of milliseconds (the unit of expiries) keeps
/// its TAT exact to the µs: the key's value holds the remainder below the expiry, one `GET`
/// more per decision.
#[tokio::test]
async fn a_tat_between_milliseconds_is_kept_to_the_microsecond() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = RedisStore::new(backend);
    // 7 per hour: one request every 514,285,714 µs (not a whole number of ms).
    let quota = [Quota::per_hour(7)];
    let inc: u64 = 514_285_714;
    let key = "ts:ratelimit:{sub-ms}:t0";
    store.check("load-the-script", &quota, 1).await.unwrap();
    server.reset_stats();
    let tat = || -> u64 {
        let expires_ms: u64 = server.cli(&["PEXPIRETIME", key]).parse().unwrap();
        let below: u64 = server.cli(&["GET", key]).parse().unwrap_or(0);
        assert!(below < 1000, "{below}");
        expires_ms * 1000 - below
    };
    assert!(store.check("sub-ms", &quota, 1).await.unwrap().allowed);
    let mut last = tat();
    let mut exact = 0;
    for i in 1..7 {
        assert!(
            store.check("sub-ms", &quota, 1).await.unwrap().allowed,
            "{i}"
        );
        let now = tat();
        // Never less than one increment. More only when Redis's clock moved between the
        // script's `PTTL` and its `SET` (Redis < 7.2 reads it per command: a millisecond
        // tick, or redis-server descheduled there), which puts the TAT later, never earlier:
        // rare, so most steps are exact to the µs.
        assert!(
            now - last >= inc && now - last < inc + 1_000_000,
            "{i}: {}",
            now - last
        );
        exact += u32::from(now - last == inc);
        last = now;
    }
    assert!(exact >= 4, "{exact} of 6 steps exact");
    let d = store.check("sub-ms", &quota, 1).await.unwrap();
    assert!(!d.allowed);
    // One increment after the TAT, less the time the test took (its `redis-cli` runs).
    assert!(
        d.retry_after > Duration::from_secs(500),
        "{:?}",
        d.retry_after
    );
    // 3 (no key yet: `EVALSHA`, `PTTL`, `SET`), 6 × 4 (`GET` too), 3 (rejected: `EVALSHA`,
    // `PTTL`, `GET`, nothing written); the test's own `PEXPIRETIME` and `GET` left out.
    let calls = server.command_calls();
    assert_eq!(server.calls("evalsha"), 8, "{calls:?}");
    assert_eq!(server.calls("get"), 7 + 7, "{calls:?}");
    assert_eq!(server.total_calls() - 2 * 7, 3 + 6 * 4 + 3, "{calls:?}");
}

#[tokio::test]
async fn a_redis_key_holding_garbage_is_overwritten_and_counting_goes_on() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = RedisStore::new(backend);
    let quota = [Quota::per_minute(2)];
    let key = "ts:ratelimit:{junk}:t0";
    // Keys without an expiry (the TAT): a string, a number, a value of another type.
    for junk in [
        &["SET", key, "junk"][..],
        &["SET", key, "12"],
        &["HSET", key, "f", "v"],
    ] {
        server.cli(&["DEL", key]);
        server.cli(junk);
        assert!(
            store.check("junk", &quota, 1).await.unwrap().allowed,
            "{junk:?}"
        );
        assert!(
            store.check("junk", &quota, 1).await.unwrap().allowed,
            "{junk:?}"
        );
        let third = store.check("junk", &quota, 1).await.unwrap();
        assert!(!third.allowed, "{junk:?}");
        assert!(third.retry_after > Duration::from_secs(29), "{junk:?}");
        let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0, "{junk:?}: {ttl}");
    }
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
