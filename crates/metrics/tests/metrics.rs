//! Scrapes `/metrics` after known traffic and checks exact counts and bucket placement.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{any, get};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_metrics::{MetricsLayer, PrometheusMetrics, RuntimeProbe};

/// One global recorder per test binary; each test uses its own route names.
fn metrics() -> &'static PrometheusMetrics {
    static METRICS: OnceLock<PrometheusMetrics> = OnceLock::new();
    METRICS.get_or_init(|| PrometheusMetrics::install().unwrap())
}

async fn send(app: &Router, method: Method, uri: &str) -> StatusCode {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

/// The value of the exposition line `metric{labels}` (labels in the exporter's order).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &Router) -> String {
    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn counts_and_buckets_after_known_traffic() {
    let m = metrics();
    let app = Router::new()
        .route(
            "/t1/slow/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        .route("/t1/fast", get(|| async { "fast" }))
        .route(
            "/t1/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(MetricsLayer::new())
        .route("/metrics", get(m.handler()));

    for id in 1..=3 {
        assert_eq!(
            send(&app, Method::GET, &format!("/t1/slow/{id}")).await,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(send(&app, Method::GET, "/t1/fast").await, StatusCode::OK);
    }
    assert_eq!(
        send(&app, Method::GET, "/t1/fail").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let text = scrape(&app).await;

    let slow = r#"method="GET",route="/t1/slow/{id}",status="2xx""#;
    assert_eq!(
        value(&text, &format!("http_requests_total{{{slow}}}")),
        Some(3.0),
        "{text}"
    );
    // 30 ms of paused time: above the 25 ms bound, within 50 ms.
    let bucket = |labels: &str, le: &str| {
        value(
            &text,
            &format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket(slow, "0.025"), Some(0.0), "{text}");
    assert_eq!(bucket(slow, "0.05"), Some(3.0), "{text}");
    assert_eq!(bucket(slow, "+Inf"), Some(3.0), "{text}");
    assert_eq!(
        value(
            &text,
            &format!("http_request_duration_seconds_count{{{slow}}}")
        ),
        Some(3.0)
    );
    let sum = value(
        &text,
        &format!("http_request_duration_seconds_sum{{{slow}}}"),
    )
    .unwrap();
    assert!((sum - 0.09).abs() < 1e-9, "sum {sum}");

    let fast = r#"method="GET",route="/t1/fast",status="2xx""#;
    assert_eq!(
        value(&text, &format!("http_requests_total{{{fast}}}")),
        Some(2.0)
    );
    assert_eq!(bucket(fast, "0.0005"), Some(2.0), "{text}");

    let fail = r#"method="GET",route="/t1/fail",status="5xx""#;
    assert_eq!(
        value(&text, &format!("http_requests_total{{{fail}}}")),
        Some(1.0)
    );
    // No series for classes that never happened.
    assert!(!text.contains(r#"route="/t1/fail",status="2xx""#), "{text}");
    // The raw path never becomes a label.
    assert!(!text.contains("/t1/slow/1"), "{text}");
    // Nothing in flight now.
    assert_eq!(
        value(
            &text,
            r#"http_requests_in_flight{method="GET",route="/t1/slow/{id}"}"#
        ),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_counts_running_requests_and_dropped_ones() {
    let m = metrics();
    let app = Router::new()
        .route(
            "/t2/wait",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "done"
            }),
        )
        .layer(MetricsLayer::new());
    let series = r#"http_requests_in_flight{method="GET",route="/t2/wait"}"#;
    let a = tokio::spawn({
        let app = app.clone();
        async move { send(&app, Method::GET, "/t2/wait").await }
    });
    let b = tokio::spawn({
        let app = app.clone();
        async move { send(&app, Method::GET, "/t2/wait").await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(value(&m.render(), series), Some(2.0));
    // A cancelled request (client gone) leaves the gauge too, and is not counted as finished.
    b.abort();
    let _ = b.await;
    assert_eq!(value(&m.render(), series), Some(1.0));
    assert_eq!(a.await.unwrap(), StatusCode::OK);
    let text = m.render();
    assert_eq!(value(&text, series), Some(0.0));
    assert_eq!(
        value(
            &text,
            r#"http_requests_total{method="GET",route="/t2/wait",status="2xx"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn labels_stay_bounded() {
    let m = metrics();
    let app = Router::new()
        .route("/t3/a", any(|| async { "a" }))
        .route("/t3/b", get(|| async { "b" }))
        .route("/t3/c", get(|| async { "c" }))
        .layer(MetricsLayer::new().max_routes(2));
    assert_eq!(send(&app, Method::GET, "/t3/a").await, StatusCode::OK);
    assert_eq!(send(&app, Method::GET, "/t3/b").await, StatusCode::OK);
    // The third route is past the cap: it is counted under <other>.
    assert_eq!(send(&app, Method::GET, "/t3/c").await, StatusCode::OK);
    // A non-standard method is counted as OTHER.
    let purge = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(send(&app, purge, "/t3/a").await, StatusCode::OK);
    let text = m.render();
    assert!(text.contains(r#"route="/t3/a""#) && text.contains(r#"route="/t3/b""#));
    assert!(!text.contains(r#"route="/t3/c""#), "{text}");
    assert!(
        value(
            &text,
            r#"http_requests_total{method="GET",route="<other>",status="2xx"}"#
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"http_requests_total{method="OTHER",route="/t3/a",status="2xx"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn unmatched_requests_share_one_label() {
    let m = metrics();
    // The router's own layer sees requests that reach the fallback without a MatchedPath.
    let app = Router::new()
        .route("/t4/x", get(|| async { "x" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "nope") })
        .layer(MetricsLayer::new());
    for path in ["/t4/random-1", "/t4/random-2"] {
        assert_eq!(send(&app, Method::GET, path).await, StatusCode::NOT_FOUND);
    }
    let text = m.render();
    assert!(!text.contains("random-1"), "{text}");
    assert!(
        value(
            &text,
            r#"http_requests_total{method="GET",route="<unmatched>",status="4xx"}"#
        )
        .is_some_and(|v| v >= 2.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn lag_probe_reports_a_blocked_worker() {
    let m = metrics();
    let probe = RuntimeProbe::new()
        .interval(Duration::from_millis(5))
        .spawn();
    // Let it take a few measurements of the idle runtime.
    while probe.samples() < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    probe.reset_max();
    let before = probe.samples();
    // Block the runtime's only worker for 300 ms: the probe, due every 5 ms, cannot wake
    // until the worker is free again, so it wakes at least 295 ms late.
    tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
        .await
        .unwrap();
    while probe.samples() <= before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        probe.max_lag() >= Duration::from_millis(250),
        "max lag {:?}",
        probe.max_lag()
    );
    let text = m.render();
    let above_quarter_second = value(&text, r#"tokio_scheduling_lag_seconds_bucket{le="+Inf"}"#)
        .unwrap()
        - value(&text, r#"tokio_scheduling_lag_seconds_bucket{le="0.25"}"#).unwrap();
    assert!(above_quarter_second >= 1.0, "{text}");
    assert_eq!(value(&text, "tokio_workers"), Some(1.0), "{text}");
    probe.stop();
}
