//! Instructions per request, for a measure that other processes on a shared machine hardly
//! disturb: run under `perf stat -e instructions:u` with `n` requests and with none, and divide
//! the difference by `n` (`scripts/bench/compression-instructions.sh` does this for every variant and size).
//!
//! ```not_rust
//! <bench binary> tower_scale|tower_scale_no_offload|tower_http|none <body bytes> <requests>
//! ```
//!
//! gzip level 6 (or `ENCODING=br LEVEL=4`), one request at a time on a current-thread runtime,
//! through an axum router whose layers are applied once, as when it is served;
//! `none` is the same router without a compression layer. `ACCEPT=none` sends no
//! `Accept-Encoding`. Bodies of 64 bytes or more are JSON (`application/json`); smaller ones are
//! text (`text/plain`, like the bench app's `/hello`), under both layers' thresholds (tower-scale
//! here: 512 bytes; tower-http's default: 32), so they pass through.
#![allow(missing_docs)]

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use http_body_util::BodyExt;
use support::json;
use tower::ServiceExt;
use tower_http::compression::CompressionLevel;
use tower_scale_compression::{CompressionLayer, Encoding};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") || args.len() < 4 {
        eprintln!("instructions: run it from scripts/bench/compression-instructions.sh");
        return;
    }
    let (variant, size, n) = (
        args[1].as_str(),
        args[2].parse::<usize>().unwrap(),
        args[3].parse::<usize>().unwrap(),
    );
    let (encoding, token) = match std::env::var("ENCODING").as_deref() {
        Ok("br") => (Encoding::Br, "br"),
        _ => (Encoding::Gzip, "gzip"),
    };
    let accept = std::env::var("ACCEPT").map_or(true, |a| a != "none");
    // The layers' thresholds: 512 bytes (tower-scale, below), 32 bytes (tower-http's default).
    let encoded = accept && variant != "none" && size >= 512;
    let level: i32 = std::env::var("LEVEL")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(6);
    // `STRING_STATE=1`: the handler owns a `String`, copied whenever the service is cloned;
    // by default it shares `Bytes`, as a real service shares its state.
    let routes = if std::env::var("STRING_STATE").is_ok() {
        let doc = json(size);
        Router::new().route("/", get(move || async move { doc }))
    } else if size < 64 {
        let text = bytes::Bytes::from("h".repeat(size));
        Router::new().route(
            "/",
            get(move || async move { ([(header::CONTENT_TYPE, "text/plain")], text) }),
        )
    } else {
        let doc = bytes::Bytes::from(json(size));
        Router::new().route(
            "/",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
    };
    // Built only for its own variant: the others neither start its pool nor share its
    // allocations.
    let ours = || {
        CompressionLayer::new()
            .encodings(&[encoding])
            .min_size(512)
            .level(encoding, level)
    };
    let app = match variant {
        "tower_scale" => routes.layer(ours()),
        "tower_scale_no_offload" => routes.layer(ours().no_offload()),
        "tower_http" => routes.layer(
            tower_http::compression::CompressionLayer::new()
                .no_br()
                .no_deflate()
                .no_gzip()
                .no_zstd()
                .br(encoding == Encoding::Br)
                .gzip(encoding == Encoding::Gzip)
                .quality(CompressionLevel::Precise(level)),
        ),
        "none" => routes,
        other => panic!("unknown variant {other}"),
    };
    // As `axum::serve` does for each connection: the handlers become routes and the layers are
    // applied once. (A router without state called as a service does that for each request,
    // which would count building the layer's service as part of every request.)
    let app: Router = app.with_state(());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        for _ in 0..n {
            let mut req = Request::get("/");
            if accept {
                req = req.header("accept-encoding", token);
            }
            let req = req.body(Body::empty()).unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            let got = res.headers().get("content-encoding");
            assert_eq!(got.map(|v| v.to_str().unwrap()), encoded.then_some(token));
            std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
        }
    });
}
