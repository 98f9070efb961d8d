//! Compression throughput against plain tower-http `CompressionLayer` at the same gzip level,
//! on 1 KB, 20 KB and 200 KB JSON bodies, in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-compression --bench throughput
//! ```
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::compression::CompressionLevel;
use tower_scale_compression::{CompressionLayer, Encoding};

/// A JSON document of about `size` bytes, of the kind APIs return.
fn json(size: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{i},"name":"item {i}","tags":["alpha","beta"],"price":{}.{:02},"active":{}}}"#,
            i * 7 % 1000,
            i % 100,
            i % 2 == 0
        ));
        i += 1;
    }
    out.push(']');
    out
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("gzip_level_6");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for size in [1_024usize, 20_000, 200_000] {
        let doc = json(size);
        let route = move || {
            let doc = doc.clone();
            Router::new().route("/", get(move || async move { doc }))
        };
        let ours = route().layer(
            CompressionLayer::new()
                .encodings(&[Encoding::Gzip])
                .min_size(512)
                .level(Encoding::Gzip, 6),
        );
        let plain = route().layer(
            tower_http::compression::CompressionLayer::new()
                .no_br()
                .no_deflate()
                .no_zstd()
                .quality(CompressionLevel::Precise(6)),
        );
        let plain_with_min = route().layer(
            tower_http::compression::CompressionLayer::new()
                .no_br()
                .no_deflate()
                .no_zstd()
                .quality(CompressionLevel::Precise(6))
                .compress_when(tower_http::compression::predicate::SizeAbove::new(512)),
        );
        group.throughput(Throughput::Bytes(size as u64));
        for (name, router) in [
            ("tower_scale", ours),
            ("tower_http", plain),
            ("tower_http_size_above", plain_with_min),
        ] {
            group.bench_with_input(BenchmarkId::new(name, size), &router, |b, router| {
                b.to_async(&rt).iter(|| async {
                    let req = Request::get("/")
                        .header("accept-encoding", "gzip")
                        .body(Body::empty())
                        .unwrap();
                    let res = router.clone().oneshot(req).await.unwrap();
                    assert_eq!(res.headers()["content-encoding"], "gzip");
                    res.into_body().collect().await.unwrap().to_bytes()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
