//! The algorithms compiled in (gzip and deflate always, `br` and `zstd` by feature): which are
//! negotiated, on both encoding paths and in request decompression, and how a config naming
//! one that is not compiled in is refused. Passes with any set of the crate's features; the
//! test command runs it with none, and with `br` or `zstd` alone next to `pool`,
//! `decompression` and `config`.

use axum::Router;
use axum::routing::get;
use tower_scale_compression::{CompressionConfig, CompressionLayer, Encoding};

#[path = "../support/mod.rs"]
mod support;

use support::{decode, get as fetch};

/// Each encoding with the feature that compiles it in (`None`: always).
const FEATURES: [(Encoding, Option<&str>, bool); 4] = [
    (Encoding::Zstd, Some("zstd"), cfg!(feature = "zstd")),
    (Encoding::Br, Some("br"), cfg!(feature = "br")),
    (Encoding::Gzip, None, true),
    (Encoding::Deflate, None, true),
];

/// A JSON-like body of `len` bytes that compresses well.
fn text(len: usize) -> String {
    "{\"id\":12345,\"name\":\"a name\"},".repeat(len / 29 + 1)[..len].to_owned()
}

#[test]
fn each_encoding_is_compiled_in_by_its_feature_and_the_defaults_list_only_those() {
    let compiled: Vec<Encoding> = FEATURES
        .iter()
        .filter(|(_, _, on)| *on)
        .map(|(e, _, _)| *e)
        .collect();
    for (encoding, _, on) in FEATURES {
        assert_eq!(encoding.is_compiled_in(), on, "{encoding:?}");
    }
    let config = CompressionConfig::default();
    assert_eq!(config.encodings, compiled, "the default preference order");
    for levels in [
        &config.adaptive.busy_levels,
        &config.adaptive.saturated_levels,
        &config.offload.expensive_levels,
    ] {
        assert!(levels.iter().all(|(e, _)| e.is_compiled_in()), "{levels:?}");
    }
    // The defaults are a valid config in every build.
    CompressionLayer::from_config(&config).unwrap();
}

#[test]
fn a_config_naming_an_encoding_not_compiled_in_is_refused_naming_the_field_and_feature() {
    for (encoding, feature, on) in FEATURES {
        let mut configs: Vec<(&str, CompressionConfig)> = Vec::new();
        let mut config = CompressionConfig::default();
        config.encodings = vec![Encoding::Gzip, encoding];
        config.encodings.dedup();
        configs.push(("encodings", config));
        let mut config = CompressionConfig::default();
        config.levels = vec![(encoding, 5)];
        configs.push(("levels", config));
        let mut config = CompressionConfig::default();
        config.adaptive.busy_levels = vec![(encoding, 1)];
        configs.push(("adaptive.busy_levels", config));
        let mut config = CompressionConfig::default();
        config.adaptive.saturated_levels = vec![(encoding, 1)];
        configs.push(("adaptive.saturated_levels", config));
        let mut config = CompressionConfig::default();
        config.offload.expensive_levels = vec![(encoding, 5)];
        configs.push(("offload.expensive_levels", config));
        for (field, config) in configs {
            let result = CompressionLayer::from_config(&config);
            if on {
                assert!(result.is_ok(), "{encoding:?} in {field}: {result:?}");
                continue;
            }
            let feature = feature.unwrap();
            let error = result.unwrap_err();
            assert_eq!(error.field(), field);
            assert_eq!(
                error.message(),
                format!(
                    "{feature} is not compiled in: enable the `{feature}` feature of tower-scale-compression"
                )
            );
        }
    }
}

