//! CPU time per Redis-backed cache hit, of this process and of Redis, against a hand-written
//! cache-aside handler (one raw `GET` of the document, returned as the body):
//!
//! ```not_rust
//! cargo bench -p tower-scale-cache --bench hit_cpu
//! HITS=20000 ROUNDS=5 CONCURRENCY=32 cargo bench -p tower-scale-cache --bench hit_cpu
//! ```
//!
//! Both apps serve `GET /cached/1`, the 1,024-byte document of the bench contract
//! (`shared/bench/SCENARIOS.md`): `raw_get`, the Rust peer's shape (`GET key` → `Vec<u8>` →
//! response); `cache_hit`, `ResponseCacheLayer` on a Redis store with a 60 s TTL and no local
//! tier (as `examples/bench-app` configures `/cached/{id}`), warmed so every request is a hit.
//! Rounds interleave the two. Each block of `HITS` requests (`CONCURRENCY` in flight on a
//! 2-worker runtime) reports:
//!
//! - server µs/hit: CPU time of this process (every thread, from
//!   `/proc/self/task/*/schedstat`, nanoseconds) divided by the requests;
//! - Redis µs/hit: CPU time of the `redis-server` process the same way;
//! - Redis `usec_per_call` of the command the hit uses, from `INFO commandstats`.
//!
//! The medians over the rounds and their ratio (cache hit ÷ raw `GET`) are printed last.
#![allow(missing_docs)]

use std::time::Duration;

use axum::Router;
use futures_util::future::join_all;
use tower_scale_cache::{Cache, RedisStore, ResponseCacheLayer};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

mod support;

use support::{call, env_usize};

/// CPU nanoseconds used so far by every thread of process `pid` (`self` for this one).
fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

async fn run(app: &Router, hits: usize, concurrency: usize) {
    let per_task = hits / concurrency;
    let tasks = (0..concurrency).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..per_task {
                assert_eq!(call(&app, "/cached/1").await, 1024);
            }
        })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
}

fn usec_per_call(server: &RedisServer, command: &str) -> f64 {
    let info = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call="))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let hits = env_usize("HITS", 20_000);
    let rounds = env_usize("ROUNDS", 5);
    let concurrency = env_usize("CONCURRENCY", 32).max(1);
    let hits = hits / concurrency * concurrency;

    let server = RedisServer::start();
    let redis_pid = server.pid().expect("redis-server pid").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    rt.block_on(support::store_raw(&backend, "1"));
    let raw_app = support::raw_get_app(backend.clone());
    // `with_state` turns the handler and its layers into a service once, as `axum::serve`
    // does (a `Router` called directly would build the layer's service on every request).
    let cache_app = support::origin(Duration::from_millis(5))
        .route_layer(
            ResponseCacheLayer::new(Cache::new(RedisStore::new(backend)))
                .ttl(Duration::from_secs(60)),
        )
        .with_state(());
    // Warm both (and the cache entry).
    rt.block_on(run(&raw_app, concurrency * 10, concurrency));
    rt.block_on(run(&cache_app, concurrency * 10, concurrency));
    let hit_command = server
        .command_calls()
        .into_iter()
        .map(|(c, _)| c)
        .find(|c| c == "hget")
        .unwrap_or_else(|| "get".to_owned());

    println!(
        "{hits} hits per block, {concurrency} in flight, {rounds} rounds; hit command of the cache: {hit_command}"
    );
    println!("app        round  server-us/hit  redis-us/hit  redis-usec/call");
    let mut results: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
    for round in 0..rounds {
        for (i, (name, app, command)) in [
            ("raw_get", &raw_app, "get"),
            ("cache_hit", &cache_app, hit_command.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            server.reset_stats();
            let (me0, redis0) = (cpu_ns("self"), cpu_ns(&redis_pid));
            rt.block_on(run(app, hits, concurrency));
            let (me1, redis1) = (cpu_ns("self"), cpu_ns(&redis_pid));
            let me = (me1 - me0) as f64 / hits as f64 / 1000.0;
            let red = (redis1 - redis0) as f64 / hits as f64 / 1000.0;
            let per_call = usec_per_call(&server, command);
            println!("{name:<10} {round:>5}  {me:>13.2}  {red:>12.2}  {per_call:>15.2}");
            results[i].0.push(me);
            results[i].1.push(red);
            results[i].2.push(per_call);
        }
    }
    let [raw, hit] = &mut results;
    let (raw_me, raw_red, raw_call) = (median(&mut raw.0), median(&mut raw.1), median(&mut raw.2));
    let (hit_me, hit_red, hit_call) = (median(&mut hit.0), median(&mut hit.1), median(&mut hit.2));
    println!(
        "median     raw_get: server {raw_me:.2} us/hit, redis {raw_red:.2} us/hit, GET {raw_call:.2} usec/call"
    );
    println!(
        "median   cache_hit: server {hit_me:.2} us/hit, redis {hit_red:.2} us/hit, {hit_command} {hit_call:.2} usec/call"
    );
    println!(
        "ratio cache_hit / raw_get: server {:.2}, redis {:.2}, per call {:.2}",
        hit_me / raw_me,
        hit_red / raw_red,
        hit_call / raw_call
    );
}
