//! A shed request moves `pressure_shed_total{reason}` and a job refused by a full pool moves
//! `offload_rejected_total`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt;
use tower_scale_offload::{Offload, PressureConfig, PressureLayer, names};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn shed_requests_and_refused_jobs_are_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test's runtime is current-thread: the layer and the pool's admission run here.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let mut config = PressureConfig::default();
    config.max_memory_bytes = Some(1); // any process is above one byte
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .layer(PressureLayer::from_config(&config).unwrap());
    for _ in 0..2 {
        let req = Request::get("/work").body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let shed = format!("{}{{reason=\"memory\"}}", names::PRESSURE_SHED_TOTAL.name);
    assert_eq!(value(&handle.render(), &shed), 2.0);

    let offload = Offload::builder().threads(1).queue(1).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let jobs: Vec<_> = (0..2)
        .map(|_| {
            let (offload, rx) = (offload.clone(), Arc::clone(&rx));
            tokio::spawn(async move { offload.run(move || rx.lock().unwrap().recv()).await })
        })
        .collect();
    while offload.admitted() < 2 {
        tokio::task::yield_now().await;
    }
    let rejected = names::OFFLOAD_REJECTED_TOTAL.name;
    assert_eq!(value(&handle.render(), rejected), 0.0);
    assert!(offload.run(|| ()).await.is_err());
    assert_eq!(value(&handle.render(), rejected), 1.0);
    for _ in 0..2 {
        tx.send(()).unwrap();
    }
    for job in jobs {
        job.await.unwrap().unwrap().unwrap();
    }
}
