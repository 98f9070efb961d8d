//! Negotiation, thresholds, skipped responses and headers.

mod support;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::BodyExt;
use support::decode;
use tower::ServiceExt;
#[cfg(feature = "config")]
use tower_scale_compression::CompressionConfig;
use tower_scale_compression::{CompressionLayer, Encoding, negotiate};

const PREFS: &[Encoding] = &[
    Encoding::Zstd,
    Encoding::Br,
    Encoding::Gzip,
    Encoding::Deflate,
];

#[test]
fn negotiation_follows_q_values_then_the_server_order() {
    let n = |accept: Option<&str>| negotiate(accept, PREFS);
    assert_eq!(n(Some("gzip")), Some(Encoding::Gzip));
    assert_eq!(
        n(Some("gzip, br")),
        Some(Encoding::Br),
        "tie: the server prefers br"
    );
    assert_eq!(n(Some("gzip;q=1, br;q=0.5")), Some(Encoding::Gzip));
    assert_eq!(n(Some("*")), Some(Encoding::Zstd));
    assert_eq!(n(Some("*;q=0.2, gzip;q=0.8")), Some(Encoding::Gzip));
    assert_eq!(
        n(Some("*, zstd;q=0")),
        Some(Encoding::Br),
        "zstd refused explicitly"
    );
    assert_eq!(n(Some("gzip;q=0")), None);
    assert_eq!(
        n(Some("identity;q=0")),
        None,
        "nothing acceptable: identity is sent"
    );
    assert_eq!(n(Some("identity")), None);
    assert_eq!(n(Some("GZIP;Q=0.5")), Some(Encoding::Gzip));
    assert_eq!(
        n(Some(" ;; , ,gzip;q=abc")),
        Some(Encoding::Gzip),
        "garbage is skipped"
    );
    assert_eq!(n(None), None);
    assert_eq!(
        negotiate(Some("gzip, br"), &[Encoding::Gzip, Encoding::Br]),
        Some(Encoding::Gzip),
        "the configured order decides ties"
    );
}

fn big_text() -> String {
    "tower-scale compresses this line well. ".repeat(200)
}

fn app(layer: CompressionLayer) -> Router {
    Router::new()
        .route("/big", get(|| async { big_text() }))
        .route("/small", get(|| async { "tiny" }))
        .route(
            "/png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], big_text()) }),
        )
        .route(
            "/no-transform",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "public, no-transform")],
                    big_text(),
                )
            }),
        )
        .route(
            "/pre-encoded",
            get(|| async { ([(header::CONTENT_ENCODING, "gzip")], big_text()) }),
        )
        .route(
            "/etag",
            get(|| async { ([(header::ETAG, "\"v1\"")], big_text()).into_response() }),
        )
        .layer(layer)
}

async fn fetch(
    app: &Router,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (http::HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT_ENCODING, a);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (headers, body)
}

#[tokio::test]
async fn every_encoding_round_trips_with_its_headers() {
    let app = app(CompressionLayer::new());
    for encoding in ["gzip", "br", "zstd", "deflate"] {
        let (headers, body) = fetch(&app, "GET", "/big", Some(encoding)).await;
        assert_eq!(headers[header::CONTENT_ENCODING], encoding);
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert!(!headers.contains_key(header::CONTENT_LENGTH));
        assert!(
            body.len() < big_text().len() / 5,
            "{encoding}: {} bytes",
            body.len()
        );
        assert_eq!(decode(encoding, &body).await, big_text().as_bytes());
    }
}

#[tokio::test]
async fn skipped_responses_are_sent_as_they_are() {
    let app = app(CompressionLayer::new());
    for path in ["/small", "/png", "/no-transform", "/pre-encoded"] {
        let (headers, body) = fetch(&app, "GET", path, Some("gzip, br")).await;
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap());
        if path == "/pre-encoded" {
            assert_eq!(encoding, Some("gzip"), "the handler's own encoding is kept");
        } else {
            assert_eq!(encoding, None, "{path} must not be compressed");
            assert!(!body.is_empty());
        }
        // Their body does not depend on Accept-Encoding: no Vary (the pre-encoded one aside).
        if path != "/pre-encoded" {
            assert!(headers.get(header::VARY).is_none(), "{path}: {headers:?}");
        }
    }
    // HEAD is never compressed.
    let (headers, _) = fetch(&app, "HEAD", "/big", Some("gzip")).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn nothing_acceptable_gets_the_identity_body_not_406() {
    let app = app(CompressionLayer::new());
    for accept in ["identity;q=0", "gzip;q=0", "identity", "compress"] {
        let (headers, body) = fetch(&app, "GET", "/big", Some(accept)).await;
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "{accept}");
        assert_eq!(body.len(), big_text().len(), "{accept}");
        assert_eq!(headers[header::VARY], "accept-encoding", "{accept}");
    }
}

