//! The latency of a small request while large bodies are being compressed with brotli 11:
//! tower-scale-compression (large bodies of known length encoded on the pool) against plain
//! tower-http `CompressionLayer` (encoded on the async workers), in one run, rounds
//! interleaved:
//!
//! ```not_rust
//! cargo bench -p tower-scale-compression --bench latency
//! SECS=10 ROUNDS=3 LARGE_CONNS=4 LEVEL=11 POOL_THREADS=2 cargo bench -p tower-scale-compression --bench latency
//! ```
//!
//! Each variant runs a real HTTP/1.1 server on a free loopback port, on its own 2-worker
//! multi-thread runtime. A driver (another thread, current-thread runtime, hyper client)
//! keeps `LARGE_CONNS` connections busy with `GET /large` (a 200 KB JSON document,
//! `Accept-Encoding: br`) and, on one more connection, sends `GET /small` (2 bytes, never
//! compressed) every 5 ms for `SECS` seconds, recording its latency in an HdrHistogram with
//! coordinated-omission correction (a request that waits 300 ms also stands for the ones that
//! should have been sent meanwhile). `idle` is tower-scale with no large requests: the
//! baseline of the small request.
#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::{env, json};
use tower_http::compression::CompressionLevel;
use tower_scale_compression::{CompressionLayer, Encoding, Offload, PoolKind};

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Idle,
    TowerScale,
    TowerHttp,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle (tower_scale, no large requests)",
            Self::TowerScale => "tower_scale",
            Self::TowerHttp => "tower_http",
        }
    }
}

fn app(variant: Variant, level: i32) -> Router {
    let doc = json(200_000);
    let routes = Router::new()
        .route("/large", get(move || async move { doc }))
        .route("/small", get(|| async { "ok" }));
    match variant {
        Variant::Idle | Variant::TowerScale => {
            let mut layer = CompressionLayer::new()
                .encodings(&[Encoding::Br])
                .level(Encoding::Br, level);
            // POOL_THREADS: a rayon pool of this many threads (default: the shared pool, one
            // thread per CPU).
            if let Some(threads) = std::env::var("POOL_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
            {
                let pool = Offload::builder()
                    .pool(PoolKind::Rayon)
                    .threads(threads)
                    .build()
                    .unwrap();
                layer = layer.offload_with(pool);
            }
            routes.layer(layer)
        }
        Variant::TowerHttp => routes.layer(
            tower_http::compression::CompressionLayer::new()
                .no_gzip()
                .no_deflate()
                .no_zstd()
                .quality(CompressionLevel::Precise(level)),
        ),
    }
}

/// Starts the server on its own runtime; returns its address and a stop function.
fn serve(variant: Variant, level: i32) -> (SocketAddr, impl FnOnce()) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app(variant, level);
    rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    (addr, move || {
        let _ = stop_tx.send(());
        rt.shutdown_timeout(Duration::from_secs(5));
    })
}

type Client = hyper::client::conn::http1::SendRequest<Body>;

async fn connect(addr: SocketAddr) -> Client {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn fetch(client: &mut Client, path: &str, accept: &str) -> usize {
    client.ready().await.unwrap();
    let res = client
        .send_request(
            Request::get(path)
                .header(header::HOST, "localhost")
                .header(header::ACCEPT_ENCODING, accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(res.status().is_success());
    res.into_body().collect().await.unwrap().to_bytes().len()
}

struct Round {
    small: Histogram<u64>,
    large_per_sec: f64,
    large_bytes: u64,
}

fn round(variant: Variant, level: i32, secs: u64, large_conns: usize) -> Round {
    let (addr, stop) = serve(variant, level);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async move {
        let running = Arc::new(AtomicBool::new(true));
        let large_done = Arc::new(AtomicU64::new(0));
        let large_bytes = Arc::new(AtomicU64::new(0));
        let mut large = Vec::new();
        if variant != Variant::Idle {
            for _ in 0..large_conns {
                let (running, done, bytes) =
                    (running.clone(), large_done.clone(), large_bytes.clone());
                let mut client = connect(addr).await;
                large.push(tokio::spawn(async move {
                    while running.load(Ordering::Relaxed) {
                        let n = fetch(&mut client, "/large", "br").await;
                        bytes.store(n as u64, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            // Let the large requests get going.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut client = connect(addr).await;
        let interval = Duration::from_millis(5);
        let mut small = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let start = Instant::now();
        let large_at_start = large_done.load(Ordering::Relaxed);
        while start.elapsed() < Duration::from_secs(secs) {
            let t = Instant::now();
            fetch(&mut client, "/small", "br").await;
            let us = t.elapsed().as_micros() as u64;
            small
                .record_correct(us.max(1), interval.as_micros() as u64)
                .unwrap();
            tokio::time::sleep(interval.saturating_sub(t.elapsed())).await;
        }
        let large_per_sec = (large_done.load(Ordering::Relaxed) - large_at_start) as f64
            / start.elapsed().as_secs_f64();
        running.store(false, Ordering::Relaxed);
        for t in large {
            t.await.unwrap();
        }
        Round {
            small,
            large_per_sec,
            large_bytes: large_bytes.load(Ordering::Relaxed),
        }
    });
    stop();
    result
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() {
    let secs = env("SECS", 10);
    let rounds = env("ROUNDS", 3) as usize;
    let large_conns = env("LARGE_CONNS", 4) as usize;
    let level = env("LEVEL", 11) as i32;
    println!(
        "brotli {level}; {large_conns} connections of GET /large (200 KB JSON), GET /small every 5 ms; \
         {rounds} rounds of {secs} s per variant, interleaved"
    );
    let variants = [Variant::Idle, Variant::TowerScale, Variant::TowerHttp];
    let mut results: Vec<Vec<Round>> = variants.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let res = round(*v, level, secs, large_conns);
            println!(
                "round {r} {:<40} small p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  large {:>5.2}/s ({} B)",
                v.name(),
                ms(res.small.value_at_quantile(0.5)),
                ms(res.small.value_at_quantile(0.99)),
                ms(res.small.max()),
                res.large_per_sec,
                res.large_bytes
            );
            results[i].push(res);
        }
    }
    println!();
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "variant (all rounds merged)", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "large/s"
    );
    for (i, v) in variants.iter().enumerate() {
        let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for r in &results[i] {
            merged.add(&r.small).unwrap();
        }
        let large: f64 =
            results[i].iter().map(|r| r.large_per_sec).sum::<f64>() / results[i].len() as f64;
        println!(
            "{:<40} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            v.name(),
            ms(merged.value_at_quantile(0.5)),
            ms(merged.value_at_quantile(0.99)),
            ms(merged.value_at_quantile(0.999)),
            ms(merged.max()),
            large
        );
    }
    let p99 = |i: usize, r: usize| results[i][r].small.value_at_quantile(0.99) as f64;
    let mut ratios: Vec<f64> = (0..rounds).map(|r| p99(2, r) / p99(1, r)).collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let mut vs_idle: Vec<f64> = (0..rounds).map(|r| p99(1, r) / p99(0, r)).collect();
    vs_idle.sort_by(|a, b| a.total_cmp(b));
    println!();
    println!(
        "small p99, median of per-round ratios: tower_http ÷ tower_scale = {:.1}; tower_scale ÷ idle = {:.2}",
        ratios[ratios.len() / 2],
        vs_idle[vs_idle.len() / 2]
    );
}
