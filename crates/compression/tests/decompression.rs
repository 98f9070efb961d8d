//! Bounded request decompression (the `decompression` feature).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use tower_scale_compression::RequestDecompressionLayer;

/// A real bomb: 64 MiB of zeros, gzipped to about 64 KiB, against a 1 MiB limit.
#[tokio::test]
async fn a_zip_bomb_is_refused_with_413() {
    use async_compression::tokio::write::GzipEncoder;
    let mut encoder = GzipEncoder::new(Vec::new());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        encoder.write_all(&zeros).await.unwrap();
    }
    encoder.shutdown().await.unwrap();
    let bomb = encoder.into_inner();
    assert!(
        bomb.len() < 1024 * 1024,
        "the bomb itself is small: {}",
        bomb.len()
    );

    let app = Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(RequestDecompressionLayer::new(1024 * 1024));
    let send = |body: Vec<u8>| {
        app.clone().oneshot(
            Request::post("/upload")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(body))
                .unwrap(),
        )
    };
    let res = send(bomb).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // An honest compressed upload under the limit is decompressed for the handler.
    let mut encoder = GzipEncoder::new(Vec::new());
    encoder.write_all(&[7u8; 100_000]).await.unwrap();
    encoder.shutdown().await.unwrap();
    let res = send(encoder.into_inner()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"100000");
}
