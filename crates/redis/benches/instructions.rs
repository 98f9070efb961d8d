//! Instructions per GET (deterministic, for callgrind) through `RedisBackend::query` with its
//! defaults, against a raw redis-rs `MultiplexedConnection` (what the Rust peer calls) and a raw
//! `ConnectionManager`, on a real `redis-server`. Only this process is counted (Redis runs in
//! its own). GETs are sent one after another on a current-thread runtime, so each figure is one
//! command's client-side cost: the backend's bookkeeping, redis-rs, the connection's driver
//! task and the runtime's I/O driver.
//!
//! ```not_rust
//! bin=$(cargo bench -p tower-scale-redis --bench instructions --no-run 2>&1 \
//!     | sed -n 's/.*Executable .*(\(.*\))/\1/p')
//! for v in backend raw_multiplexed raw_connection_manager; do
//!     REDIS_IR_VARIANT=$v REDIS_IR_N=5000 valgrind --tool=callgrind \
//!         --callgrind-out-file=/dev/null --toggle-collect='*instructions::measured*' "$bin" 2>&1 \
//!         | sed -n "s/.*Collected : \([0-9]*\).*/$v \1/p"
//! done   # divide by 5000: instructions per GET
//! ```
//!
//! Without `REDIS_IR_VARIANT` (as under `cargo bench`), it runs every variant 500 times.
#![allow(missing_docs)]

use tower_scale_redis::redis::{self, aio::ConnectionLike};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const VARIANTS: [&str; 3] = ["backend", "raw_multiplexed", "raw_connection_manager"];

enum Client {
    Backend(RedisBackend),
    Raw(redis::aio::MultiplexedConnection),
    Manager(redis::aio::ConnectionManager),
}

async fn get(client: &Client, cmd: &redis::Cmd) -> Vec<u8> {
    match client {
        Client::Backend(b) => b.query(cmd).await.unwrap(),
        Client::Raw(c) => query(c.clone(), cmd).await,
        Client::Manager(c) => query(c.clone(), cmd).await,
    }
}

async fn query<T: redis::FromRedisValue>(mut conn: impl ConnectionLike, cmd: &redis::Cmd) -> T {
    cmd.query_async(&mut conn).await.unwrap()
}

fn run(variant: &str, n: usize, url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let open = || redis::Client::open(url).unwrap();
        let client = match variant {
            "backend" => Client::Backend(RedisBackend::new(RedisConfig::new(url)).unwrap()),
            "raw_multiplexed" => {
                Client::Raw(open().get_multiplexed_async_connection().await.unwrap())
            }
            "raw_connection_manager" => {
                Client::Manager(redis::aio::ConnectionManager::new(open()).await.unwrap())
            }
            other => panic!("unknown REDIS_IR_VARIANT {other}"),
        };
        let mut set = redis::cmd("SET");
        set.arg("ts:bench:ir").arg("x".repeat(100));
        match &client {
            Client::Backend(b) => b.query::<()>(&set).await.unwrap(),
            Client::Raw(c) => query::<()>(c.clone(), &set).await,
            Client::Manager(c) => query::<()>(c.clone(), &set).await,
        }
        // Connections open, first command done: start-up is not counted.
        client
    });
    let got = measured(&rt, &client, n);
    assert_eq!(got, n * 100, "{variant}");
}

/// The GETs counted: `scripts/bench/redis-instructions.sh` has callgrind collect inside this function only
/// (`--toggle-collect`).
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, client: &Client, n: usize) -> usize {
    let mut cmd = redis::cmd("GET");
    cmd.arg("ts:bench:ir");
    rt.block_on(async {
        let mut bytes = 0;
        for _ in 0..n {
            bytes += get(client, &cmd).await.len();
        }
        bytes
    })
}

fn main() {
    // REDIS_IR_URL: a server started outside (so it is not counted); else the test kit's.
    let (_server, url) = RedisServer::from_env_or_start("REDIS_IR_URL");
    tower_scale_testkit::bench_main("REDIS_IR_VARIANT", "REDIS_IR_N", VARIANTS, 500, |v, n| {
        run(v, n, &url);
    });
}
