//! The backend's GET throughput as a ratio to raw redis-rs, at 64 concurrent requests,
//! measured in interleaved rounds so that machine noise hits both sides alike:
//!
//! ```not_rust
//! cargo bench -p tower-scale-redis --bench ratio
//! ```
//!
//! Each round runs 100,000 GETs through each variant, in turn; the median ratio over 7 rounds
//! is printed.
#![allow(missing_docs)]

use std::time::Instant;

use tower_scale_redis::redis::{self, aio::ConnectionManager};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const OPS: u64 = 100_000;
const CONCURRENCY: u64 = 64;
const ROUNDS: usize = 7;

async fn run<F, Fut>(op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in 0..OPS / CONCURRENCY {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let raw = client.get_multiplexed_async_connection().await.unwrap();
        let manager = ConnectionManager::new(client).await.unwrap();
        let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
        let mut c = raw.clone();
        redis::cmd("SET")
            .arg("k")
            .arg("x".repeat(100))
            .query_async::<()>(&mut c)
            .await
            .unwrap();
        let (mut vs_raw, mut vs_manager, mut tput) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let raw_rate = run({
                let raw = raw.clone();
                move || {
                    let mut c = raw.clone();
                    async move {
                        let _: Vec<u8> = redis::cmd("GET").arg("k").query_async(&mut c).await.unwrap();
                    }
                }
            })
            .await;
            let manager_rate = run({
                let m = manager.clone();
                move || {
                    let mut c = m.clone();
                    async move {
                        let _: Vec<u8> = redis::cmd("GET").arg("k").query_async(&mut c).await.unwrap();
                    }
                }
            })
            .await;
            let backend_rate = run({
                let b = backend.clone();
                move || {
                    let b = b.clone();
                    async move {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg("k");
                        let _: Vec<u8> = b.query(&cmd).await.unwrap();
                    }
                }
            })
            .await;
            vs_raw.push(backend_rate / raw_rate);
            vs_manager.push(backend_rate / manager_rate);
            tput.push((raw_rate, manager_rate, backend_rate));
        }
        for (raw, manager, backend) in &tput {
            println!("round: raw multiplexed {raw:.0}/s, raw ConnectionManager {manager:.0}/s, backend {backend:.0}/s");
        }
        println!("median ratio backend / raw MultiplexedConnection: {:.2}", median(vs_raw));
        println!("median ratio backend / raw ConnectionManager:     {:.2}", median(vs_manager));
    });
}
