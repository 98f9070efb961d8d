//! The shutdown phases with paused time, and one drain over a real socket.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_scale_shutdown::{Phase, Shutdown, ShutdownConfig};

fn config() -> ShutdownConfig {
    timings(
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
}

fn timings(
    pre_stop_delay: Duration,
    drain_timeout: Duration,
    tasks_timeout: Duration,
) -> ShutdownConfig {
    let mut config = ShutdownConfig::default();
    config.pre_stop_delay = pre_stop_delay;
    config.drain_timeout = drain_timeout;
    config.tasks_timeout = tasks_timeout;
    config
}

/// A stand-in for `axum::serve(..).with_graceful_shutdown(..)`: stops when told to and once
/// no request is in flight.
fn serve(shutdown: &Shutdown) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let stop = shutdown.stop_accepting();
    let s = shutdown.clone();
    async move {
        stop.await;
        while s.in_flight() > 0 {
            sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// A request through the in-flight layer to a handler that takes `secs`.
fn slow_request(shutdown: &Shutdown, secs: u64) -> tokio::task::JoinHandle<Response<Body>> {
    let mut svc = ServiceBuilder::new().layer(shutdown.layer()).service_fn(
        move |_req: Request<Body>| async move {
            sleep(Duration::from_secs(secs)).await;
            Ok::<_, Infallible>(Response::new(Body::from("done")))
        },
    );
    tokio::spawn(async move {
        let svc = svc.ready().await.unwrap();
        svc.call(Request::new(Body::empty())).await.unwrap()
    })
}

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

/// Over a real socket: `/readyz` turns 503 during the pre-stop delay while requests are still
/// served, and a slow request in flight completes with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_drains_over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let shutdown = Shutdown::new(timings(
        Duration::from_millis(300),
        Duration::from_secs(10),
        Duration::from_secs(1),
    ));
    let (slow_started_tx, slow_started) = tokio::sync::oneshot::channel::<()>();
    let slow_started_tx = Arc::new(Mutex::new(Some(slow_started_tx)));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(move || {
                let started = slow_started_tx.lock().unwrap().take();
                let mut release = release.clone();
                async move {
                    if let Some(tx) = started {
                        let _ = tx.send(());
                    }
                    let _ = release.wait_for(|r| *r).await;
                    "slow done"
                }
            }),
        )
        .layer(shutdown.layer())
        .merge(shutdown.health_routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.stop_accepting());
    let run = tokio::spawn({
        let s = shutdown.clone();
        async move { s.run(async move { serve.await }).await }
    });

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|len| body.len() >= len) {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    let slow = tokio::spawn(async move { get(addr, "/slow").await });
    slow_started.await.unwrap();
    shutdown.trigger();
    // During the pre-stop delay: not ready, but still answering.
    let ready = get(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
    // Wait for the drain, then let the slow request finish.
    while shutdown.phase() < Phase::Draining {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release_tx.send(true).unwrap();
    let slow = slow.await.unwrap();
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(slow.contains("connection: close"), "{slow}");
    assert!(slow.ends_with("slow done"), "{slow}");
    let report = run.await.unwrap();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.exit_code(), 0);
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A WebSocket is told the server is going away (close code 1001) when the shutdown starts,
/// and its task, tracked by the coordinator, ends before the tasks deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_closed_cleanly() {
    use axum::extract::State;
    use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite;

    async fn echo(mut socket: WebSocket, shutdown: Shutdown) {
        let requested = shutdown.requested();
        tokio::pin!(requested);
        loop {
            tokio::select! {
                () = &mut requested => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "server shutting down".into(),
                        })))
                        .await;
                    break;
                }
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if socket.send(Message::Text(t)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
    }

    let shutdown = Shutdown::new(timings(
        Duration::from_millis(100),
        Duration::from_secs(5),
        Duration::from_secs(5),
    ));
    let app = axum::Router::new()
        .route(
            "/ws",
            axum::routing::get(
                |ws: WebSocketUpgrade, State(s): State<Shutdown>| async move {
                    // The connection outlives the request: the coordinator tracks its task.
                    let tracker = s.tracker().clone();
                    ws.on_upgrade(move |socket| tracker.track_future(echo(socket, s)))
                },
            ),
        )
        .with_state(shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.stop_accepting());
    let run = tokio::spawn({
        let s = shutdown.clone();
        async move { s.run(async move { serve.await }).await }
    });

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(tungstenite::Message::text("hi")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "hi");

    shutdown.trigger();
    let close = ws.next().await.unwrap().unwrap();
    match close {
        tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1001);
            assert_eq!(frame.reason.as_str(), "server shutting down");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let report = run.await.unwrap();
    assert!(report.drained && report.tasks_stopped, "{report:?}");
    assert_eq!(report.exit_code(), 0);
}

/// The same coordinator drives hyper-util's server: an accept loop that stops with
/// `stop_accepting`, and hyper-util's `GracefulShutdown` as the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_util_server_drains_too() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let shutdown = Shutdown::new(timings(
        Duration::from_millis(50),
        Duration::from_secs(5),
        Duration::from_secs(1),
    ));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(move || {
                let mut release = release.clone();
                async move {
                    let _ = release.wait_for(|r| *r).await;
                    "slow done"
                }
            }),
        )
        .layer(shutdown.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shutdown.stop_accepting();
    let serve = async move {
        let graceful = GracefulShutdown::new();
        let builder = Builder::new(TokioExecutor::new());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(app.clone()),
                    );
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                () = &mut stop => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
        Ok::<(), std::io::Error>(())
    };
    let run = tokio::spawn({
        let s = shutdown.clone();
        async move { s.run(serve).await }
    });

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    while shutdown.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.trigger();
    while shutdown.phase() < Phase::Draining {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release_tx.send(true).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.ends_with("slow done"), "{response}");
    let report = run.await.unwrap();
    assert!(report.drained, "{report:?}");
}

#[tokio::test]
async fn reuse_port_lets_a_new_process_bind_while_the_old_one_drains() {
    // Without systemd's LISTEN_FDS the address is bound; with SO_REUSEPORT a second socket
    // (the new process) can bind the same port while the first still listens.
    let first = tower_scale_shutdown::listener("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = first.local_addr().unwrap();
    let second = tower_scale_shutdown::listener(addr, true).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    // Without it, the second bind is refused.
    let third = tower_scale_shutdown::listener("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let err = tower_scale_shutdown::listener(third.local_addr().unwrap(), false).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop((first, second, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shutdown = Shutdown::new(config());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, shutdown.count_connections(app)).into_future());
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s); // kept alive
    }
    assert_eq!(shutdown.connections(), 2);
    let settle = |want: usize| {
        let shutdown = shutdown.clone();
        tokio::time::timeout(Duration::from_secs(10), async move {
            while shutdown.connections() != want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    drop(open.pop());
    settle(1)
        .await
        .expect("a closed connection is no longer counted");
    drop(open);
    settle(0).await.expect("every connection closed");
}
