//! Drains over real sockets: axum, WebSocket, hyper-util, `SO_REUSEPORT`, connection counts.

use super::*;

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

/// The same coordinator drives an accept loop of one's own on hyper-util: connections served
/// by `serve_connection`, the listener closed by `close_listener`. A slow request in flight
/// completes with `Connection: close`, and an idle keep-alive connection opened before the
/// drain still gets its next request answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_util_accept_loop_drains_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let shutdown = Shutdown::new(timings(
        Duration::from_millis(50),
        Duration::from_secs(5),
        Duration::from_secs(1),
    ));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let app = super::slow_app(release).layer(shutdown.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shutdown.stop_accepting();
    let s = shutdown.clone();
    let serve = async move {
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    connections.spawn(s.serve_connection(stream, app.clone(), Some(peer)));
                }
                () = &mut stop => break,
            }
        }
        tower_scale_shutdown::close_listener(listener, |stream, peer| {
            connections.spawn(s.serve_connection(stream, app.clone(), Some(peer)));
        })
        .await;
        while connections.join_next().await.is_some() {}
        Ok::<(), std::io::Error>(())
    };
    let run = tokio::spawn({
        let s = shutdown.clone();
        async move { s.run(serve).await }
    });

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
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
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    idle.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
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
