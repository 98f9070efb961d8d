//! Offload pools compared: a rayon pool against tokio's blocking pool (both bounded to the
//! same number of threads), running many small CPU-bound jobs submitted from async tasks.
//!
//! ```not_rust
//! cargo bench -p tower-scale-offload --bench offload
//! ```
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_scale_offload::{Offload, PoolKind};

/// About 20 µs of CPU work.
fn work(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("offload_64_jobs");
    group.throughput(Throughput::Elements(64));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for kind in [PoolKind::Rayon, PoolKind::TokioBlocking] {
        let offload = Offload::builder().pool(kind).queue(1024).build().unwrap();
        group.bench_function(format!("{kind:?}"), |b| {
            b.to_async(&rt).iter(|| {
                let offload = offload.clone();
                async move {
                    let jobs: Vec<_> = (0..64u64)
                        .map(|i| {
                            let offload = offload.clone();
                            tokio::spawn(async move { offload.run(move || work(i)).await })
                        })
                        .collect();
                    for j in jobs {
                        j.await.unwrap().unwrap();
                    }
                }
            })
        });
    }
    group.bench_function("inline_on_runtime", |b| {
        b.to_async(&rt).iter(|| async {
            let jobs: Vec<_> = (0..64u64)
                .map(|i| tokio::spawn(async move { work(i) }))
                .collect();
            for j in jobs {
                j.await.unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
