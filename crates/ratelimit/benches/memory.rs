//! In-memory decision cost against tower_governor on the same quota and key mix, in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-ratelimit --bench memory
//! ```
//!
//! Both limit an axum router by peer IP (`ConnectInfo`), over 1,000 client addresses, with a
//! quota never reached; one iteration is one request through `oneshot`.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use tower_scale_ratelimit::{Key, LimiterClock, MemoryStore, Quota, RateLimitLayer, Store};

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let ours = app().layer(
        RateLimitLayer::new(
            MemoryStore::new(100_000).with_clock(LimiterClock::system()),
            [Quota::per_second(1_000_000).burst(1_000_000)],
        )
        .unwrap(),
    );
    let ours_no_headers = app().layer(
        RateLimitLayer::new(
            MemoryStore::new(100_000).with_clock(LimiterClock::system()),
            [Quota::per_second(1_000_000).burst(1_000_000)],
        )
        .unwrap()
        .headers(false),
    );
    let config = Arc::new(
        tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1000)
            .burst_size(1_000_000)
            .finish()
            .unwrap(),
    );
    let peer = app().layer(tower_governor::GovernorLayer::new(config));
    let config_headers = Arc::new(
        tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1000)
            .burst_size(1_000_000)
            .use_headers()
            .finish()
            .unwrap(),
    );
    let peer_headers = app().layer(tower_governor::GovernorLayer::new(config_headers));
    let addrs: Vec<SocketAddr> = (0..1000u32)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 40000)))
        .collect();
    let mut group = c.benchmark_group("ratelimit_memory_per_request");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, router) in [
        ("bare_axum", app()),
        ("tower_scale_ratelimit", ours),
        ("tower_scale_ratelimit_no_headers", ours_no_headers),
        ("tower_governor", peer),
        ("tower_governor_with_headers", peer_headers),
    ] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % addrs.len();
                let mut req = Request::get("/").body(Body::empty()).unwrap();
                req.extensions_mut().insert(ConnectInfo(addrs[i]));
                let router = router.clone();
                async move {
                    let res = router.oneshot(req).await.unwrap();
                    assert!(res.status().is_success());
                }
            })
        });
    }
    group.finish();

    // The store alone: one decision for one of 1,000 keys.
    let store = MemoryStore::new(100_000).with_clock(LimiterClock::system());
    let quotas = [Quota::per_second(1_000_000).burst(1_000_000)];
    let keys: Vec<Key> = addrs.iter().map(|a| Key::ip(a.ip(), 64)).collect();
    let mut i = 0usize;
    c.bench_function("ratelimit_memory_store_decision", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            store.check_local("bench", &keys[i], &quotas, 1).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
