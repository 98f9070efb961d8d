//! Load shedding: in-flight requests, memory, scheduling lag; config and refusal.

use super::*;

#[tokio::test(start_paused = true)]
async fn sheds_past_max_in_flight_but_serves_health_routes() {
    let mut config = PressureConfig::default();
    config.max_in_flight = Some(2);
    let layer = PressureLayer::from_config(&config).unwrap();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "slow"
            }),
        )
        .route("/livez", get(|| async { "ok" }))
        .layer(layer.clone());
    let running: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get_status(&app, "/slow").await.0 })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(layer.snapshot().in_flight, 2);
    assert_eq!(
        get_status(&app, "/slow").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("in_flight".to_owned())
        )
    );
    assert_eq!(get_status(&app, "/livez").await.0, StatusCode::OK);
    for r in running {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    let snapshot = layer.snapshot();
    assert_eq!((snapshot.in_flight, snapshot.shed_total), (0, 1));
    // Pressure gone: served again.
    let fast = tokio::spawn({
        let app = app.clone();
        async move { get_status(&app, "/slow").await.0 }
    });
    assert_eq!(fast.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn sheds_past_max_memory() {
    let mut config = PressureConfig::default();
    config.max_memory_bytes = Some(1); // any process is above one byte
    let layer = PressureLayer::from_config(&config).unwrap();
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .route("/metrics", get(|| async { "metrics" }))
        .layer(layer.clone());
    assert_eq!(
        get_status(&app, "/work").await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("memory".to_owned()))
    );
    assert_eq!(get_status(&app, "/metrics").await.0, StatusCode::OK);
    assert!(layer.snapshot().memory_bytes > 1_000_000, "RSS was read");
    let _ = ShedReason::Memory;
}

/// Drives the runtime into lag: the layer sheds with 503 while `/livez` answers, then
/// recovers once the probe measures a normal lag again.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sheds_under_scheduling_lag_then_recovers() {
    let probe = RuntimeProbe::new()
        .interval(Duration::from_millis(5))
        .window(Duration::from_secs(2))
        .spawn();
    let mut config = PressureConfig::default();
    config.max_lag = Some(Duration::from_millis(200));
    let layer = PressureLayer::from_config(&config)
        .unwrap()
        .lag_from(probe.watch());
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .route("/livez", get(|| async { "ok" }))
        .layer(layer.clone());
    while probe.samples() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let watch = probe.watch();
    let before = watch.samples();
    // Block the only worker for 400 ms: the probe's next wake-up is at least 395 ms late, and
    // the stall stays in the probe's window (2 s here) for at least 1 s after it ends.
    tokio::spawn(async { spin(400) }).await.unwrap();
    while watch.samples() <= before {
        tokio::task::yield_now().await;
    }
    assert!(
        watch.recent_max() > Duration::from_millis(200),
        "{:?}",
        watch.recent_max()
    );
    assert_eq!(
        get_status(&app, "/work").await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("lag".to_owned()))
    );
    assert_eq!(get_status(&app, "/livez").await.0, StatusCode::OK);
    // Recovery: once the window holds no late wake-up, requests are served again.
    while watch.recent_max() > Duration::from_millis(200) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _) = get_status(&app, "/work").await;
    assert_eq!(status, StatusCode::OK);
    assert!(layer.snapshot().shed_total >= 1);
    probe.stop();
}

#[test]
fn config_reads_from_json() {
    let config: PressureConfig = serde_json::from_str(
        r#"{"max_lag": "150ms", "max_in_flight": 100, "exempt_paths": ["/health"]}"#,
    )
    .unwrap();
    assert_eq!(config.max_lag, Some(Duration::from_millis(150)));
    assert_eq!(config.max_in_flight, Some(100));
    assert_eq!(config.exempt_paths, ["/health"]);
    assert!(serde_json::from_str::<PressureConfig>(r#"{"max_lagg": "1s"}"#).is_err());
}

#[tokio::test]
async fn the_shed_status_is_validated_and_the_refusal_is_replaceable() {
    let mut config = PressureConfig::default();
    for status in [200, 302, 1000] {
        config.status = status;
        let err = PressureLayer::from_config(&config).unwrap_err();
        assert_eq!(err.field(), "status", "{status}: {err}");
    }
    config.status = 429;
    config.max_in_flight = Some(0);
    let layer = PressureLayer::from_config(&config)
        .unwrap()
        .refuse_with(DefaultRefusal::new().text("busy"));
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .layer(layer);
    let res = app
        .oneshot(Request::get("/work").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["x-shed-reason"], "in_flight");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"busy");
}
