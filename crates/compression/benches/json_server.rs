//! The `/json` scenario of the shared bench contract (`GET /json` returns `doc-20k.json`,
//! gzip-compressed when the request accepts it), served with tower-scale-compression or with
//! plain tower-http `CompressionLayer`, for `scripts/bench/compression-json.sh` to load with wrk.
//!
//! ```not_rust
//! cargo bench -p tower-scale-compression --bench json_server --no-run
//! <bench binary> --layer tower-scale|tower-http|none --port 0 --doc path/to/doc-20k.json
//! ```
//!
//! Multi-thread runtime on every core, nothing logged per request, exits 0 on SIGTERM or
//! SIGINT after finishing the requests in flight.
#![allow(missing_docs)]

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tower_scale_compression::{CompressionLayer, Encoding};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        // Run by `cargo bench` itself: this is a server for the wrk script, not a benchmark.
        eprintln!("json_server: run it from scripts/bench/compression-json.sh");
        return;
    }
    let layer = arg("--layer").unwrap_or_else(|| "tower-scale".to_owned());
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(3000);
    let path = arg("--doc").expect("--doc <path to doc-20k.json>");
    let doc = bytes::Bytes::from(std::fs::read(&path).expect("read the document"));
    let routes = Router::new().route(
        "/json",
        get(move || {
            let doc = doc.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
        }),
    );
    let app = match layer.as_str() {
        // gzip only, at gzip's default level 6, on both sides.
        "tower-scale" => routes.layer(
            CompressionLayer::new()
                .encodings(&[Encoding::Gzip])
                .level(Encoding::Gzip, 6),
        ),
        "tower-http" => routes.layer(
            tower_http::compression::CompressionLayer::new()
                .no_br()
                .no_deflate()
                .no_zstd()
                .quality(tower_http::compression::CompressionLevel::Precise(6)),
        ),
        "none" => routes,
        other => panic!("unknown --layer {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        // The script reads the port from this line (`--port 0` picks a free one).
        println!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .unwrap();
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await
            .unwrap();
    });
}
