//! `Shutdown::serve` and `close_listener` at the connection level, over real sockets: an idle
//! HTTP/1 keep-alive connection survives the drain and is closed only after a response saying
//! `Connection: close`; HTTP/2 gets `GOAWAY` with the last stream id and its stream completes;
//! a connection queued in the accept backlog is served, not reset.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// `app` served through `Shutdown::serve` under `Shutdown::run`: no pre-stop delay, a 30 s drain.
struct Server {
    shutdown: Shutdown,
    addr: SocketAddr,
    run: tokio::task::JoinHandle<tower_scale_shutdown::Report>,
    /// Lets `/slow` answer.
    release: tokio::sync::watch::Sender<bool>,
}

impl Server {
    async fn start() -> Self {
        let shutdown = Shutdown::new(timings(
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_secs(1),
        ));
        let (release, release_rx) = tokio::sync::watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = shutdown.serve(listener, slow_app(release_rx));
        let s = shutdown.clone();
        let run =
            tokio::spawn(async move { s.run(std::future::IntoFuture::into_future(serve)).await });
        Self {
            shutdown,
            addr,
            run,
            release,
        }
    }

    /// Waits until `/slow`'s handler runs.
    async fn slow_handler_waits(&self) {
        while self.release.receiver_count() < 2 {
            tokio::task::yield_now().await;
        }
    }
}

/// Sends `GET path` on `conn` (HTTP/1.1, keep-alive) and reads the response.
async fn get(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(conn).await
}

/// Reads one HTTP/1 response (head and a `content-length` body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before a full response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap();
            if body.len() >= len {
                return text.into_owned();
            }
        }
    }
}

/// Waits until the listener at `addr` is closed: a connection attempt is refused. (While
/// `close_listener` drops handshakes, an attempt waits for its SYN to be re-sent, about 1 s.)
async fn until_refused(addr: SocketAddr) {
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The race behind lost POSTs: `axum::serve`'s graceful shutdown closes an idle keep-alive
/// connection at once, while a proxy may be writing its next request on it. Here the
/// connection stays open through the drain (the listener already closed); the request sent on
/// it afterwards is answered with `Connection: close`, and only then is the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_survives_the_drain_until_a_response_says_close() {
    let Server {
        shutdown,
        addr,
        run,
        ..
    } = Server::start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let first = get(&mut conn, "/").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    assert_eq!(shutdown.connections(), 1);

    // The drain starts at once (no pre-stop delay); wait until the listener is gone.
    shutdown.trigger();
    until_refused(addr).await;
    assert_eq!(shutdown.phase(), Phase::Draining);
    assert_eq!(
        shutdown.connections(),
        1,
        "the idle connection is still open"
    );

    let second = get(&mut conn, "/").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("connection: close"), "{second}");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed right after the response");

    let report = run.await.unwrap();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(shutdown.connections(), 0);
}

/// A request in flight when the drain starts completes, with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_completes_with_connection_close() {
    let server = Server::start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let slow = tokio::spawn(async move {
        let res = get(&mut conn, "/slow").await;
        (conn, res)
    });
    server.slow_handler_waits().await;
    server.shutdown.trigger();
    until_refused(server.addr).await;
    server.release.send(true).unwrap();
    let (_conn, res) = slow.await.unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains("connection: close"), "{res}");
    assert!(res.ends_with("slow done"), "{res}");
    assert!(server.run.await.unwrap().drained);
}

/// An idle connection that never sends another request is cut at the drain deadline; no
/// request was lost, so the drain counts as clean. Paused time: the deadline passes at once.
#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_cut_at_the_drain_deadline() {
    let server = Server::start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    get(&mut conn, "/").await;
    let started = tokio::time::Instant::now();
    server.shutdown.trigger();
    let report = server.run.await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert!(report.drained, "no request was cut: {report:?}");
    assert_eq!(report.exit_code(), 0);
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// One HTTP/2 frame: (type, flags, stream id, payload).
type Frame = (u8, u8, u32, Vec<u8>);

async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    if stream.read_exact(&mut head).await.is_err() {
        return None; // closed
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    Some((head[3], head[4], id, payload))
}

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads frames, answering SETTINGS and PING as a client must, until `want` matches one.
async fn until_frame(stream: &mut TcpStream, want: impl Fn(&Frame) -> bool) -> Frame {
    loop {
        let f = read_frame(stream).await.expect("connection closed");
        match (f.0, f.1) {
            (0x4, 0) => stream.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(),
            (0x6, 0) => stream.write_all(&frame(0x6, 0x1, 0, &f.3)).await.unwrap(),
            _ => {}
        }
        if want(&f) {
            return f;
        }
    }
}

/// HTTP/2 (prior knowledge, raw frames): with a stream in flight the shutdown sends `GOAWAY`
/// whose last stream id is that stream's; the stream still completes; then the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_gets_goaway_with_the_last_stream_id_and_its_stream_completes() {
    let server = Server::start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS
    // HEADERS on stream 1, END_STREAM | END_HEADERS: GET http://x/slow (HPACK: indexed
    // :method GET, :scheme http; literal :path and :authority with indexed names).
    let mut block = vec![0x82, 0x86, 0x04, 5];
    block.extend_from_slice(b"/slow");
    block.extend_from_slice(&[0x01, 1, b'x']);
    conn.write_all(&frame(0x1, 0x5, 1, &block)).await.unwrap();
    server.slow_handler_waits().await;

    server.shutdown.trigger();
    let goaway = until_frame(&mut conn, |f| {
        f.0 == 0x7 && u32::from_be_bytes(f.3[..4].try_into().unwrap()) & 0x7fff_ffff != 0x7fff_ffff
    })
    .await;
    let last = u32::from_be_bytes(goaway.3[..4].try_into().unwrap()) & 0x7fff_ffff;
    assert_eq!(last, 1, "GOAWAY names the stream in flight as the last one");
    assert_eq!(&goaway.3[4..8], &[0, 0, 0, 0], "NO_ERROR");

    server.release.send(true).unwrap();
    let headers = until_frame(&mut conn, |f| f.0 == 0x1 && f.2 == 1).await;
    assert_eq!(headers.3[0], 0x88, ":status 200");
    let data = until_frame(&mut conn, |f| f.0 == 0x0 && f.2 == 1).await;
    assert_eq!(data.3, b"slow done");
    // Then the server closes the connection.
    while read_frame(&mut conn).await.is_some() {}
    assert!(server.run.await.unwrap().drained);
}

/// A connection whose handshake the kernel completed but the server had not accepted yet, with
/// a request already sent, is handed over by `close_listener` (closing the socket would reset
/// it); a connection attempt while it runs is dropped, then refused, never accepted and reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_listener_serves_the_backlog_and_refuses_new_handshakes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = TcpStream::connect(addr).await.unwrap();
    queued.write_all(b"ping").await.unwrap();

    let mut handed = Vec::new();
    let (_, late) = tokio::join!(
        tower_scale_shutdown::close_listener(listener, |stream, _| handed.push(stream)),
        // Polled after the filter is attached (join polls in order).
        TcpStream::connect(addr),
    );
    assert_eq!(handed.len(), 1, "the queued connection, and only it");
    let err = late.expect_err("a handshake during the close is not accepted");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    let mut server_side = handed.pop().unwrap();
    let mut buf = [0u8; 4];
    server_side.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server_side.write_all(b"pong").await.unwrap();
    queued.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}
