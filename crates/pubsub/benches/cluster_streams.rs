//! Stream rooms on one redis-server against the same rooms on a local 3-master Redis Cluster
//! (every stream of a broadcaster in one slot, the reader on the slot's owner), in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-pubsub --bench cluster_streams
//! ```
//!
//! Each round publishes `MESSAGES` 64-byte messages to `ROOMS` stream rooms from `PUBLISHERS`
//! concurrent tasks spread over 3 instances (each task awaits its publishes one after the
//! other), and ends when every instance's subscriber of each room has every message. The two
//! deployments run in turn within each round (interleaved), so machine noise hits both alike.
//! Printed per deployment: the median messages/s, and the CPU time per message of the bench
//! process (the three instances) and of the Redis server processes, read from
//! `/proc/<pid>/stat` around each round (CPU time is less disturbed by other load than wall
//! time).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tower_scale_pubsub::{Broadcaster, Delivery, Event};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer};

const MESSAGES: usize = 20_000;
const PUBLISHERS: usize = 16;
const INSTANCES: usize = 3;
const ROOMS: usize = 4;
const ROUNDS: usize = 5;
const PAYLOAD: usize = 64;

/// Counts deliveries and wakes the round when all have arrived.
struct Sink {
    received: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl Sink {
    fn count(&self, n: usize) {
        let total = self.received.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }
}

struct Deployment {
    name: &'static str,
    instances: Vec<Broadcaster>,
    sink: Arc<Sink>,
    redis_pids: Vec<u32>,
    rates: Vec<f64>,
    /// (bench process, Redis processes) CPU seconds per round.
    cpu: Vec<(f64, f64)>,
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

async fn deployment(
    name: &'static str,
    config: impl Fn() -> RedisConfig,
    redis_pids: Vec<u32>,
) -> Deployment {
    let sink = Arc::new(Sink {
        received: AtomicUsize::new(0),
        target: AtomicUsize::new(usize::MAX),
        done: Notify::new(),
    });
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let b = Broadcaster::builder()
            .delivery(Delivery::Stream)
            .queue_capacity(65_536)
            .history_len(100_000)
            .redis(RedisBackend::new(config()).unwrap())
            .build()
            .unwrap();
        for room in 0..ROOMS {
            let mut sub = b.subscribe(&format!("room{room}")).await.unwrap();
            let sink = sink.clone();
            tokio::spawn(async move {
                while let Some(event) = sub.recv().await {
                    match event {
                        Event::Message(_) => sink.count(1),
                        Event::Lagged(n) => sink.count(usize::try_from(n).unwrap()),
                        _ => {}
                    }
                }
            });
        }
        instances.push(b);
    }
    Deployment {
        name,
        instances,
        sink,
        redis_pids,
        rates: Vec::new(),
        cpu: Vec::new(),
    }
}

async fn round(d: &mut Deployment) {
    let expected = MESSAGES * INSTANCES;
    d.sink.received.store(0, Ordering::Release);
    d.sink.target.store(expected, Ordering::Release);
    let redis_cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(&p.to_string())).sum();
    let (own0, redis0): (f64, f64) = (cpu_seconds("self"), redis_cpu(&d.redis_pids));
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let b = d.instances[i % INSTANCES].clone();
            tokio::spawn(async move {
                let payload = vec![b'x'; PAYLOAD];
                for n in 0..MESSAGES / PUBLISHERS {
                    let room = format!("room{}", (i + n) % ROOMS);
                    b.publish(&room, payload.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while d.sink.received.load(Ordering::Acquire) < expected {
            d.sink.done.notified().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{}: not every message arrived", d.name));
    d.rates
        .push(MESSAGES as f64 / start.elapsed().as_secs_f64());
    d.cpu.push((
        cpu_seconds("self") - own0,
        redis_cpu(&d.redis_pids) - redis0,
    ));
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = server.url();
        let urls = cluster.urls();
        let mut deployments = vec![
            deployment(
                "one redis-server",
                || RedisConfig::new(url.as_str()),
                server.pid().into_iter().collect(),
            )
            .await,
            deployment(
                "3-master cluster, one slot",
                || RedisConfig::cluster(urls.clone()),
                cluster.nodes().iter().filter_map(|n| n.pid()).collect(),
            )
            .await,
        ];
        // Warm-up round, not counted.
        for d in &mut deployments {
            round(d).await;
            d.rates.clear();
            d.cpu.clear();
        }
        for _ in 0..ROUNDS {
            for d in &mut deployments {
                round(d).await;
            }
        }
        println!(
            "\n{MESSAGES} messages x {ROUNDS} rounds to {ROOMS} stream rooms, {PUBLISHERS} publishers over {INSTANCES} instances, {PAYLOAD}-byte payloads\n"
        );
        println!("| deployment | messages/s (median) | vs one server | bench CPU µs/message | Redis CPU µs/message |");
        println!("|---|---|---|---|---|");
        let baseline = median(deployments[0].rates.iter().copied());
        for d in &deployments {
            let rate = median(d.rates.iter().copied());
            let per = |cpu: f64| cpu / MESSAGES as f64 * 1e6;
            println!(
                "| {} | {:.0} | {:.2} | {:.1} | {:.1} |",
                d.name,
                rate,
                rate / baseline,
                per(median(d.cpu.iter().map(|c| c.0))),
                per(median(d.cpu.iter().map(|c| c.1))),
            );
        }
    });
}