#[cfg(all(feature = "config", feature = "pool"))]
#[test]
fn bad_config_is_an_error_naming_the_field() {
    let parse = |json: &str| serde_json::from_str::<CompressionConfig>(json);
    let err = CompressionLayer::from_config(&parse(r#"{"levels": [["br", 12]]}"#).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("levels") && err.contains("br level 12"),
        "{err}"
    );
    let err = CompressionLayer::from_config(&parse(r#"{"encodings": ["gzip", "gzip"]}"#).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("encodings"), "{err}");
    let config = parse(r#"{"adaptive": {"busy_lag": "1s", "saturated_lag": "10ms"}}"#).unwrap();
    let err = CompressionLayer::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("busy_lag"), "{err}");
    let config = parse(r#"{"offload": {"pool": {"threads": 0}}}"#).unwrap();
    let err = CompressionLayer::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("offload.pool") && err.contains("threads"),
        "{err}"
    );
    assert!(
        parse(r#"{"levels": [["lz4", 1]]}"#).is_err(),
        "unknown encoding"
    );
    assert!(
        parse(r#"{"offload": {"min_szie": 1}}"#).is_err(),
        "unknown field"
    );
    // Every default round-trips through serde.
    let default = CompressionConfig::default();
    let json = serde_json::to_string(&default).unwrap();
    assert_eq!(parse(&json).unwrap(), default);
}

#[tokio::test]
async fn vary_is_set_even_when_the_client_takes_identity() {
    let app = app(CompressionLayer::new());
    let (headers, body) = fetch(&app, "GET", "/big", None).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body.len(), big_text().len());
    // A shared cache must not serve this identity body to a gzip client, nor the reverse.
    assert_eq!(headers[header::VARY], "accept-encoding");
}

#[tokio::test]
async fn encoded_variants_get_a_weak_etag() {
    let app = app(CompressionLayer::new());
    let (headers, _) = fetch(&app, "GET", "/etag", Some("gzip")).await;
    assert_eq!(headers[header::ETAG], "W/\"v1\"");
    let (headers, _) = fetch(&app, "GET", "/etag", None).await;
    assert_eq!(
        headers[header::ETAG],
        "\"v1\"",
        "identity keeps the strong validator"
    );
}

#[cfg(feature = "config")]
#[tokio::test]
async fn thresholds_levels_and_config() {
    let config: CompressionConfig = serde_json::from_str(
        r#"{"encodings": ["gzip"], "min_size": 10000, "levels": [["gzip", 9]]}"#,
    )
    .unwrap();
    let app = app(CompressionLayer::from_config(&config).unwrap());
    // 7,800 bytes is below this min_size.
    let (headers, _) = fetch(&app, "GET", "/big", Some("gzip")).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn thresholds_and_levels_from_the_builder() {
    let app = app_with_min(100);
    let (headers, body) = fetch(&app, "GET", "/big", Some("br, gzip")).await;
    assert_eq!(
        headers[header::CONTENT_ENCODING],
        "gzip",
        "only gzip is enabled"
    );
    assert_eq!(decode("gzip", &body).await, big_text().as_bytes());
}

fn app_with_min(min: u16) -> Router {
    app(CompressionLayer::new()
        .encodings(&[Encoding::Gzip])
        .min_size(min)
        .level(Encoding::Gzip, 1))
}

/// brotli 11 is an expensive level: with the `pool` feature the body (of known length) is
/// encoded whole on the pool and sent with its exact `Content-Length`; without it, tower-http
/// encodes it on the async worker as it streams (no `Content-Length`). Either way the client
/// gets the same bytes back.
#[tokio::test]
async fn an_expensive_level_goes_to_the_pool_only_with_the_pool_feature() {
    let app = app(CompressionLayer::new().level(Encoding::Br, 11));
    let (headers, body) = fetch(&app, "GET", "/big", Some("br")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(headers[header::VARY], "accept-encoding");
    assert_eq!(
        headers.contains_key(header::CONTENT_LENGTH),
        cfg!(feature = "pool"),
        "{headers:?}"
    );
    assert_eq!(decode("br", &body).await, big_text().as_bytes());
}
