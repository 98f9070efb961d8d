//! Each routing decision moves `replica_routes_total` under its target and reason.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt;
use tower_scale_replica::{ReadWriteLayer, names};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn reads_and_writes_are_counted_by_target_and_reason() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test's runtime is current-thread: the layer runs on this thread.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let app = Router::new()
        .route("/items", get(|| async { "ok" }).post(|| async { "ok" }))
        .layer(ReadWriteLayer::new(b"0123456789abcdef0123456789abcdef-shared!").unwrap());
    let call = |method: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder().method(method).uri("/items");
            app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        }
    };
    for _ in 0..3 {
        call("GET").await;
    }
    call("POST").await;
    let text = handle.render();
    let series = |target: &str, reason: &str| {
        let name = names::REPLICA_ROUTES_TOTAL.name;
        value(
            &text,
            &format!("{name}{{target=\"{target}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("replica", "read"), 3.0, "{text}");
    assert_eq!(series("primary", "write"), 1.0, "{text}");
}
