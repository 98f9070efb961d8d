//! The pool: bounded, overload answered at once, panics contained.

use super::*;

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
