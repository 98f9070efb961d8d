//! Instructions per Redis-backed cache hit under callgrind (deterministic, unlike CPU time on
//! a shared machine), against a hand-written handler doing the Rust peer's one `GET`:
//!
//! ```not_rust
//! scripts/bench/cache-instructions.sh raw_get cache_hit
//! ```
//!
//! The script runs this binary under callgrind with `BENCH_VARIANT` and `BENCH_N=0`, then
//! `BENCH_N=$N`; the difference divided by `N` is one request, without start-up and warm-up.
//! Run it without callgrind to check it (`cargo bench -p tower-scale-cache --bench hit_ir`).
//!
//! Both variants are an axum `Router` resolved once with `.with_state(..)` (as `axum::serve`
//! does), called directly (no sockets, no HTTP parsing) on a current-thread runtime, for
//! `GET /cached/{id}` over `BENCH_IDS` ids (1,000) warmed first, against a real redis-server:
//!
//! - `raw_get`: the peer's handler: `GET raw:cached:{id}` through the same `RedisBackend`
//!   (`backend.query(redis::cmd("GET")..)`) → `Vec<u8>` → response with `content-type`;
//! - `redis_rs_get`: the same handler on a bare redis-rs `MultiplexedConnection`, the peer's own
//!   connection (what `RedisBackend` adds: its breaker, metrics and hung-connection watchdog);
//! - `cache_hit`: `ResponseCacheLayer` (Redis store, TTL 60 s, no local tier, as
//!   `examples/bench-app` configures `/cached/{id}`) as a route layer; every request a hit;
//! - `cache_hit_handler_layer`: the same layer around the handler (`Handler::layer`) instead of
//!   its route, so that its inner service is the handler's own, not a boxed `Route`;
//! - `fetch_bytes`: the peer's handler on tower-scale's typed API, `Cache::get_or_fetch_bytes`
//!   (Redis store, TTL 60 s, no local tier): the same cache-aside, with single-flight misses.
//!
//! Each request's body is collected and its length checked, in both variants.
#![allow(missing_docs)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::Service;
use tower_scale_cache::{Cache, RedisStore, ResponseCacheLayer};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

mod support;

use support::env_usize;

async fn call(app: &mut Router, uri: String) {
    let res = app
        .call(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.status().is_success());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 1024);
}

/// The measured requests: `n` hits cycling over the ids (`#[inline(never)]` so that
/// `callgrind --toggle-collect=*hit_ir*measured*` can count them alone).
#[inline(never)]
async fn measured(app: &mut Router, uris: &[String], n: usize) {
    for uri in uris.iter().cycle().take(n) {
        call(app, uri.clone()).await;
    }
}

fn main() {
    let variant = std::env::var("BENCH_VARIANT").unwrap_or_else(|_| "cache_hit".to_owned());
    let n = env_usize("BENCH_N", 20_000);
    let ids = env_usize("BENCH_IDS", 1_000).max(1);
    let uris: Vec<String> = (1..=ids).map(|i| format!("/cached/{i}")).collect();

    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(async { RedisBackend::new(RedisConfig::new(server.url())).unwrap() });

    let mut app = match variant.as_str() {
        "raw_get" => {
            rt.block_on(async {
                for i in 1..=ids {
                    support::store_raw(&backend, &i.to_string()).await;
                }
            });
            support::raw_get_app(backend)
        }
        "redis_rs_get" => {
            let conn = rt.block_on(async {
                for i in 1..=ids {
                    support::store_raw(&backend, &i.to_string()).await;
                }
                tower_scale_redis::redis::Client::open(server.url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap()
            });
            support::redis_rs_get_app(conn)
        }
        "cache_hit" => support::origin(Duration::ZERO)
            .route_layer(
                ResponseCacheLayer::new(Cache::new(RedisStore::new(backend)))
                    .ttl(Duration::from_secs(60)),
            )
            .with_state(()),
        "cache_hit_handler_layer" => {
            use axum::handler::Handler;
            let layer = ResponseCacheLayer::new(Cache::new(RedisStore::new(backend)))
                .ttl(Duration::from_secs(60));
            Router::new()
                .route(
                    "/cached/{id}",
                    axum::routing::get(support::origin_handler.layer(layer)),
                )
                .with_state(())
        }
        "fetch_bytes" => support::fetch_bytes_app(Cache::new(RedisStore::new(backend))),
        other => panic!(
            "BENCH_VARIANT: unknown variant {other:?} \
             (raw_get, redis_rs_get, cache_hit, cache_hit_handler_layer or fetch_bytes)"
        ),
    };
    rt.block_on(async {
        // Two warm passes: the cache's first stores every entry, the second hits; the same
        // for the raw handler so that both warm their connections and allocator alike.
        for uri in uris.iter().chain(&uris) {
            call(&mut app, uri.clone()).await;
        }
        measured(&mut app, &uris, n).await;
    });
    if variant.starts_with("cache_hit") || variant == "fetch_bytes" {
        let misses = server
            .command_calls()
            .into_iter()
            .find(|(c, _)| c == "evalsha")
            .map_or(0, |(_, n)| n);
        println!("{variant}: {n} requests ({misses} store scripts)");
    } else {
        println!("{variant}: {n} requests");
    }
}
