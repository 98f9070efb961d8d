//! Compression throughput against plain tower-http `CompressionLayer` at the same gzip level,
//! on 1 KB, 20 KB and 200 KB JSON bodies, in one run, variants interleaved round by round:
//!
//! ```not_rust
//! cargo bench -p tower-scale-compression --bench throughput
//! ROUNDS=7 ROUND_MS=1000 SIZES=1024,20000,200000 ENCODING=gzip LEVEL=6 cargo bench -p tower-scale-compression --bench throughput
//! ```
//!
//! Requests go through an axum router in process (no sockets; its layers applied once, as when
//! it is served), on a 2-worker multi-thread runtime, `1` or `16` at a time. Variants: `tower_scale` (the defaults: the 200 KB body is
//! encoded on the pool), `tower_scale_no_offload` (everything on the workers, through
//! tower-http), `tower_http` (plain `CompressionLayer`, the same single encoding, `Precise(level)`). Each round
//! runs every variant for `ROUND_MS`, starting with another variant each round; the report gives each variant's median requests/s and
//! CPU time per request (all threads, from `/proc/self/task/*/schedstat`: far less noisy than
//! wall-clock time on a shared machine), and the medians of the per-round ratios to
//! `tower_http`.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use http_body_util::BodyExt;
use support::{env, json};
use tower::ServiceExt;
use tower_http::compression::CompressionLevel;
use tower_scale_compression::{CompressionLayer, Encoding};

/// CPU time used so far by every thread of this process, in nanoseconds (Linux
/// `/proc/self/task/*/schedstat`): unlike wall-clock time, hardly affected by other processes
/// competing for the CPUs.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Requests per second through `router` for `for_ms`, `in_flight` at a time, and the CPU
/// time per request in microseconds.
async fn run(router: Router, token: &'static str, in_flight: usize, for_ms: u64) -> (f64, f64) {
    let cpu_start = cpu_ns();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_millis(for_ms);
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let router = router.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let req = Request::get("/")
                        .header("accept-encoding", token)
                        .body(Body::empty())
                        .unwrap();
                    let res = router.clone().oneshot(req).await.unwrap();
                    assert_eq!(res.headers()["content-encoding"], token);
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    std::hint::black_box(body);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed) as f64;
    let cpu_us = cpu_ns().saturating_sub(cpu_start) as f64 / 1000.0;
    (n / start.elapsed().as_secs_f64(), cpu_us / n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rounds = env("ROUNDS", 7) as usize;
    let round_ms = env("ROUND_MS", 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // ENCODING=br LEVEL=4: another encoding and level (default gzip 6).
    let (encoding, token) = match std::env::var("ENCODING").as_deref() {
        Ok("br") => (Encoding::Br, "br"),
        Ok("zstd") => (Encoding::Zstd, "zstd"),
        _ => (Encoding::Gzip, "gzip"),
    };
    let level = env("LEVEL", 6) as i32;
    println!("{token} level {level}; {rounds} rounds of {round_ms} ms per variant, interleaved");
    println!(
        "{:>8} {:>9} {:<24} {:>12} {:>12} {:>14} {:>14}",
        "body",
        "in flight",
        "variant",
        "median req/s",
        "÷ tower_http",
        "CPU µs/req",
        "÷ tower_http"
    );
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_024, 20_000, 200_000]);
    for size in sizes {
        let doc = json(size);
        let route = || {
            let doc = doc.clone();
            Router::new().route("/", get(move || async move { doc }))
        };
        let ours = route()
            .layer(
                CompressionLayer::new()
                    .encodings(&[encoding])
                    .min_size(512)
                    .level(encoding, level),
            )
            .with_state(());
        let ours_inline = route()
            .layer(
                CompressionLayer::new()
                    .encodings(&[encoding])
                    .min_size(512)
                    .level(encoding, level)
                    .no_offload(),
            )
            .with_state(());
        let plain = route()
            .layer(
                tower_http::compression::CompressionLayer::new()
                    .no_br()
                    .no_deflate()
                    .no_gzip()
                    .no_zstd()
                    .br(encoding == Encoding::Br)
                    .gzip(encoding == Encoding::Gzip)
                    .zstd(encoding == Encoding::Zstd)
                    .quality(CompressionLevel::Precise(level)),
            )
            .with_state(());
        let variants = [
            ("tower_scale", ours),
            ("tower_scale_no_offload", ours_inline),
            ("tower_http", plain),
        ];
        for in_flight in [1usize, 16] {
            let mut rates = vec![Vec::new(); variants.len()];
            let mut cpu = vec![Vec::new(); variants.len()];
            // Warm-up, then interleaved rounds.
            for (_, router) in &variants {
                rt.block_on(run(router.clone(), token, in_flight, 200));
            }
            for round in 0..rounds {
                // Each round starts with another variant, so a drift within a round hits
                // every variant alike.
                for k in 0..variants.len() {
                    let i = (round + k) % variants.len();
                    let router = variants[i].1.clone();
                    let (rate, cpu_per_req) = rt.block_on(run(router, token, in_flight, round_ms));
                    rates[i].push(rate);
                    cpu[i].push(cpu_per_req);
                }
            }
            let base = variants.len() - 1;
            for (i, (name, _)) in variants.iter().enumerate() {
                let ratio = median(
                    rates[i]
                        .iter()
                        .zip(&rates[base])
                        .map(|(a, b)| a / b)
                        .collect(),
                );
                let cpu_ratio = median(cpu[i].iter().zip(&cpu[base]).map(|(a, b)| a / b).collect());
                println!(
                    "{:>8} {:>9} {:<24} {:>12.0} {:>12.3} {:>14.1} {:>14.3}",
                    size,
                    in_flight,
                    name,
                    median(rates[i].clone()),
                    ratio,
                    median(cpu[i].clone()),
                    cpu_ratio
                );
            }
        }
    }
}
