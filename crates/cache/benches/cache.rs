//! Cache benchmarks, every comparison measured in the same run against a real redis-server:
//!
//! ```not_rust
//! cargo bench -p tower-scale-cache --bench cache
//! ```
//!
//! - `hit_vs_raw_get`: 64 concurrent `GET /cached/1` answered from Redis by the cache layer,
//!   against a handler that does one raw Redis `GET` of the same 1 KiB document and returns
//!   it (the physical limit of a Redis-backed hit).
//! - `l1_hit`: one request answered from the local tier, against a handler returning the
//!   document from memory (the difference is the cost of an L1 hit); and a typed
//!   `get_or_fetch` answered from the local tier.
//! - `miss_overhead`: one request that misses (unique URI: one `GET`, one store script),
//!   against the same handler without the cache.
//! - `cached_scenario`: `/cached/{id}` of the shared bench contract (origin sleeps 5 ms and
//!   returns a 1024-byte JSON document; TTL 60 s) over 100 ids at 64 concurrent requests,
//!   warm cache against no cache.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use tower_scale_cache::{Cache, RedisStore, ResponseCacheLayer};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

mod support;

use support::{call, origin_doc};

const CONCURRENCY: usize = 64;

async fn concurrent(app: &Router, uri: impl Fn(usize) -> String) {
    let tasks = (0..CONCURRENCY).map(|i| {
        let app = app.clone();
        let uri = uri(i);
        tokio::spawn(async move { assert!(call(&app, &uri).await > 0) })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
}

fn cached_handler() -> Router {
    support::origin(Duration::from_millis(5))
}

/// What `axum::serve` does before serving: turns the handlers (and their layers) into services
/// once. Without it a `Router` called directly does that on every request, which would
/// charge the layer's construction to every request.
fn ready(app: Router) -> Router {
    app.with_state(())
}

fn layer(cache: Cache) -> ResponseCacheLayer {
    ResponseCacheLayer::new(cache).ttl(Duration::from_secs(60))
}

fn benches(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let doc = origin_doc("1");
    assert_eq!(doc.len(), 1024);

    // --- hit throughput against one raw GET ------------------------------------------------
    rt.block_on(support::store_raw(&backend, "1"));
    let raw_app = support::raw_get_app(backend.clone());
    let redis_cache = Cache::new(RedisStore::new(backend.clone()));
    let hit_app = ready(cached_handler().layer(layer(redis_cache)));
    rt.block_on(call(&hit_app, "/cached/1"));
    let mut g = c.benchmark_group("hit_vs_raw_get");
    g.throughput(Throughput::Elements(CONCURRENCY as u64));
    g.bench_function("raw_get_handler", |b| {
        b.to_async(&rt)
            .iter(|| concurrent(&raw_app, |_| "/cached/1".to_owned()));
    });
    g.bench_function("cache_hit_redis", |b| {
        b.to_async(&rt)
            .iter(|| concurrent(&hit_app, |_| "/cached/1".to_owned()));
    });
    g.finish();

    // --- L1 hit cost -------------------------------------------------------------------------
    let bare = ready({
        Router::new().route(
            "/cached/{id}",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
    });
    let l1_cache = Cache::builder(RedisStore::new(backend.clone()))
        .l1(64 << 20)
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    assert!(rt.block_on(l1_cache.ready(Duration::from_secs(5))));
    let l1_app = ready(cached_handler().layer(layer(l1_cache.clone())));
    rt.block_on(call(&l1_app, "/cached/1"));
    rt.block_on(async {
        l1_cache
            .get_or_fetch("user:1", Duration::from_secs(600), || async {
                Ok::<_, std::io::Error>((1u64, "ada".to_owned()))
            })
            .await
            .unwrap();
    });
    let mut g = c.benchmark_group("l1_hit");
    g.bench_function("bare_handler", |b| {
        b.to_async(&rt).iter(|| call(&bare, "/cached/1"));
    });
    g.bench_function("cache_hit_l1", |b| {
        b.to_async(&rt).iter(|| call(&l1_app, "/cached/1"));
    });
    g.bench_function("typed_get_or_fetch_l1", |b| {
        b.to_async(&rt).iter(|| async {
            let v: (u64, String) = l1_cache
                .get_or_fetch("user:1", Duration::from_secs(600), || async {
                    Err::<(u64, String), std::io::Error>(std::io::Error::other("miss"))
                })
                .await
                .unwrap();
            assert_eq!(v.0, 1);
        });
    });
    g.finish();

    // --- miss overhead -----------------------------------------------------------------------
    let fast_origin = || {
        Router::new().route(
            "/m/{id}",
            get(|Path(id): Path<String>| async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        // Short-lived, so the run does not fill Redis.
                        (header::CACHE_CONTROL, "max-age=2"),
                    ],
                    origin_doc(&id),
                )
            }),
        )
    };
    let no_cache = ready(fast_origin());
    let miss_app = ready(fast_origin().layer(ResponseCacheLayer::new(Cache::new(
        RedisStore::new(backend.clone()),
    ))));
    let next = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("miss_overhead");
    g.bench_function("no_cache", |b| {
        b.to_async(&rt).iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let app = no_cache.clone();
            async move { call(&app, &format!("/m/{n}")).await }
        });
    });
    g.bench_function("cache_miss_redis", |b| {
        b.to_async(&rt).iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let app = miss_app.clone();
            async move { call(&app, &format!("/m/{n}")).await }
        });
    });
    g.finish();

    // --- the /cached/{id} scenario -----------------------------------------------------------
    let uncached = ready(cached_handler());
    let warm = ready(cached_handler().layer(layer(Cache::new(RedisStore::new(backend)))));
    rt.block_on(async {
        for id in 0..100 {
            assert_eq!(call(&warm, &format!("/cached/{id}")).await, 1024);
        }
    });
    let round = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("cached_scenario");
    g.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, app) in [
        ("no_cache_origin_5ms", &uncached),
        ("cache_warm_redis", &warm),
    ] {
        let round = round.clone();
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let r = round.fetch_add(1, Ordering::Relaxed) as usize;
                concurrent(app, move |i| {
                    format!("/cached/{}", (r * CONCURRENCY + i) % 100)
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = cache;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cache);
