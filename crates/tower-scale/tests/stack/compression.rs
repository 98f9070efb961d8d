//! `[compression]` with `[compression.adaptive]` connected to the runtime probe, and
//! `[decompression]` with its size limit.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use tower_scale::stack::{Stack, StackConfig};

use crate::{body, body_bytes, lag_the_runtime, request, send};

const COMPRESSION: &str = r#"
[compression]
encodings = ["gzip"]
levels = [["gzip", 9]]
"#;

const ADAPTIVE: &str = r#"
[compression.adaptive]
busy_lag = "10ms"
saturated_lag = "50ms"
saturated_levels = [["gzip", 1]]
"#;

/// Text that gzip's levels 1 and 9 compress to different sizes (words in a pseudo-random
/// order).
fn document() -> String {
    let words = [
        "stack", "layer", "tower", "scale", "redis", "cache", "shard", "probe",
    ];
    let mut x: u32 = 12345;
    let mut out = String::new();
    for _ in 0..4000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.push_str(words[(x >> 16) as usize % words.len()]);
        out.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
    }
    out
}

/// The gzip-encoded length of the document before and after the runtime lagged 300 ms.
async fn sizes_before_and_after_lag(toml: &str) -> (usize, usize) {
    let stack = Stack::build(&StackConfig::from_toml(toml).unwrap()).unwrap();
    let app = stack.apply(Router::new().route("/doc", get(|| async { document() })));
    let gzip = [("accept-encoding", "gzip")];
    let res = send(&app, "/doc", &gzip).await;
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let before = body_bytes(res).await.len();
    lag_the_runtime(stack.lag().unwrap(), Duration::from_millis(300)).await;
    let res = send(&app, "/doc", &gzip).await;
    assert_eq!(res.headers()["content-encoding"], "gzip");
    (before, body_bytes(res).await.len())
}

#[tokio::test(start_paused = true)]
async fn adaptive_compression_lowers_the_level_while_the_runtime_lags() {
    // `[metrics]`-less: the adaptive table alone makes the stack start the probe.
    let (normal, saturated) = sizes_before_and_after_lag(&format!("{COMPRESSION}{ADAPTIVE}")).await;
    assert!(
        saturated > normal,
        "level 1 while saturated ({saturated} bytes) should be larger than level 9 ({normal} bytes)"
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_adaptive_table_the_level_stays() {
    // The probe runs for `[pressure]`, but compression is not connected to it.
    let toml = format!("{COMPRESSION}\n[pressure]\nmax_lag = \"10s\"\n");
    let (normal, lagged) = sizes_before_and_after_lag(&toml).await;
    assert_eq!(normal, lagged);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn request_bodies_are_decompressed_up_to_the_limit() {
    let config = StackConfig::from_toml("[decompression]\nmax_bytes = 1000\n").unwrap();
    let stack = Stack::build(&config).unwrap();
    let app = stack.apply(Router::new().route(
        "/upload",
        post(|body: Bytes| async move { body.len().to_string() }),
    ));
    let upload = |data: Vec<u8>| {
        Request::post("/upload")
            .header("content-encoding", "gzip")
            .body(Body::from(data))
            .unwrap()
    };
    let res = request(&app, upload(gzip(&[b'a'; 1000]))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "1000");
    // 1001 bytes once decompressed, from a gzip body of a few dozen bytes: refused.
    let small = gzip(&[b'a'; 1001]);
    assert!(small.len() < 100);
    let res = request(&app, upload(small)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let bad = StackConfig::from_toml("[decompression]\nmax_bytes = 0\n").unwrap();
    assert_eq!(Stack::build(&bad).unwrap_err().section(), "decompression");
}
