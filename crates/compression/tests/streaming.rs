//! Streamed bodies are flushed as they are produced: over a real HTTP connection, each
//! server-sent event is read and decoded from the compressed stream before the handler sends
//! the next one, for every encoding.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use http::{Request, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tower_scale_compression::CompressionLayer;

/// Incremental decoder: compressed bytes in, the decoded bytes so far out.
enum Decoder {
    Gzip(async_compression::tokio::write::GzipDecoder<Vec<u8>>),
    Br(async_compression::tokio::write::BrotliDecoder<Vec<u8>>),
    Zstd(async_compression::tokio::write::ZstdDecoder<Vec<u8>>),
    Deflate(async_compression::tokio::write::ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    fn new(encoding: &str) -> Self {
        use async_compression::tokio::write as w;
        match encoding {
            "gzip" => Self::Gzip(w::GzipDecoder::new(Vec::new())),
            "br" => Self::Br(w::BrotliDecoder::new(Vec::new())),
            "zstd" => Self::Zstd(w::ZstdDecoder::new(Vec::new())),
            "deflate" => Self::Deflate(w::ZlibDecoder::new(Vec::new())),
            other => panic!("unexpected encoding {other}"),
        }
    }

    async fn feed(&mut self, chunk: &[u8]) -> String {
        macro_rules! feed {
            ($d:expr) => {{
                $d.write_all(chunk).await.unwrap();
                $d.flush().await.unwrap();
                String::from_utf8($d.get_ref().clone()).unwrap()
            }};
        }
        match self {
            Self::Gzip(d) => feed!(d),
            Self::Br(d) => feed!(d),
            Self::Zstd(d) => feed!(d),
            Self::Deflate(d) => feed!(d),
        }
    }
}

/// Serves `/events` on a free loopback port: an SSE stream of what the test sends on the
/// returned channel (the handler waits on it), ending when the sender is dropped.
async fn serve(
    layer: CompressionLayer,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedSender<mpsc::UnboundedReceiver<String>>,
) {
    let (handoff_tx, handoff_rx) = mpsc::unbounded_channel::<mpsc::UnboundedReceiver<String>>();
    let handoff = std::sync::Arc::new(tokio::sync::Mutex::new(handoff_rx));
    let app = Router::new()
        .route(
            "/events",
            get(move || {
                let handoff = handoff.clone();
                async move {
                    let events = handoff.lock().await.recv().await.unwrap();
                    let stream = futures_util::stream::unfold(events, |mut events| async move {
                        let data = events.recv().await?;
                        Some((Ok::<_, Infallible>(Event::default().data(data)), events))
                    });
                    Sse::new(stream)
                }
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, handoff_tx)
}

/// Guards against a hang if a flush is missing (the test then fails instead of waiting
/// forever); not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn each_event_is_decoded_before_the_next_is_sent() {
    let (addr, handoff) = serve(CompressionLayer::new()).await;
    for encoding in ["gzip", "br", "zstd", "deflate"] {
        let (events, rx) = mpsc::unbounded_channel();
        handoff.send(rx).unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let res = client
            .send_request(
                Request::get("/events")
                    .header(header::HOST, "localhost")
                    .header(header::ACCEPT_ENCODING, encoding)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.headers()[header::CONTENT_ENCODING], encoding);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(res.headers()[header::VARY], "accept-encoding");
        let mut body = res.into_body();
        let mut decoder = Decoder::new(encoding);
        let mut decoded = String::new();
        for i in 0..3 {
            // A large-ish event, so a missing flush could not hide in a tiny first block.
            let data = format!("event {i} {}", "payload ".repeat(200));
            events.send(data.clone()).unwrap();
            let expected = format!("data: {data}\n\n");
            // Nothing else will be sent until this event has been decoded.
            tokio::time::timeout(HANG_GUARD, async {
                while !decoded.ends_with(&expected) {
                    let frame = body.frame().await.expect("stream ended early").unwrap();
                    if let Ok(chunk) = frame.into_data() {
                        decoded = decoder.feed(&chunk).await;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{encoding}: event {i} was not flushed"));
        }
        drop(events);
        // The end of the stream finishes the encoded stream cleanly.
        while let Some(frame) = body.frame().await {
            if let Ok(chunk) = frame.unwrap().into_data() {
                decoded = decoder.feed(&chunk).await;
            }
        }
        assert_eq!(decoded.matches("data: event").count(), 3, "{encoding}");
    }
}
