//! The cache outside compression: a hit serves the stored encoded variant.

use super::*;

#[tokio::test]
async fn outside_compression_a_hit_serves_the_stored_encoded_variant() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = fixed_route(
        "/json",
        &[
            ("cache-control", "max-age=60"),
            ("content-type", "application/json"),
        ],
        format!("{{\"data\":\"{}\"}}", "x".repeat(4096)),
        &calls,
    )
    // Compression first (inner), the cache last (outer).
    .layer(tower_scale_compression::CompressionLayer::new())
    .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let with = |enc: &str| {
        Request::get("/json")
            .header("accept-encoding", enc)
            .body(Body::empty())
            .unwrap()
    };
    let gz = send(&app, with("gzip")).await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(gz.cache_status(), "tower-scale; fwd=uri-miss; stored");
    let gz2 = send(&app, with("gzip")).await;
    assert_eq!(gz2.headers["content-encoding"], "gzip");
    assert_eq!(gz2.cache_status(), "tower-scale; hit; ttl=60");
    assert_eq!(
        gz2.body, gz.body,
        "the stored encoded bytes, not compressed again"
    );
    assert!(gz2.body.len() < 1000);
    let plain = send(&app, with("identity")).await;
    assert!(!plain.headers.contains_key("content-encoding"));
    assert_eq!(plain.cache_status(), "tower-scale; fwd=vary-miss; stored");
    let plain2 = send(&app, with("identity")).await;
    assert_eq!(plain2.cache_status(), "tower-scale; hit; ttl=60");
    assert_eq!(plain2.body.len(), 4096 + 11);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one origin call per encoding"
    );
}