/// A config file written for the full build, read by this one.
#[cfg(feature = "config")]
#[test]
fn a_config_file_naming_brotli_is_refused_without_the_br_feature() {
    let config: CompressionConfig =
        serde_json::from_str(r#"{ "encodings": ["br", "gzip"], "levels": [["gzip", 5]] }"#)
            .unwrap();
    let result = CompressionLayer::from_config(&config);
    if cfg!(feature = "br") {
        assert_eq!(result.unwrap().config().encodings, config.encodings);
    } else {
        assert_eq!(
            result.unwrap_err().to_string(),
            "encodings: br is not compiled in: enable the `br` feature of tower-scale-compression"
        );
    }
}

#[test]
fn the_setters_leave_out_an_encoding_not_compiled_in() {
    let layer = CompressionLayer::new()
        .encodings(&[Encoding::Br, Encoding::Zstd, Encoding::Gzip])
        .level(Encoding::Br, 9)
        .level(Encoding::Zstd, 9)
        .level(Encoding::Gzip, 9);
    let config = layer.config();
    let expected: Vec<Encoding> = [Encoding::Br, Encoding::Zstd, Encoding::Gzip]
        .into_iter()
        .filter(|e| e.is_compiled_in())
        .collect();
    assert_eq!(config.encodings, expected);
    let levels: Vec<(Encoding, i32)> = expected.iter().map(|e| (*e, 9)).collect();
    assert_eq!(config.levels, levels);
    // What the setters built is a config `from_config` accepts.
    CompressionLayer::from_config(config).unwrap();
}

/// Every encoding asked for alone, on the async path (a small body) and, with the `pool`
/// feature, the pool's (a body of 128 KiB): encoded and decodable when compiled in, sent as it
/// is otherwise; a client that prefers brotli gets gzip when brotli is not compiled in.
#[tokio::test]
async fn only_the_compiled_in_encodings_are_negotiated_on_both_paths() {
    let small = text(4 * 1024);
    let large = text(128 * 1024);
    let app = Router::new()
        .route(
            "/small",
            get({
                let small = small.clone();
                move || async move { small }
            }),
        )
        .route(
            "/large",
            get({
                let large = large.clone();
                move || async move { large }
            }),
        )
        .layer(CompressionLayer::new());
    for (encoding, _, on) in FEATURES {
        let token = encoding.token();
        for (path, body) in [("/small", &small), ("/large", &large)] {
            let res = fetch(&app, path, token).await;
            if !on {
                assert!(
                    !res.headers.contains_key("content-encoding"),
                    "{token} {path}"
                );
                assert_eq!(res.body, body.as_bytes(), "{token} {path}: sent as it is");
                continue;
            }
            assert_eq!(res.headers["content-encoding"], token, "{path}");
            assert_eq!(res.headers["vary"], "accept-encoding");
            assert!(
                res.body.len() < body.len() / 4,
                "{token} {path}: {}",
                res.body.len()
            );
            assert_eq!(
                decode(token, &res.body).await,
                body.as_bytes(),
                "{token} {path}"
            );
            // The pool's answer carries its exact length; tower-http's streams.
            let pooled = path == "/large" && cfg!(feature = "pool");
            assert_eq!(
                res.headers
                    .get("content-length")
                    .map(|v| v.to_str().unwrap().to_owned()),
                pooled.then(|| res.body.len().to_string()),
                "{token} {path}"
            );
        }
    }
    let res = fetch(&app, "/small", "br, gzip;q=0.5").await;
    let expected = if cfg!(feature = "br") { "br" } else { "gzip" };
    assert_eq!(res.headers["content-encoding"], expected);
}

/// A request body in each encoding: decoded when compiled in, else `415` listing those that
/// are.
#[cfg(feature = "decompression")]
#[tokio::test]
async fn request_decompression_decodes_the_compiled_in_encodings_and_refuses_the_others() {
    use axum::body::{Body, Bytes};
    use axum::http::{Request, StatusCode, header};
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_scale_compression::RequestDecompressionLayer;

    let app = Router::new()
        .route("/upload", post(|body: Bytes| async move { body }))
        .layer(RequestDecompressionLayer::new(1024 * 1024));
    let plain = text(10_000);
    for (encoding, _, on) in FEATURES {
        let token = encoding.token();
        let encoded = support::reference(token, 5, plain.as_bytes()).await;
        let req = Request::post("/upload")
            .header(header::CONTENT_ENCODING, token)
            .body(Body::from(encoded))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        if on {
            assert_eq!(res.status(), StatusCode::OK, "{token}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, plain.as_bytes(), "{token}");
        } else {
            assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{token}");
            let accepted = res.headers()[header::ACCEPT_ENCODING].to_str().unwrap();
            assert!(
                accepted.contains("gzip") && !accepted.contains(token),
                "{accepted}"
            );
        }
    }
}
