//! `[metrics]`: the recorder installed, the HTTP metrics recorded, `/metrics` served where the
//! config says, outside the rate limit; the runtime probe's metrics in it.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale::stack::{Stack, StackConfig};

use crate::{body, lag_the_runtime, send};

#[tokio::test(start_paused = true)]
async fn metrics_are_recorded_and_served_where_the_config_says_outside_the_rate_limit() {
    let config = StackConfig::from_toml(
        r#"
        [metrics]
        path = "/internal/metrics"

        [rate_limit]
        quotas = [{ count = 1, period = "1h" }]
        key = { type = "header", name = "x-api-key" }
        "#,
    )
    .unwrap();
    let stack = Stack::build(&config).unwrap();
    assert!(stack.prometheus().is_some());
    let app = stack.apply(Router::new().route("/metrics-hello", get(|| async { "hello" })));
    let key = [("x-api-key", "metrics")];
    assert_eq!(
        send(&app, "/metrics-hello", &key).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "/metrics-hello", &key).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    lag_the_runtime(stack.lag().unwrap(), std::time::Duration::from_millis(5)).await;

    // Scraped past the quota, without an API key: the endpoint is outside the rate limit.
    for _ in 0..3 {
        let res = send(&app, "/internal/metrics", &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = body(res).await;
        for line in [
            r#"http_requests_total{method="GET",route="/metrics-hello",status="2xx"} 1"#,
            r#"http_requests_total{method="GET",route="/metrics-hello",status="4xx"} 1"#,
            "tokio_scheduling_lag_seconds_bucket",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
    // Merged after `apply` (which replaces the router's default fallback), the stack's own
    // routes still serve it.
    let merged = app.clone().merge(stack.health_routes().unwrap());
    let res = send(&merged, "/internal/metrics", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body(res).await.contains("http_requests_total"));
    // The default path is not served: the config moved it.
    let other_key = [("x-api-key", "metrics-2")];
    assert_eq!(
        send(&app, "/metrics", &other_key).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_metrics_section_that_cannot_be_in_force_is_refused() {
    let bad = StackConfig::from_toml("[metrics]\npath = \"metrics\"").unwrap();
    let e = Stack::build(&bad).unwrap_err();
    assert_eq!(e.section(), "metrics");
    assert!(e.to_string().contains("path"), "{e}");
    // Serving needs a recorder: none installed and none given.
    let bad = StackConfig::from_toml("[metrics]\nrecorder = false").unwrap();
    let e = Stack::build(&bad).unwrap_err();
    assert_eq!(e.section(), "metrics");
    assert!(e.to_string().contains("StackBuilder::prometheus"), "{e}");
    // Two stacks of one process share its one recorder; other buckets cannot be honoured.
    let a = Stack::build(&StackConfig::from_toml("[metrics]").unwrap()).unwrap();
    let b = Stack::build(&StackConfig::from_toml("[metrics]").unwrap()).unwrap();
    assert!(a.prometheus().is_some() && b.prometheus().is_some());
    let other = StackConfig::from_toml("[metrics]\nlatency_buckets = [0.1, 1.0]").unwrap();
    assert_eq!(Stack::build(&other).unwrap_err().section(), "metrics");
}

#[test]
fn the_runtime_probe_needs_a_runtime_or_a_watch() {
    // Outside a runtime the stack cannot start the probe that `runtime = true` asks for.
    let config = StackConfig::from_toml("[metrics]\nserve = false\nrecorder = false").unwrap();
    let e = Stack::build(&config).unwrap_err();
    assert_eq!(e.section(), "metrics");
    assert!(e.to_string().contains("runtime probe"), "{e}");
    let config =
        StackConfig::from_toml("[metrics]\nserve = false\nrecorder = false\nruntime = false")
            .unwrap();
    Stack::build(&config).unwrap();
}
