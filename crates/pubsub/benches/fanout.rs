//! Fan-out across 3 instances through one real redis-server: messages per second delivered to
//! every instance, and delivery latency (publish call to subscriber), for the `Broadcaster`
//! against a direct redis-rs `PUBLISH`/`SUBSCRIBE` loop as the ceiling, all in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-pubsub --bench fanout
//! ```
//!
//! Each round publishes `MESSAGES` 64-byte messages from `PUBLISHERS` concurrent tasks spread
//! over the 3 instances (each task awaits its publishes one after the other), and ends when
//! every subscriber has every message. Variants run in turn within each round (interleaved) so
//! that machine noise hits them alike; the median throughput over the rounds and the latency
//! percentiles over all messages are printed, with ratios to the ceiling.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tower_scale_pubsub::{Broadcaster, Delivery, Event};
use tower_scale_redis::redis;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const MESSAGES: usize = 20_000;
const PUBLISHERS: usize = 16;
const INSTANCES: usize = 3;
const ROUNDS: usize = 5;
const PAYLOAD: usize = 64;

/// Where every subscriber of a variant reports what it received.
struct Sink {
    base: Instant,
    received: AtomicUsize,
    target: AtomicUsize,
    lagged: AtomicUsize,
    done: Notify,
    latencies_ns: Mutex<Vec<u64>>,
}

impl Sink {
    fn new(base: Instant) -> Arc<Self> {
        Arc::new(Self {
            base,
            received: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            lagged: AtomicUsize::new(0),
            done: Notify::new(),
            latencies_ns: Mutex::new(Vec::new()),
        })
    }

    fn record(&self, payload: &[u8]) {
        let sent = u64::from_le_bytes(payload[..8].try_into().unwrap());
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap();
        self.latencies_ns
            .lock()
            .unwrap()
            .push(now.saturating_sub(sent));
        self.count(1);
    }

    fn count(&self, n: usize) {
        let total = self.received.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }
}

fn payload(base: Instant) -> Vec<u8> {
    let mut p = u64::try_from(base.elapsed().as_nanos())
        .unwrap()
        .to_le_bytes()
        .to_vec();
    p.resize(PAYLOAD, b'x');
    p
}

/// A way to publish, per instance.
/// Each variant has its own channel or room, so it never feeds another variant's subscribers.
#[derive(Clone)]
enum Publisher {
    Raw(Vec<redis::aio::MultiplexedConnection>, &'static str),
    Broadcaster(Vec<Broadcaster>, &'static str),
}

impl Publisher {
    async fn publish(&self, instance: usize, base: Instant) {
        match self {
            Self::Raw(conns, channel) => {
                let mut conn = conns[instance].clone();
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(*channel)
                    .arg(payload(base))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            Self::Broadcaster(b, room) => {
                b[instance].publish(room, payload(base)).await.unwrap();
            }
        }
    }
}

struct Variant {
    name: &'static str,
    publisher: Publisher,
    sink: Arc<Sink>,
    /// Deliveries per message (subscribers over all instances).
    fanout: usize,
    rates: Vec<f64>,
}

async fn raw(url: &str, subscribers: usize, base: Instant, name: &'static str) -> Variant {
    let client = redis::Client::open(url).unwrap();
    let sink = Sink::new(base);
    for _ in 0..subscribers {
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(name).await.unwrap();
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(m) = messages.next().await {
                sink.record(m.get_payload_bytes());
            }
        });
    }
    let mut conns = Vec::new();
    for _ in 0..INSTANCES {
        conns.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    Variant {
        name,
        publisher: Publisher::Raw(conns, name),
        sink,
        fanout: subscribers,
        rates: Vec::new(),
    }
}

async fn broadcaster(
    url: &str,
    delivery: Delivery,
    per_instance: usize,
    base: Instant,
    name: &'static str,
) -> Variant {
    let sink = Sink::new(base);
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let backend = RedisBackend::new(RedisConfig::new(url)).unwrap();
        let b = Broadcaster::builder()
            .delivery(delivery)
            .queue_capacity(65_536)
            .history_len(100_000)
            .redis(backend)
            .build()
            .unwrap();
        for _ in 0..per_instance {
            let mut sub = b.subscribe(name).await.unwrap();
            let sink = sink.clone();
            tokio::spawn(async move {
                while let Some(event) = sub.recv().await {
                    match event {
                        Event::Message(m) => sink.record(m.payload()),
                        Event::Lagged(n) => {
                            sink.lagged.fetch_add(1, Ordering::Relaxed);
                            sink.count(usize::try_from(n).unwrap());
                        }
                        _ => {}
                    }
                }
            });
        }
        instances.push(b);
    }
    Variant {
        name,
        publisher: Publisher::Broadcaster(instances, name),
        sink,
        fanout: INSTANCES * per_instance,
        rates: Vec::new(),
    }
}

async fn round(v: &mut Variant, base: Instant) {
    let sink = &v.sink;
    sink.received.store(0, Ordering::Release);
    sink.target.store(MESSAGES * v.fanout, Ordering::Release);
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let publisher = v.publisher.clone();
            tokio::spawn(async move {
                for _ in 0..MESSAGES / PUBLISHERS {
                    publisher.publish(i % INSTANCES, base).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while sink.received.load(Ordering::Acquire) < MESSAGES * v.fanout {
            sink.done.notified().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{}: not every message arrived", v.name));
    v.rates
        .push(MESSAGES as f64 / start.elapsed().as_secs_f64());
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = Instant::now();
        let mut variants = vec![
            raw(&url, INSTANCES, base, "redis-rs PUBLISH/SUBSCRIBE, 3 subscriber connections (ceiling)").await,
            broadcaster(&url, Delivery::PubSub, 1, base, "Broadcaster pub/sub, 3 instances x 1 subscriber").await,
            broadcaster(&url, Delivery::Stream, 1, base, "Broadcaster stream, 3 instances x 1 subscriber").await,
            raw(&url, INSTANCES * 10, base, "redis-rs PUBLISH/SUBSCRIBE, 30 subscriber connections").await,
            broadcaster(&url, Delivery::PubSub, 10, base, "Broadcaster pub/sub, 3 instances x 10 subscribers").await,
        ];
        // Warm-up round, not counted.
        for v in &mut variants {
            round(v, base).await;
            v.rates.clear();
            v.sink.latencies_ns.lock().unwrap().clear();
        }
        for _ in 0..ROUNDS {
            for v in &mut variants {
                round(v, base).await;
            }
        }
        let ceiling = median(&variants[0].rates);
        let ceiling30 = median(&variants[3].rates);
        println!(
            "\n{MESSAGES} messages x {ROUNDS} rounds, {PUBLISHERS} concurrent publishers over {INSTANCES} instances, {PAYLOAD}-byte payloads\n"
        );
        println!("| variant | messages/s (median) | deliveries/s | vs ceiling | latency p50 | p99 | max | lagged |");
        println!("|---|---|---|---|---|---|---|---|");
        for (i, v) in variants.iter().enumerate() {
            let rate = median(&v.rates);
            let reference = if i >= 3 { ceiling30 } else { ceiling };
            let mut lat = v.sink.latencies_ns.lock().unwrap().clone();
            lat.sort_unstable();
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {:.0} µs | {} |",
                v.name,
                rate,
                rate * v.fanout as f64,
                rate / reference,
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
                percentile(&lat, 1.0),
                v.sink.lagged.load(Ordering::Relaxed),
            );
        }
    });
}
