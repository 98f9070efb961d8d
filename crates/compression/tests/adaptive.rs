//! The adaptive mode: levels follow an injected load signal (no timing involved), on both the
//! pool path and tower-http's streaming path; the lag of a `RuntimeProbe` drives it under
//! paused time.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::routing::get;
use support::{get as fetch, json, reference};
use tower_scale_compression::{CompressionLayer, Encoding, LagSignal, Load, LoadSignal};
use tower_scale_metrics::RuntimeProbe;

fn routes() -> Router {
    Router::new()
        // Known length, large: encoded on the pool.
        .route("/pooled", get(|| async { json(100_000) }))
        // Unknown length (a stream of one chunk): encoded by tower-http on the worker.
        .route(
            "/streamed",
            get(|| async {
                let chunk = Ok::<_, Infallible>(Bytes::from(json(20_000)));
                Body::from_stream(futures_util::stream::iter([chunk]))
            }),
        )
}

fn app(layer: CompressionLayer) -> Router {
    routes().layer(layer)
}

/// What is expected at `level`: on the pool path, the whole body encoded in one go; on the
/// streamed path, what plain tower-http at that level sends.
async fn expected(path: &str, encoding: &str, level: i32) -> Bytes {
    if path == "/pooled" {
        return reference(encoding, level, json(100_000).as_bytes())
            .await
            .into();
    }
    let layer = tower_http::compression::CompressionLayer::new()
        .quality(tower_http::compression::CompressionLevel::Precise(level));
    fetch(&routes().layer(layer), path, encoding).await.body
}

/// Compares without printing kilobytes of compressed bytes.
#[track_caller]
fn same(got: &Bytes, expected: &Bytes, what: &str) {
    assert!(
        got == expected,
        "{what}: {} bytes, expected {} bytes",
        got.len(),
        expected.len()
    );
}

/// A signal the test sets by hand.
fn manual() -> (Arc<AtomicU8>, impl LoadSignal) {
    let state = Arc::new(AtomicU8::new(0));
    let seen = Arc::clone(&state);
    (state, move || match seen.load(Ordering::Relaxed) {
        0 => Load::Normal,
        1 => Load::Busy,
        _ => Load::Saturated,
    })
}

#[tokio::test]
async fn levels_follow_the_injected_load_on_both_paths() {
    let (state, signal) = manual();
    // brotli 11 -> 4 -> 1 and gzip 6 -> 4 -> 1 (the default busy and saturated levels).
    let app = app(CompressionLayer::new()
        .level(Encoding::Br, 11)
        .adapt_with(signal));
    for path in ["/pooled", "/streamed"] {
        for (load, br, gzip) in [(0, 11, 6), (1, 4, 4), (2, 1, 1), (0, 11, 6)] {
            state.store(load, Ordering::Relaxed);
            let got = fetch(&app, path, "br").await;
            assert_eq!(got.headers[header::CONTENT_ENCODING], "br");
            let want = expected(path, "br", br).await;
            same(
                &got.body,
                &want,
                &format!("{path}: load {load} must encode at br {br}"),
            );
            let got = fetch(&app, path, "gzip").await;
            let want = expected(path, "gzip", gzip).await;
            same(
                &got.body,
                &want,
                &format!("{path}: load {load} must encode at gzip {gzip}"),
            );
        }
    }
    // The levels differ, so the comparison above tells them apart.
    let doc = json(20_000);
    assert!(reference("br", 11, doc.as_bytes()).await != reference("br", 1, doc.as_bytes()).await);
    assert!(expected("/streamed", "br", 11).await != expected("/streamed", "br", 4).await);
}

#[tokio::test]
async fn a_level_is_never_raised() {
    let (state, signal) = manual();
    let app = app(CompressionLayer::new()
        .level(Encoding::Gzip, 2)
        .adapt_with(signal));
    state.store(1, Ordering::Relaxed); // busy gzip level is 4: 2 stays
    let got = fetch(&app, "/pooled", "gzip").await;
    same(&got.body, &expected("/pooled", "gzip", 2).await, "gzip 2");
}

#[tokio::test]
async fn adaptive_levels_come_from_the_config() {
    let (state, signal) = manual();
    let config = serde_json::from_str(
        r#"{"levels": [["zstd", 19]], "adaptive": {"busy_levels": [["zstd", 9]], "saturated_levels": [["zstd", 2]]}}"#,
    )
    .unwrap();
    let layer = CompressionLayer::from_config(&config)
        .unwrap()
        .adapt_with(signal);
    let app = app(layer);
    for (load, level) in [(0, 19), (1, 9), (2, 2)] {
        state.store(load, Ordering::Relaxed);
        let got = fetch(&app, "/streamed", "zstd").await;
        same(
            &got.body,
            &expected("/streamed", "zstd", level).await,
            &format!("load {load}"),
        );
    }
}

/// Lets the probe task run after the clock moved.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_scheduling_lag_of_a_runtime_probe_drives_the_levels() {
    let probe = RuntimeProbe::new()
        .interval(Duration::from_millis(100))
        .window(Duration::from_secs(1))
        .spawn();
    settle().await;
    let signal = LagSignal::new(
        probe.watch(),
        Duration::from_millis(20),
        Duration::from_millis(100),
    );
    assert_eq!(signal.load(), Load::Normal);
    // The clock jumps 250 ms past a wake-up due in 100 ms: the probe wakes 150 ms late, as
    // it would behind a worker blocked that long.
    tokio::time::advance(Duration::from_millis(250)).await;
    settle().await;
    assert_eq!(probe.last_lag(), Duration::from_millis(150));
    assert_eq!(signal.load(), Load::Saturated);

    let app = app(CompressionLayer::new()
        .level(Encoding::Br, 11)
        .adapt_to_lag(probe.watch()));
    let got = fetch(&app, "/streamed", "br").await;
    same(
        &got.body,
        &expected("/streamed", "br", 1).await,
        "saturated",
    );

    // On-time wake-ups for a whole window: back to normal.
    for _ in 0..12 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    assert_eq!(signal.load(), Load::Normal);
    let got = fetch(&app, "/streamed", "br").await;
    same(&got.body, &expected("/streamed", "br", 11).await, "normal");

    // A 50 ms stall: busy.
    tokio::time::advance(Duration::from_millis(150)).await;
    settle().await;
    assert_eq!(signal.load(), Load::Busy);
    let got = fetch(&app, "/streamed", "br").await;
    same(&got.body, &expected("/streamed", "br", 4).await, "busy");
    probe.stop();
}
