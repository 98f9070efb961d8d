//! GCRA behaviour with paused time (memory), accuracy across instances on real Redis and Redis
//! Cluster, failure modes, headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{
    BoxFuture, Decision, HeaderKey, HybridStore, Key, LimiterClock, MemoryStore, MissingKey,
    OnStoreError, Quota, RateLimitLayer, RedisStore, Store, StoreError,
};
use tower_scale_redis::{RedisBackend, RedisConfig, redis};
use tower_scale_testkit::{RedisCluster, RedisServer};

fn app(layer: RateLimitLayer<HeaderKey>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

fn api_key() -> HeaderKey {
    HeaderKey("x-api-key".parse().unwrap())
}

async fn hit(app: &Router, key: Option<&str>) -> Response<Body> {
    let mut req = Request::get("/");
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn memory(quotas: Vec<Quota>) -> RateLimitLayer<HeaderKey> {
    RateLimitLayer::new(MemoryStore::new(10_000), quotas)
        .unwrap()
        .key_with(api_key())
}

#[tokio::test(start_paused = true)]
async fn gcra_burst_then_steady_rate() {
    gcra_burst_then_steady_rate_with(true).await;
}

/// With the header fields off, the layer asks for the verdict only (`Store::admit_local`):
/// the same decisions.
#[tokio::test(start_paused = true)]
async fn gcra_burst_then_steady_rate_without_headers() {
    gcra_burst_then_steady_rate_with(false).await;
}

async fn gcra_burst_then_steady_rate_with(headers: bool) {
    let app = app(memory(vec![Quota::per_second(10).burst(5)]).headers(headers));
    for i in 0..5 {
        let res = hit(&app, Some("a")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let field = res.headers().get("ratelimit").map(|v| v.to_str().unwrap());
        let expected = format!(r#""default";r={};t=1"#, 4 - i);
        assert_eq!(field, headers.then_some(expected.as_str()));
    }
    let res = hit(&app, Some("a")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.headers()["retry-after"],
        "1",
        "100 ms, rounded up to whole seconds"
    );
    // Another key has its own bucket.
    assert_eq!(hit(&app, Some("b")).await.status(), StatusCode::OK);
    // One emission interval later exactly one more request fits.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(hit(&app, Some("a")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&app, Some("a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // After a quiet second the whole burst is back.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        assert_eq!(hit(&app, Some("a")).await.status(), StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn every_quota_of_a_policy_is_enforced() {
    let app = app(memory(vec![Quota::per_second(10), Quota::per_minute(12)]));
    let mut ok = 0;
    for _ in 0..30 {
        if hit(&app, Some("k")).await.status() == StatusCode::OK {
            ok += 1;
        }
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    // 30 requests over 6 s would all pass 10/s; the 12/min quota admits its burst of 12, plus
    // the one cell it regains after 5 s (one per 60 s / 12).
    assert_eq!(ok, 13);
}

#[tokio::test(start_paused = true)]
async fn headers_on_every_response() {
    let app = app(memory(vec![Quota::per_minute(3)]));
    let res = hit(&app, Some("h")).await;
    assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=3;w=60"#);
    assert_eq!(res.headers()["ratelimit"], r#""default";r=2;t=20"#);
    let app2 = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(memory(vec![Quota::per_minute(3)]).headers(false));
    let res = hit(&app2, Some("h")).await;
    assert!(res.headers().get("ratelimit").is_none());
}

#[tokio::test(start_paused = true)]
async fn keyless_requests_dry_run_and_impossible_costs() {
    let app1 = app(memory(vec![Quota::per_second(1)]));
    assert_eq!(hit(&app1, None).await.status(), StatusCode::BAD_REQUEST);
    let app2 = app(memory(vec![Quota::per_second(1)]).missing_key(MissingKey::Shared));
    assert_eq!(hit(&app2, None).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&app2, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let shadow = app(memory(vec![Quota::per_second(1)]).dry_run(true));
    for _ in 0..5 {
        let res = hit(&shadow, Some("d")).await;
        assert_eq!(res.status(), StatusCode::OK, "dry run never rejects");
    }

    let bulk = app(memory(vec![Quota::per_second(10).burst(5)]).cost(6));
    let res = hit(&bulk, Some("x")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.headers().get("retry-after").is_none(),
        "a cost above the burst can never fit: no Retry-After"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_under_key_spraying() {
    let store = MemoryStore::new(100);
    let quotas = [Quota::per_second(1)];
    for i in 0..5_000 {
        store.check(&format!("a{i}"), &quotas, 1).await.unwrap();
    }
    // Within one period every key is still limited: they are all kept (dropping one would let
    // its client through again).
    assert_eq!(store.len(), 5_000);
    // Once their quota has refilled, the next spray finds them gone.
    tokio::time::advance(Duration::from_secs(2)).await;
    for i in 0..2_048 {
        store.check(&format!("b{i}"), &quotas, 1).await.unwrap();
    }
    assert!(store.len() <= 2_048, "{} keys held", store.len());
    // A key still limited survives the clean-up.
    let mut ok = 0;
    for _ in 0..3 {
        if store.check("b2047", &quotas, 1).await.unwrap().allowed {
            ok += 1;
        }
    }
    assert_eq!(ok, 0);
}

#[test]
fn bad_policies_are_errors() {
    assert!(RateLimitLayer::new(MemoryStore::new(1), []).is_err());
    let err = RateLimitLayer::new(MemoryStore::new(1), [Quota::per_second(0)]).unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
    let err = RateLimitLayer::new(MemoryStore::new(1), [Quota::per_second(1)])
        .unwrap()
        .name("bad name")
        .unwrap_err();
    assert!(err.to_string().contains("bad name"), "{err}");
    let q: Quota = serde_json::from_str(r#"{"count": 100, "period": "1m", "burst": 10}"#).unwrap();
    assert_eq!(q, Quota::per_minute(100).burst(10));
}

/// This crate's tests turn on its `test-util` feature, so stores count in tokio's paused time
/// by default. A store given the system clock does not see tokio's time move: a key refused
/// for a minute stays refused however far tokio's clock is advanced, while the store on tokio's
/// clock admits it again.
#[tokio::test(start_paused = true)]
async fn stores_count_in_the_clock_they_are_given() {
    assert!(LimiterClock::default().is_tokio());
    assert!(!LimiterClock::system().is_tokio());
    let limit = |store: MemoryStore| {
        RateLimitLayer::new(store, [Quota::per_minute(1)])
            .unwrap()
            .key_with(api_key())
    };
    let system = app(limit(
        MemoryStore::new(10).with_clock(LimiterClock::system()),
    ));
    let tokio_time = app(limit(MemoryStore::new(10)));
    for app in [&system, &tokio_time] {
        assert_eq!(hit(app, Some("k")).await.status(), StatusCode::OK);
        assert_eq!(
            hit(app, Some("k")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(hit(&tokio_time, Some("k")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&system, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A clock given to a store that has counted already starts a fresh store: counts measured in
/// one clock's time mean nothing in another's. The store it was cloned from keeps its keys.
#[test]
fn a_clock_given_after_use_starts_the_store_afresh() {
    let quotas = [Quota::per_minute(1)];
    let store = MemoryStore::new(10);
    let key = Key::from("k");
    assert!(store.check_local("p", &key, &quotas, 1).unwrap().allowed);
    assert_eq!(store.len(), 1);
    let kept = store.clone();
    let fresh = store.with_clock(LimiterClock::tokio());
    assert_eq!(fresh.len(), 0);
    assert!(fresh.check_local("p", &key, &quotas, 1).unwrap().allowed);
    assert_eq!(kept.len(), 1);
    assert!(!kept.check_local("p", &key, &quotas, 1).unwrap().allowed);
}

/// Four independent limiters (separate backends, as four processes would have) hammer one key
/// for about two seconds: the admitted count is what the quota allows over the elapsed Redis
/// time, within one request per second of window.
async fn accuracy_across_instances(backends: Vec<RedisBackend>) {
    accuracy_with(
        backends,
        |b| Arc::new(RedisStore::new(b)) as Arc<dyn Store>,
        0,
    )
    .await;
}

async fn accuracy_with(
    backends: Vec<RedisBackend>,
    make: impl Fn(RedisBackend) -> Arc<dyn Store>,
    slack_below: u64,
) {
    let quota = Quota::per_second(50).burst(20);
    let time = |b: RedisBackend| async move {
        let (s, us): (u64, u64) = b.query(&redis::cmd("TIME")).await.unwrap();
        s * 1_000_000 + us
    };
    let admitted = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let last = Arc::new(AtomicU64::new(0));
    let start = time(backends[0].clone()).await;
    let mut tasks = Vec::new();
    for backend in &backends {
        let store = make(backend.clone());
        for _ in 0..8 {
            let (store, admitted, first, last, backend) = (
                Arc::clone(&store),
                Arc::clone(&admitted),
                Arc::clone(&first),
                Arc::clone(&last),
                backend.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let quotas = [quota];
                loop {
                    let d = store.check("acc:key", &quotas, 1).await.unwrap();
                    let now = {
                        let (s, us): (u64, u64) = backend.query(&redis::cmd("TIME")).await.unwrap();
                        s * 1_000_000 + us
                    };
                    if d.allowed {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        first.fetch_min(now, Ordering::SeqCst);
                        last.fetch_max(now, Ordering::SeqCst);
                    }
                    if now > start + 2_000_000 {
                        break;
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = admitted.load(Ordering::SeqCst);
    // The first admitted request opens the burst; after it, one request per 20 ms.
    let span_us = last.load(Ordering::SeqCst) - first.load(Ordering::SeqCst);
    let expected = 20 + span_us / 20_000;
    let windows = span_us / 1_000_000 + 1;
    assert!(
        n <= expected + windows + 1 && n + slack_below + windows + 1 >= expected,
        "admitted {n}, expected {expected} (-{slack_below}) ± {windows} over {span_us} µs"
    );
}

/// A store asked the way the layer asks it: a local decision first, else the store's own.
struct AsTheLayerAsks<S>(S);

impl<S: Store> Store for AsTheLayerAsks<S> {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let key = Key::from(key);
            match self.0.check_local("acc", &key, quotas, cost) {
                Some(d) => Ok(d),
                None => self.0.check_key("acc", &key, quotas, cost).await,
            }
        })
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.0.peek(key, quotas, cost)
    }
}

/// 4 instances, leases of 5 (for 200 ms), asked through `Store::check` (no background
/// renewal) or as the layer asks (renewed below 2 units left): at most `4 × 5` (or
/// `4 × (5 + 2)`) below the quota, never above it.
async fn hybrid_bound(as_the_layer: bool) {
    let server = RedisServer::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::new(server.url())).unwrap())
        .collect();
    let store = |b| HybridStore::new(RedisStore::new(b), 5, Duration::from_millis(200));
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
    let hybrid = HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60));
    plain.check("warm", &quotas, 1).await.unwrap(); // loads the script
    server.reset_stats();
    for _ in 0..1_000 {
        assert!(plain.check("p", &quotas, 1).await.unwrap().allowed);
    }
    assert_eq!(evalsha_calls(&server), 1_000);
    server.reset_stats();
    for _ in 0..1_000 {
        assert!(hybrid.check("h", &quotas, 1).await.unwrap().allowed);
    }
    assert_eq!(
        evalsha_calls(&server),
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
    let store =
        HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60)).prefetch_below(0);
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
    assert_eq!(evalsha_calls(&server), 2, "one round trip per lease of 10");
    // Policy b, same store, same key: its own lease and its own Redis key.
    server.reset_stats();
    assert_eq!(hit(&b, Some("k1")).await.status(), StatusCode::OK);
    assert_eq!(evalsha_calls(&server), 1);
    let mut keys = server.cli(&["--scan", "--pattern", "*ratelimit*"]);
    keys = keys.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert!(keys.contains("{a:k1}") && keys.contains("{b:k1}"), "{keys}");
    // Another key of policy a: a lease of its own.
    server.reset_stats();
    assert_eq!(hit(&a, Some("k2")).await.status(), StatusCode::OK);
    assert_eq!(evalsha_calls(&server), 1);
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
    assert_eq!(evalsha_calls(&server), 2 * 5 + 1);
}

/// Through the layer, a busy key's next lease is taken in the background once its lease falls
/// below the low-water mark: after the first request, no request waits for a round trip, and
/// the quota still binds once the leases are spent.
#[tokio::test]
async fn hybrid_leases_are_renewed_before_they_run_out() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store =
        HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60)).prefetch_below(5);
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
    assert_eq!(evalsha_calls(&server), 11);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_is_exact_across_four_instances() {
    let server = RedisServer::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::new(server.url())).unwrap())
        .collect();
    accuracy_across_instances(backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_is_exact_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::cluster(cluster.urls())).unwrap())
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

fn calls_of(server: &RedisServer, command: &str) -> u64 {
    server
        .command_calls()
        .into_iter()
        .find(|(n, _)| n == command)
        .map_or(0, |(_, c)| c)
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
    assert_eq!(calls_of(&server, "set"), 1);
    assert_eq!(calls_of(&server, "incrby"), 599);
    assert!((1..=2).contains(&calls_of(&server, "pexpireat")));
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

/// A backend whose commands give up after 100 ms (for the fault tests).
fn impatient_backend(server: &RedisServer) -> RedisBackend {
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(100);
    RedisBackend::new(config).unwrap()
}

/// Until the background lease renewals under way have ended (real I/O: bounded polling).
async fn renewals_settled(store: &HybridStore<RedisStore>) {
    for _ in 0..5_000 {
        if store.prefetches_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("a lease renewal never finished");
}

/// A lease renewal that meets a hung Redis (SIGSTOP) fails in the background: the lease still
/// serves its units, and the request that finds it spent gets the layer's `OnStoreError`.
#[tokio::test]
async fn a_failed_background_renewal_leaves_the_lease_serving_then_the_policy_applies() {
    let server = RedisServer::start();
    let backend = impatient_backend(&server);
    let store =
        HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60)).prefetch_below(5);
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

fn evalsha_calls(server: &RedisServer) -> u64 {
    calls_of(server, "evalsha")
}

/// Polls (real time, bounded) until Redis decides requests again after an outage: a request
/// reaches it, then a few more (the backend's breaker closes after its half-open probes).
async fn until_redis_decides(app: &Router, server: &RedisServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    loop {
        server.reset_stats();
        i += 1;
        hit(app, Some(&format!("probe{i}"))).await;
        if evalsha_calls(server) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for j in 0..4 {
        hit(app, Some(&format!("warm{j}"))).await;
    }
}

/// 10 per hour shared by 2 instances: while Redis is away, this instance admits its share,
/// 5 per 2 hours (one every 24 minutes), bursts of 5.
fn shared_by_two(backend: RedisBackend) -> Router {
    app(
        RateLimitLayer::new(RedisStore::new(backend), [Quota::per_hour(10)])
            .unwrap()
            .key_with(api_key())
            .fallback_instances(2)
            .unwrap(),
    )
}

async fn redis_admits_the_whole_quota(app: &Router, server: &RedisServer, key: &str) {
    hit(app, Some("load-the-script")).await;
    server.reset_stats();
    for _ in 0..10 {
        assert_eq!(hit(app, Some(key)).await.status(), StatusCode::OK);
    }
    assert_eq!(
        hit(app, Some(key)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(evalsha_calls(server), 11, "every decision made by Redis");
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

#[tokio::test(start_paused = true)]
async fn fallback_instances_in_config_and_zero_is_an_error() {
    use tower_scale_ratelimit::{OnStoreErrorConfig, RateLimitConfig};
    let config: RateLimitConfig = serde_json::from_str(
        r#"{"quotas": [{"count": 10, "period": "1m"}], "on_store_error": "admit",
            "fallback_instances": 3}"#,
    )
    .unwrap();
    assert_eq!(config.on_store_error, OnStoreErrorConfig::Admit);
    assert_eq!(config.fallback_instances, 3);
    assert!(RateLimitLayer::from_config(MemoryStore::new(10), &config).is_ok());
    let default: RateLimitConfig =
        serde_json::from_str(r#"{"quotas": [{"count": 10, "period": "1m"}]}"#).unwrap();
    assert_eq!(default.on_store_error, OnStoreErrorConfig::FailOpen);
    assert_eq!(default.fallback_instances, 1);
    let zero = RateLimitConfig {
        fallback_instances: 0,
        ..default
    };
    let err = RateLimitLayer::from_config(MemoryStore::new(10), &zero).unwrap_err();
    assert!(err.to_string().contains("fallback_instances"), "{err}");
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

#[tokio::test(start_paused = true)]
async fn a_policy_from_a_config_file() {
    use tower_scale_ratelimit::RateLimitConfig;
    let config: RateLimitConfig = serde_json::from_str(
        r#"{"name": "api", "quotas": [{"count": 1, "period": "1m"}],
            "key": {"type": "header", "name": "x-api-key"}, "missing_key": "reject401"}"#,
    )
    .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(MemoryStore::new(100), &config).unwrap());
    assert_eq!(hit(&app, None).await.status(), StatusCode::UNAUTHORIZED);
    let res = hit(&app, Some("c")).await;
    assert_eq!(res.headers()["ratelimit-policy"], r#""api";q=1;w=60"#);
    assert_eq!(
        hit(&app, Some("c")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let bad: RateLimitConfig = serde_json::from_str(
        r#"{"quotas": [{"count": 1, "period": "1m"}], "key": {"type": "header", "name": "bad header"}}"#,
    )
    .unwrap();
    let err = RateLimitLayer::from_config(MemoryStore::new(1), &bad).unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");
    assert!(
        serde_json::from_str::<RateLimitConfig>(r#"{"quotas": [], "burts": 1}"#).is_err(),
        "unknown fields are errors"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rejection_body_is_customisable() {
    use tower_scale_ratelimit::Decision;
    let layer = memory(vec![Quota::per_minute(1)]).rejection_with(
        |status: StatusCode, d: Option<&Decision>| {
            let wait = d.map_or(0, |d| d.retry_after.as_secs());
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"error":"slow down","retry_in_s":{wait}}}"#
                )))
                .unwrap()
        },
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    hit(&app, Some("j")).await;
    let res = hit(&app, Some("j")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["retry-after"], "60");
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], br#"{"error":"slow down","retry_in_s":60}"#);
}

/// A login route: 200 with the right `x-password`, 401 otherwise.
fn login_app<C: tower_scale_ratelimit::CountPolicy>(
    layer: RateLimitLayer<HeaderKey, tower_scale_ratelimit::EmptyRejection, C>,
) -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: axum::http::HeaderMap| async move {
                if headers.get("x-password").is_some_and(|p| p == "right") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .layer(layer)
}

async fn login(app: &Router, key: &str, right: bool) -> StatusCode {
    let req = Request::get("/")
        .header("x-api-key", key)
        .header("x-password", if right { "right" } else { "wrong" })
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

/// 3 failed logins per period: successes are never counted, the 4th attempt after 3 failures
/// is refused whatever its password, and other keys are unaffected.
async fn only_failures_count(app: &Router) {
    for _ in 0..5 {
        assert_eq!(login(app, "u", true).await, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(login(app, "u", false).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(app, "u", true).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(app, "u", false).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(app, "other", false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login(app, "other", true).await, StatusCode::OK);
}

fn failed_logins(store: impl Store, quota: Quota) -> Router {
    login_app(
        RateLimitLayer::new(store, [quota])
            .unwrap()
            .key_with(api_key())
            .count_if(|status: StatusCode| status == StatusCode::UNAUTHORIZED),
    )
}

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
    assert_eq!(evalsha_calls(&server), 1);
    assert_eq!(login(&app, "v", false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(evalsha_calls(&server), 3);
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

/// Through `HybridStore`, `RateLimit` reports what the quota has left (as of the last lease,
/// plus this instance's unspent lease units), not what is left of the local lease.
#[tokio::test]
async fn hybrid_ratelimit_header_reports_the_quotas_remainder_not_the_leases() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store =
        HybridStore::new(RedisStore::new(backend), 10, Duration::from_secs(60)).prefetch_below(0);
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
/// Configuring a layer whose policy a clone shares gives it a policy of its own: the clone
/// keeps its configuration, and nothing panics.
#[tokio::test(start_paused = true)]
async fn configuring_a_cloned_layer_gives_it_its_own_policy_instead_of_panicking() {
    let base = memory(vec![Quota::per_minute(1)]);
    let kept = base.clone();
    let quiet = base.headers(false).dry_run(true).name("quiet").unwrap();
    let (kept, quiet) = (app(kept), app(quiet));
    let res = hit(&kept, Some("k")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=1;w=60");
    assert_eq!(
        hit(&kept, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        let res = hit(&quiet, Some("q")).await;
        assert_eq!(res.status(), StatusCode::OK, "dry run");
        assert!(!res.headers().contains_key("ratelimit-policy"));
    }
    // A layer configured after it built a service: the service keeps the policy it had.
    let layer = memory(vec![Quota::per_minute(1)]);
    let before = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer.clone());
    let after = app(layer.cost(2));
    assert_eq!(hit(&before, Some("b")).await.status(), StatusCode::OK);
    // A cost of 2 never fits a burst of 1.
    assert_eq!(
        hit(&after, Some("a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
/// A key extractor keying signed-in users by name and everyone else by address: a user named
/// like an address, or like another key once Redis's hash-tag braces are rewritten, must not
/// count in that key's Redis bucket.
#[tokio::test]
async fn a_text_key_cannot_share_another_keys_redis_bucket() {
    use axum::http::{Extensions, HeaderMap};
    use std::net::SocketAddr;
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let user_or_address = |h: &HeaderMap, e: &Extensions| -> Option<Key> {
        match h.get("x-user") {
            Some(user) => Some(Key::from(user.to_str().ok()?)),
            None => e.get::<SocketAddr>().map(|a| Key::ip(a.ip(), 64)),
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
