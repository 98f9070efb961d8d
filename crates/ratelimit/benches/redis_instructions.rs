//! Instructions per request (deterministic, for callgrind) of the layer with a shared store,
//! against a real `redis-server` started by the test kit, side by side with the Rust peer's
//! choices (`peers/rust-tower` of the shared folder): the bench app's `/limited` (Redis, keyed by
//! `x-api-key`, 100/s burst 100) against tower-rate-limit-redis (one `EVALSHA` per request on
//! one multiplexed redis-rs connection), and the bench app's `/hello` limiter with
//! `HybridStore` (peer IP, a quota never reached, headers on) against tower_governor in memory.
//!
//! Only this process is counted (Redis runs in its own process, outside callgrind). Requests are
//! sent one after another on a current-thread runtime, so every figure is the layer's own cost
//! plus the client side of its round trips.
//!
//! ```not_rust
//! scripts/bench/ratelimit-redis-instructions.sh   # every variant, N = 5000
//! ```
//!
//! Without `RL_VARIANT` (as under `cargo bench`), it runs every variant 500 times.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{HeaderKey, HybridStore, PeerIp, Quota, RateLimitLayer, RedisStore};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

/// The x-api-key, else nothing: the peer's `/limited` key.
#[derive(Clone)]
struct ApiKey;

impl tower_rate_limit_redis::KeyResolver for ApiKey {
    type Key = Vec<u8>;
    type ErrorBody = Body;

    fn key<T>(&self, req: &Request<T>) -> Result<Vec<u8>, Response<Body>> {
        let mut k = b"rl:limited:key:".to_vec();
        k.extend_from_slice(req.headers()["x-api-key"].as_bytes());
        Ok(k)
    }
}

async fn ok() -> &'static str {
    "ok"
}

fn app() -> Router {
    Router::new().route("/", get(ok))
}

async fn router(variant: &str, url: &str) -> Router {
    let backend = || RedisBackend::new(RedisConfig::new(url)).unwrap();
    match variant {
        "bare_axum" => app(),
        // The bench app's /limited.
        "limited_tower_scale" => app().route_layer(
            RateLimitLayer::new(
                RedisStore::new(backend()),
                [Quota::per_second(100).burst(100)],
            )
            .unwrap()
            .name("limited")
            .unwrap()
            .key_with(HeaderKey(http::HeaderName::from_static("x-api-key"))),
        ),
        // The same limiter around the handler (`Handler::layer`), as the bench app now applies
        // it: its inner service is the handler's, not a boxed `Route`.
        "limited_tower_scale_handler_layer" => {
            use axum::handler::Handler;
            let limit = RateLimitLayer::new(
                RedisStore::new(backend()),
                [Quota::per_second(100).burst(100)],
            )
            .unwrap()
            .name("limited")
            .unwrap()
            .key_with(HeaderKey(http::HeaderName::from_static("x-api-key")));
            Router::new().route("/", get(ok.layer(limit)))
        }
        // The Rust peer's /limited.
        "limited_tower_rate_limit_redis" => {
            let conn = redis032::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            app().route_layer(
                tower_rate_limit_redis::RateLimitLayer::builder()
                    .conn(conn)
                    .key_resolver(ApiKey)
                    .capacity(100)
                    .emission_interval(Duration::from_millis(10))
                    .build(),
            )
        }
        // The bench app's /hello limiter with BENCH_HELLO_LIMITER=hybrid.
        "hello_tower_scale_hybrid" => app().route_layer(
            RateLimitLayer::new(
                HybridStore::new(RedisStore::new(backend()), 1000, Duration::from_secs(1)),
                [Quota::per_second(1_000_000).burst(1_000_000_000)],
            )
            .unwrap()
            .name("stack")
            .unwrap()
            .key_with(PeerIp::default()),
        ),
        // The bench app's /hello limiter with BENCH_HELLO_LIMITER=redis (the default).
        "hello_tower_scale_redis" => app().route_layer(
            RateLimitLayer::new(
                RedisStore::new(backend()),
                [Quota::per_second(1_000_000).burst(1_000_000_000)],
            )
            .unwrap()
            .name("stack")
            .unwrap()
            .key_with(PeerIp::default()),
        ),
        // The Rust peer's /hello limiter.
        "hello_tower_governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .finish()
                .unwrap();
            app().route_layer(tower_governor::GovernorLayer::new(Arc::new(config)))
        }
        other => panic!("unknown RL_VARIANT {other}"),
    }
}

const VARIANTS: [&str; 6] = [
    "bare_axum",
    "limited_tower_scale",
    "limited_tower_rate_limit_redis",
    "hello_tower_scale_hybrid",
    "hello_tower_scale_redis",
    "hello_tower_governor",
];

fn request(i: usize) -> Request<Body> {
    // 100 API keys: with N = 5,000, 51 requests per key stay within the burst of 100 at any
    // speed, so every request is admitted (a rejection costs less). One peer, as under wrk:
    // /hello's limiter sees one key.
    let mut req = Request::get("/")
        .header("x-api-key", format!("key-{}", i % 100))
        .body(Body::empty())
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn run(variant: &str, n: usize, url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = rt.block_on(async {
        let router = router(variant, url).await;
        // Every key seen once first: connections open, script loaded.
        for i in 0..100 {
            let res = router.clone().oneshot(request(i)).await.unwrap();
            assert!(res.status().is_success(), "{variant}: {}", res.status());
        }
        router
    });
    let rejected = measured(&rt, &router, n);
    if rejected > 0 {
        eprintln!("{variant}: {rejected} of {n} rejected");
    }
}

/// The requests counted: `ratelimit-redis-instructions.sh` has callgrind collect inside this function
/// only (`--toggle-collect`), the runtime's I/O driver and the Redis connection's task
/// included, start-up left out.
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, router: &Router, n: usize) -> usize {
    rt.block_on(async {
        let mut rejected = 0;
        for i in 0..n {
            let res = router.clone().oneshot(request(i)).await.unwrap();
            rejected += usize::from(!res.status().is_success());
        }
        rejected
    })
}

fn main() {
    // RL_REDIS_URL: a server started outside (so it is not counted); else the test kit's.
    let (_server, url) = RedisServer::from_env_or_start("RL_REDIS_URL");
    tower_scale_testkit::bench_main("RL_VARIANT", "RL_N", VARIANTS, 500, |v, n| {
        run(v, n, &url);
    });
}
