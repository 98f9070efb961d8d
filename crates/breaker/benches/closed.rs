//! Closed-state overhead per call against tower-resilience's circuit breaker and failsafe, in
//! one run: single-threaded, and contended (4 tasks on a 2-worker runtime).
//!
//! ```not_rust
//! cargo bench -p tower-scale-breaker --bench closed
//! ```
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::futures::CircuitBreaker as _;
use tower::{Service, ServiceExt};
use tower_scale_breaker::{BreakerConfig, CircuitBreaker};

async fn ok_call() -> Result<u64, std::io::Error> {
    Ok(std::hint::black_box(1))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ours = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    let failsafe = failsafe::Config::new().build();
    let _guard = rt.enter();
    let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap();
    let resilience_svc = tower::ServiceBuilder::new()
        .layer(resilience)
        .service(tower::service_fn(|x: u64| async move {
            Ok::<_, std::io::Error>(std::hint::black_box(x))
        }));

    let mut group = c.benchmark_group("breaker_closed_call");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("baseline_no_breaker", |b| {
        b.to_async(&rt).iter(|| async { ok_call().await.unwrap() })
    });
    group.bench_function("tower_scale_breaker", |b| {
        b.to_async(&rt)
            .iter(|| async { ours.call(ok_call()).await.unwrap() })
    });
    group.bench_function("failsafe", |b| {
        b.to_async(&rt)
            .iter(|| async { failsafe.call(ok_call()).await.unwrap() })
    });
    group.bench_function("tower_resilience", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = resilience_svc.clone();
            async move { svc.ready().await.unwrap().call(1).await.unwrap() }
        })
    });

    // Contended: 4 tasks hammer one breaker; one iteration = 4 × 256 calls.
    const TASKS: usize = 4;
    const PER_TASK: usize = 256;
    macro_rules! contended {
        ($name:literal, $make:expr) => {
            group.bench_function(concat!("contended_", $name), |b| {
                b.to_async(&rt).iter(|| async {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let call = $make;
                            tokio::spawn(async move {
                                for _ in 0..PER_TASK {
                                    call().await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            });
        };
    }
    contended!("baseline_no_breaker", || async {
        ok_call().await.unwrap();
    });
    contended!("tower_scale_breaker", {
        let ours = ours.clone();
        move || {
            let ours = ours.clone();
            async move {
                ours.call(ok_call()).await.unwrap();
            }
        }
    });
    contended!("failsafe", {
        let failsafe = failsafe.clone();
        move || {
            let failsafe = failsafe.clone();
            async move {
                failsafe.call(ok_call()).await.unwrap();
            }
        }
    });
    contended!("tower_resilience", {
        let svc = resilience_svc.clone();
        move || {
            let mut svc = svc.clone();
            async move {
                svc.ready().await.unwrap().call(1).await.unwrap();
            }
        }
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
