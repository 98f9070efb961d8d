//! Per-request overhead of `MetricsLayer` against axum-prometheus on the same app, in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-metrics --bench layer
//! ```
//!
//! Each iteration sends one `GET /users/{id}` through the router with `oneshot` (no network);
//! the bare router is the baseline, and both layers record into the same global Prometheus
//! recorder.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use tower_scale_metrics::{MetricsLayer, PrometheusMetrics};

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/other", get(|| async { "other" }))
}

fn bench(c: &mut Criterion) {
    let metrics = PrometheusMetrics::install().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let routers = [
        ("bare_axum", app()),
        ("tower_scale_metrics", app().layer(MetricsLayer::new())),
        (
            "axum_prometheus",
            app().layer(axum_prometheus::PrometheusMetricLayer::new()),
        ),
    ];
    let mut group = c.benchmark_group("metrics_layer_per_request");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, router) in &routers {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let req = Request::get("/users/42").body(Body::empty()).unwrap();
                let res = router.clone().oneshot(req).await.unwrap();
                assert!(res.status().is_success());
            })
        });
    }
    group.finish();
    // Both layers recorded: the exporter saw requests from each.
    let text = metrics.render();
    assert!(text.contains("http_requests_total"), "{text}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
