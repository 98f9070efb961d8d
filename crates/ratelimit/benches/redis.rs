//! Redis decisions per second at 64 concurrent requests, against `redis-benchmark`'s EVALSHA
//! throughput of the same script on the same server, in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-ratelimit --bench redis
//! ```
//!
//! Needs `redis-server` and `redis-benchmark` (Debian package redis-tools). Prints both
//! figures and the ratio.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use tower_scale_ratelimit::{Quota, RedisStore, Store, gcra_script_hash};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const REQUESTS: u64 = 200_000;
const CONCURRENCY: u64 = 64;

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let store = Arc::new(RedisStore::new(backend));
    // A quota never reached: every decision admits and writes, like the redis-benchmark run.
    // One request per ms (a whole number of ms: no remainder to read, as for most quotas).
    let quota = Quota::per_second(1_000).burst(1_000_000_000);
    let ours = rt.block_on(async {
        store.check("bench", &[quota], 1).await.unwrap(); // loads the script
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..REQUESTS / CONCURRENCY {
                        let d = store.check("bench", &[quota], 1).await.unwrap();
                        assert!(d.allowed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        REQUESTS as f64 / start.elapsed().as_secs_f64()
    });
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port().to_string(),
            "-c",
            &CONCURRENCY.to_string(),
            "-n",
            &REQUESTS.to_string(),
            "--csv",
            "evalsha",
            gcra_script_hash(),
            "1",
            "ts:ratelimit:{default:bench}:t0",
            // The quota above as the script takes it: increment 1,000 µs, window 10^12 µs.
            "1000",
            "1000000000000",
        ])
        .output()
        .expect("redis-benchmark (Debian: apt-get install redis-tools)");
    let csv = String::from_utf8_lossy(&out.stdout);
    let line = csv.lines().last().unwrap_or_default();
    let rps: f64 = line
        .split(',')
        .nth(1)
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {csv}"));
    println!("redis-benchmark EVALSHA (same script, -c {CONCURRENCY}): {rps:.0} req/s");
    println!("RedisStore::check (64 tasks, one backend):       {ours:.0} decisions/s");
    println!("ratio: {:.2}", ours / rps);
}
