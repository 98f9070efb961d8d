//! `ratelimit_decisions_total` moves with each decision: `allowed` and `rejected` by the store,
//! `fallback_allowed` / `fallback_rejected` by the local share and `store_error` while Redis
//! fails. Each test records into its own recorder, the default of its current-thread runtime.

use axum::http::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_scale_ratelimit::{OnStoreError, Quota, names};
use tower_scale_testkit::RedisServer;

use crate::support::*;

fn decisions(handle: &PrometheusHandle, decision: &str) -> f64 {
    let series = format!(
        "{}{{policy=\"default\",decision=\"{decision}\"}} ",
        names::RATELIMIT_DECISIONS_TOTAL.name
    );
    let text = handle.render();
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn store_decisions_are_counted_as_allowed_or_rejected() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let app = app(memory(vec![Quota::per_second(2)]));
    for _ in 0..3 {
        hit(&app, Some("a")).await;
    }
    let handle = recorder.handle();
    assert_eq!(decisions(&handle, "allowed"), 2.0);
    assert_eq!(decisions(&handle, "rejected"), 1.0);
}

#[tokio::test]
async fn decisions_while_redis_fails_are_counted_apart() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let open = app(per_minute_on_redis(&server, OnStoreError::FailOpen));
    let closed = app(per_minute_on_redis(&server, OnStoreError::FailClosed));
    assert_eq!(hit(&open, Some("k")).await.status(), StatusCode::OK);
    let handle = recorder.handle();
    assert_eq!(decisions(&handle, "allowed"), 1.0);
    server.pause();
    // The local share (one per minute on one instance) admits one, then refuses.
    assert_eq!(hit(&open, Some("k")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&open, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        hit(&closed, Some("k")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.resume();
    assert_eq!(decisions(&handle, "fallback_allowed"), 1.0);
    assert_eq!(decisions(&handle, "fallback_rejected"), 1.0);
    assert_eq!(decisions(&handle, "store_error"), 1.0);
    assert_eq!(decisions(&handle, "allowed"), 1.0);
}
