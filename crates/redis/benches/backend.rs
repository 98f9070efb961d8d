//! GET throughput at 64 concurrent requests: the backend in each connection mode against a
//! raw redis-rs multiplexed connection and a raw `ConnectionManager`, on one fresh
//! `redis-server` started by the test kit. Run with
//!
//! ```not_rust
//! cargo bench -p tower-scale-redis --bench backend
//! ```
//!
//! Each criterion iteration is one GET; 64 tasks share the iterations, so the reported
//! throughput is GETs per second at 64 in flight.

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_scale_redis::redis::{self, aio::ConnectionManager};
use tower_scale_redis::{ConnectionKind, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const CONCURRENCY: u64 = 64;
const KEY: &str = "ts:bench:key";

/// Runs `iters` calls of `op` spread over 64 tasks and returns the wall time.
async fn run_concurrent<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(CONCURRENCY);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn backend(url: &str, kind: ConnectionKind, size: usize, breaker: bool) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.connection = kind;
    config.pool_size = Some(size);
    #[cfg(feature = "breaker")]
    {
        config.breaker_enabled = breaker;
    }
    // Without the feature there is no breaker: both settings measure the bare backend.
    #[cfg(not(feature = "breaker"))]
    let _ = breaker;
    RedisBackend::new(config).unwrap()
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let raw = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    let manager = rt.block_on(ConnectionManager::new(client)).unwrap();
    rt.block_on(async {
        let mut c = raw.clone();
        redis::cmd("SET")
            .arg(KEY)
            .arg("x".repeat(100))
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("get_64_concurrent");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    group.bench_function("raw_multiplexed_connection", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let raw = raw.clone();
            run_concurrent(iters, move || {
                let mut c = raw.clone();
                async move {
                    let _: Vec<u8> = redis::cmd("GET")
                        .arg(KEY)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                }
            })
        })
    });
    group.bench_function("raw_connection_manager", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let manager = manager.clone();
            run_concurrent(iters, move || {
                let mut c = manager.clone();
                async move {
                    let _: Vec<u8> = redis::cmd("GET")
                        .arg(KEY)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                }
            })
        })
    });
    let _guard = rt.enter();
    for (name, kind, size, breaker) in [
        (
            "backend_multiplexed_1",
            ConnectionKind::Multiplexed,
            1,
            true,
        ),
        (
            "backend_multiplexed_1_no_breaker",
            ConnectionKind::Multiplexed,
            1,
            false,
        ),
        (
            "backend_multiplexed_2",
            ConnectionKind::Multiplexed,
            2,
            true,
        ),
        (
            "backend_multiplexed_4",
            ConnectionKind::Multiplexed,
            4,
            true,
        ),
        ("backend_pooled_16", ConnectionKind::Pooled, 16, true),
        ("backend_pooled_64", ConnectionKind::Pooled, 64, true),
    ] {
        let backend = backend(&url, kind, size, breaker);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let backend = backend.clone();
                run_concurrent(iters, move || {
                    let backend = backend.clone();
                    async move {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(KEY);
                        let _: Vec<u8> = backend.query(&cmd).await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
