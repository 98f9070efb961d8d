//! Offload keeps cheap requests moving while CPU work runs; PressureLayer sheds under lag,
//! in-flight and memory pressure and recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_metrics::RuntimeProbe;
use tower_scale_offload::{
    DefaultRefusal, Offload, OffloadError, PoolKind, PressureConfig, PressureLayer, ShedReason,
};

const KINDS: [PoolKind; 2] = [PoolKind::Rayon, PoolKind::TokioBlocking];

async fn get_status(app: &Router, path: &str) -> (StatusCode, Option<String>) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let reason = res
        .headers()
        .get("x-shed-reason")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), reason)
}

/// Spins for `ms` milliseconds of wall time (CPU-bound, never yields).
fn spin(ms: u64) {
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// With the runtime's only worker free, a cheap request completes while the offloaded job is
/// still running: the job is held until the cheap request has answered, which could never
/// happen if the job occupied the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn cheap_requests_complete_while_offloaded_work_runs() {
    for kind in KINDS {
        let offload = Offload::builder().pool(kind).threads(1).build().unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let job = tokio::spawn({
            let offload = offload.clone();
            async move {
                offload
                    .run(move || {
                        // Busy until released by the test.
                        release_rx.recv().unwrap();
                        42
                    })
                    .await
            }
        });
        while offload.admitted() == 0 {
            tokio::task::yield_now().await;
        }
        let app = Router::new().route("/cheap", get(|| async { "cheap" }));
        let cheap = tokio::spawn(async move { get_status(&app, "/cheap").await.0 });
        assert_eq!(cheap.await.unwrap(), StatusCode::OK, "{kind:?}");
        assert!(!job.is_finished(), "the job is still running");
        release_tx.send(()).unwrap();
        assert_eq!(job.await.unwrap().unwrap(), 42);
        assert_eq!(offload.admitted(), 0);
    }
}

/// The same CPU work done inline stalls the runtime: the cheap request only completes after
/// it, and the lag probe sees the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn inline_cpu_work_stalls_the_runtime() {
    let probe = RuntimeProbe::new()
        .interval(Duration::from_millis(5))
        .spawn();
    while probe.samples() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    probe.reset_max();
    let order = Arc::new(AtomicUsize::new(0));
    let heavy_done = {
        let order = Arc::clone(&order);
        tokio::spawn(async move {
            spin(300);
            order.fetch_add(1, Ordering::SeqCst)
        })
    };
    let cheap_done = {
        let order = Arc::clone(&order);
        tokio::spawn(async move { order.fetch_add(1, Ordering::SeqCst) })
    };
    let (heavy, cheap) = (heavy_done.await.unwrap(), cheap_done.await.unwrap());
    // The only worker ran the heavy task to its end before anything else.
    assert_eq!((heavy, cheap), (0, 1));
    let before = probe.samples();
    while probe.samples() <= before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        probe.max_lag() >= Duration::from_millis(250),
        "{:?}",
        probe.max_lag()
    );
    probe.stop();
}

#[tokio::test]
async fn a_full_pool_answers_overloaded_at_once() {
    for kind in KINDS {
        let offload = Offload::builder()
            .pool(kind)
            .threads(1)
            .queue(1)
            .retry_after(Duration::from_millis(1500))
            .build()
            .unwrap();
        assert_eq!(offload.capacity(), 2);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let jobs: Vec<_> = (0..2)
            .map(|_| {
                let offload = offload.clone();
                let rx = Arc::clone(&rx);
                tokio::spawn(async move {
                    offload
                        .run(move || rx.lock().unwrap().recv().unwrap())
                        .await
                })
            })
            .collect();
        while offload.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        let err = offload.run(|| ()).await.unwrap_err();
        let OffloadError::Overloaded(overloaded) = err else {
            panic!("{kind:?}: expected Overloaded, got {err}");
        };
        assert_eq!(overloaded.retry_after(), Duration::from_millis(1500));
        let res = OffloadError::Overloaded(overloaded).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "2");
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        // Capacity is back.
        assert_eq!(offload.run(|| 7).await.unwrap(), 7);
    }
}

#[tokio::test]
async fn a_panicking_job_is_an_error_and_the_pool_survives() {
    for kind in KINDS {
        let offload = Offload::builder().pool(kind).threads(1).build().unwrap();
        let err = offload.run(|| -> () { panic!("boom") }).await.unwrap_err();
        assert!(matches!(err, OffloadError::Panicked), "{kind:?}: {err}");
        assert_eq!(
            err.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(offload.admitted(), 0);
        assert_eq!(offload.run(|| 1 + 1).await.unwrap(), 2);
    }
}

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

#[tokio::test]
async fn offload_is_usable_from_a_handler() {
    async fn handler(State(offload): State<Offload>) -> Result<String, OffloadError> {
        Ok(offload
            .run(|| (1..=10u64).product::<u64>())
            .await?
            .to_string())
    }
    let app = Router::new()
        .route("/f", get(handler))
        .with_state(Offload::builder().threads(1).build().unwrap());
    let res = app
        .oneshot(Request::get("/f").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"3628800");
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
