//! Bodies of known length that are large, or at an expensive level, are encoded on the pool:
//! same headers as tower-http's path (plus an exact Content-Length), the async worker stays
//! free meanwhile, and a full pool sends the body uncompressed.

mod support;

use std::sync::mpsc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;
use support::{ChunkedBody, decode, get as fetch, json, reference};
use tower::ServiceExt;
use tower_scale_compression::{CompressionLayer, Encoding, Offload, PoolKind};

const ENCODINGS: [&str; 4] = ["gzip", "br", "zstd", "deflate"];

fn app(layer: CompressionLayer) -> Router {
    Router::new()
        .route(
            "/large",
            get(|| async {
                (
                    [
                        (header::ETAG, "\"v1\""),
                        (header::CONTENT_TYPE, "application/json"),
                        (header::ACCEPT_RANGES, "bytes"),
                    ],
                    json(100_000),
                )
            }),
        )
        .route("/medium", get(|| async { json(8_000) }))
        .route("/small", get(|| async { "ok" }))
        .route(
            "/chunked",
            get(|| async {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", HeaderValue::from_static("abc"));
                let doc = Bytes::from(json(100_000));
                let chunks = vec![
                    doc.slice(..30_000),
                    doc.slice(30_000..70_000),
                    doc.slice(70_000..),
                ];
                Response::new(Body::new(ChunkedBody::new(chunks, Some(trailers), false)))
            }),
        )
        .route(
            "/broken",
            get(|| async {
                let chunks = vec![Bytes::from(json(70_000)), Bytes::from(json(10_000))];
                Response::new(Body::new(ChunkedBody::new(chunks, None, true)))
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn offloaded_bodies_get_the_headers_and_bytes_of_the_streamed_path() {
    let offloaded = app(CompressionLayer::new());
    let streamed = app(CompressionLayer::new().no_offload());
    let doc = json(100_000);
    for encoding in ENCODINGS {
        let ours = fetch(&offloaded, "/large", encoding).await;
        let theirs = fetch(&streamed, "/large", encoding).await;
        for h in [
            header::CONTENT_ENCODING,
            header::VARY,
            header::ETAG,
            header::CONTENT_TYPE,
        ] {
            assert_eq!(
                ours.headers.get(&h),
                theirs.headers.get(&h),
                "{encoding}: {h}"
            );
        }
        assert_eq!(ours.headers[header::CONTENT_ENCODING], encoding);
        assert_eq!(ours.headers[header::VARY], "accept-encoding");
        assert_eq!(ours.headers[header::ETAG], "W/\"v1\"");
        assert!(
            !ours.headers.contains_key(header::ACCEPT_RANGES),
            "{encoding}"
        );
        // tower-http drops Content-Length; the pool path knows the encoded length.
        assert!(!theirs.headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(
            ours.headers[header::CONTENT_LENGTH],
            ours.body.len().to_string(),
            "{encoding}"
        );
        // The same encoder at the same level: the same bytes.
        assert_eq!(ours.body, theirs.body, "{encoding}");
        assert_eq!(decode(encoding, &ours.body).await, doc.as_bytes());
    }
}

#[tokio::test]
async fn what_goes_to_the_pool() {
    // Under 64 KiB at a cheap level: tower-http streams it (no Content-Length).
    let app_default = app(CompressionLayer::new());
    let medium = fetch(&app_default, "/medium", "br").await;
    assert_eq!(medium.headers[header::CONTENT_ENCODING], "br");
    assert!(!medium.headers.contains_key(header::CONTENT_LENGTH));
    // brotli 11 is expensive: any compressible body of known length goes to the pool.
    let app_br11 = app(CompressionLayer::new().level(Encoding::Br, 11));
    let medium = fetch(&app_br11, "/medium", "br").await;
    assert_eq!(medium.headers[header::CONTENT_ENCODING], "br");
    assert_eq!(
        medium.headers[header::CONTENT_LENGTH],
        medium.body.len().to_string()
    );
    assert_eq!(
        medium.body,
        reference("br", 11, json(8_000).as_bytes()).await
    );
    // ... but not a body under min_size, which is never compressed.
    let small = fetch(&app_br11, "/small", "br").await;
    assert!(!small.headers.contains_key(header::CONTENT_ENCODING));
    assert_eq!(&small.body[..], b"ok");
    // A lower threshold.
    let app_low = app(CompressionLayer::new().offload_above(4096));
    let medium = fetch(&app_low, "/medium", "gzip").await;
    assert_eq!(
        medium.headers[header::CONTENT_LENGTH],
        medium.body.len().to_string()
    );
}

#[tokio::test]
async fn a_body_in_several_chunks_keeps_its_trailers() {
    let app = app(CompressionLayer::new());
    let got = fetch(&app, "/chunked", "zstd").await;
    assert_eq!(got.headers[header::CONTENT_ENCODING], "zstd");
    assert_eq!(decode("zstd", &got.body).await, json(100_000).as_bytes());
    assert_eq!(got.trailers.unwrap()["x-checksum"], "abc");
}

#[tokio::test]
async fn a_body_error_while_collecting_reaches_the_client_as_a_body_error() {
    let app = app(CompressionLayer::new());
    let req = Request::get("/broken")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(format!("{err:?}").contains("upstream reset"), "{err:?}");
}

/// A pool of one thread and no queue, its thread held by a job until the returned sender is
/// used (or dropped).
async fn occupied_pool(queue: usize) -> (Offload, mpsc::Sender<()>) {
    let offload = Offload::builder()
        .pool(PoolKind::TokioBlocking)
        .threads(1)
        .queue(queue)
        .build()
        .unwrap();
    let (release, wait) = mpsc::channel::<()>();
    let blocker = offload.clone();
    tokio::spawn(async move { blocker.run(move || wait.recv()).await });
    while offload.admitted() == 0 {
        tokio::task::yield_now().await;
    }
    (offload, release)
}

#[tokio::test]
async fn a_full_pool_sends_the_body_uncompressed() {
    let (offload, release) = occupied_pool(0).await;
    let app = app(CompressionLayer::new().offload_with(offload.clone()));
    let got = fetch(&app, "/large", "gzip").await;
    assert!(!got.headers.contains_key(header::CONTENT_ENCODING));
    assert_eq!(got.body, json(100_000).as_bytes(), "the body as it is");
    assert_eq!(got.headers[header::VARY], "accept-encoding");
    assert_eq!(
        got.headers[header::ETAG],
        "\"v1\"",
        "still the strong validator"
    );
    assert_eq!(
        got.headers[header::CONTENT_LENGTH],
        json(100_000).len().to_string()
    );
    release.send(()).unwrap();
    while offload.admitted() > 0 {
        tokio::task::yield_now().await;
    }
    let got = fetch(&app, "/large", "gzip").await;
    assert_eq!(got.headers[header::CONTENT_ENCODING], "gzip");
}

#[tokio::test(flavor = "current_thread")]
async fn the_async_worker_stays_free_while_a_body_waits_for_the_pool() {
    // One worker thread (current_thread), one pool thread held by another job, one queue slot.
    let (offload, release) = occupied_pool(1).await;
    let app = app(CompressionLayer::new()
        .level(Encoding::Br, 11)
        .offload_with(offload.clone()));
    let large = tokio::spawn({
        let app = app.clone();
        async move { fetch(&app, "/large", "br").await }
    });
    // The large body is collected and queued for the pool.
    while offload.admitted() < 2 {
        tokio::task::yield_now().await;
    }
    // Meanwhile the only worker serves other requests, compressed ones included.
    let small = fetch(&app, "/small", "br").await;
    assert_eq!(&small.body[..], b"ok");
    assert!(!large.is_finished());
    release.send(()).unwrap();
    let large = large.await.unwrap();
    assert_eq!(large.headers[header::CONTENT_ENCODING], "br");
    assert_eq!(
        large.body,
        reference("br", 11, json(100_000).as_bytes()).await
    );
}
