//! The phases in order, with paused time: deadlines, signals, hooks, readiness.

use super::*;

#[tokio::test(start_paused = true)]
async fn phases_run_in_order_and_a_slow_request_completes_during_the_drain() {
    let shutdown = Shutdown::new(config());
    let log = Arc::new(Mutex::new(Vec::new()));
    for name in ["first", "second"] {
        let log = Arc::clone(&log);
        shutdown.on_cleanup(name, Duration::from_secs(1), move || async move {
            log.lock().unwrap().push(name);
        });
    }
    let token = shutdown.task_token();
    let task_log = Arc::clone(&log);
    shutdown.tracker().spawn(async move {
        token.cancelled().await;
        task_log.lock().unwrap().push("task stopped");
    });
    let run = tokio::spawn({
        let s = shutdown.clone();
        let serve = serve(&shutdown);
        async move { s.run(serve).await }
    });
    let request = slow_request(&shutdown, 20);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(shutdown.phase(), Phase::Running);
    assert!(shutdown.is_ready());
    assert_eq!(shutdown.in_flight(), 1);

    shutdown.trigger();
    sleep(Duration::from_secs(2)).await; // t = 3 s: pre-stop delay
    assert_eq!(shutdown.phase(), Phase::NotReady);
    assert!(!shutdown.is_ready());
    sleep(Duration::from_secs(4)).await; // t = 7 s: draining, the request still runs
    assert_eq!(shutdown.phase(), Phase::Draining);
    assert_eq!(shutdown.in_flight(), 1);

    let res = request.await.unwrap(); // finishes at t = 20 s
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["connection"],
        "close",
        "keep-alive clients move on"
    );
    let report = run.await.unwrap();
    assert!(report.drained && report.tasks_stopped && report.hooks_done);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(shutdown.phase(), Phase::Done);
    assert_eq!(*log.lock().unwrap(), ["task stopped", "first", "second"]);
}

#[tokio::test(start_paused = true)]
async fn the_drain_deadline_cuts_a_request_that_outlives_it() {
    let shutdown = Shutdown::new({
        let mut config = config();
        config.drain_timeout = Duration::from_secs(5);
        config
    });
    let request = slow_request(&shutdown, 3600);
    sleep(Duration::from_millis(10)).await;
    let started = tokio::time::Instant::now();
    shutdown.trigger();
    let report = shutdown.run(serve(&shutdown)).await;
    assert!(!report.drained);
    assert_eq!(report.exit_code(), 1);
    // Pre-stop delay (5 s) plus the drain deadline (5 s), not the request's hour.
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    request.abort();
}

#[tokio::test(start_paused = true)]
async fn stubborn_tasks_and_slow_hooks_are_bounded_and_reported() {
    let shutdown = Shutdown::new(config());
    shutdown.tracker().spawn(async {
        // Ignores the cancellation token.
        sleep(Duration::from_secs(3600)).await;
    });
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r1 = Arc::clone(&ran);
    shutdown.on_cleanup("stuck", Duration::from_secs(2), move || async move {
        r1.lock().unwrap().push("stuck started");
        sleep(Duration::from_secs(3600)).await;
    });
    let r2 = Arc::clone(&ran);
    shutdown.on_cleanup("next", Duration::from_secs(2), move || async move {
        r2.lock().unwrap().push("next");
    });
    shutdown.trigger();
    let started = tokio::time::Instant::now();
    let report = shutdown.run(serve(&shutdown)).await;
    assert!(report.drained);
    assert!(!report.tasks_stopped);
    assert!(!report.hooks_done);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(*ran.lock().unwrap(), ["stuck started", "next"]);
    // 5 s pre-stop + 10 s tasks deadline + 2 s hook timeout.
    assert_eq!(started.elapsed(), Duration::from_secs(17));
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_forces_the_exit() {
    let shutdown = Shutdown::new(config());
    let request = slow_request(&shutdown, 3600);
    let run = tokio::spawn({
        let s = shutdown.clone();
        let serve = serve(&shutdown);
        async move { s.run(serve).await }
    });
    sleep(Duration::from_millis(10)).await;
    shutdown.trigger();
    advance(Duration::from_secs(1)).await;
    assert_eq!(shutdown.phase(), Phase::NotReady);
    let started = tokio::time::Instant::now();
    shutdown.trigger(); // the second one
    let report = run.await.unwrap();
    assert!(report.forced);
    assert_eq!(report.exit_code(), 130);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait is left once forced"
    );
    request.abort();
}

#[tokio::test(start_paused = true)]
async fn a_server_that_fails_on_its_own_is_reported() {
    let shutdown = Shutdown::new(config());
    let report = shutdown
        .run(async { Err::<(), _>("listener broke".to_owned()) })
        .await;
    assert!(report.serve_failed);
    assert_eq!(report.exit_code(), 1);
}

/// A load balancer polling `/readyz` right after the signal must already see 503: readiness
/// flips inside `trigger()`, not when the coordinator's task next runs. Nothing here yields
/// between the trigger and the probe, so the coordinator cannot have run in between.
#[tokio::test]
async fn readyz_probe_right_after_trigger_cannot_still_see_ready() {
    for _ in 0..1000 {
        let shutdown = Shutdown::new(config());
        let app: axum::Router = shutdown.health_routes();
        let run = tokio::spawn({
            let s = shutdown.clone();
            let serve = serve(&shutdown);
            async move { s.run(serve).await }
        });
        let probe = || {
            app.clone()
                .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        };
        assert_eq!(probe().await.unwrap().status(), StatusCode::OK);
        shutdown.trigger();
        let res = probe().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!shutdown.is_ready());
        assert_eq!(shutdown.phase(), Phase::NotReady);
        shutdown.trigger(); // force: the run ends without waiting
        run.await.unwrap();
    }
}
