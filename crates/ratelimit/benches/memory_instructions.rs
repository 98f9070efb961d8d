//! Instructions per request (deterministic, for callgrind) of the routers of `memory.rs`:
//! tower-scale-ratelimit against tower_governor on the same quota and key mix.
//!
//! ```not_rust
//! cargo bench -p tower-scale-ratelimit --bench memory_instructions --no-run
//! # then, per variant (the count / 20000 is one request):
//! RL_VARIANT=tower_governor RL_N=20000 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     --toggle-collect='*memory_instructions::measured*' target/release/deps/memory_instructions-<hash>
//! ```
//!
//! `scripts/bench/ratelimit-instructions.sh` runs every variant and prints the table. Without `RL_VARIANT` (as under `cargo bench`), it runs every variant 1,000 times.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{LimiterClock, MemoryStore, Quota, RateLimitLayer};

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn router(variant: &str) -> Router {
    // The clock production builds use by default (this crate's own dev-dependency turns on
    // `test-util`, whose default is tokio's pausable clock).
    let ours = || {
        RateLimitLayer::new(
            MemoryStore::new(100_000).with_clock(LimiterClock::system()),
            [Quota::per_second(1_000_000).burst(1_000_000)],
        )
        .unwrap()
    };
    let governor = |headers: bool| {
        let mut b = tower_governor::governor::GovernorConfigBuilder::default();
        b.per_nanosecond(1000).burst_size(1_000_000);
        if headers {
            let config = b.use_headers().finish().unwrap();
            app().layer(tower_governor::GovernorLayer::new(Arc::new(config)))
        } else {
            let config = b.finish().unwrap();
            app().layer(tower_governor::GovernorLayer::new(Arc::new(config)))
        }
    };
    match variant {
        "bare_axum" => app(),
        "tower_scale_ratelimit" => app().layer(ours()),
        "tower_scale_ratelimit_no_headers" => app().layer(ours().headers(false)),
        "tower_governor" => governor(false),
        "tower_governor_with_headers" => governor(true),
        other => panic!("unknown RL_VARIANT {other}"),
    }
}

const VARIANTS: [&str; 5] = [
    "bare_axum",
    "tower_scale_ratelimit",
    "tower_scale_ratelimit_no_headers",
    "tower_governor",
    "tower_governor_with_headers",
];

fn run(variant: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let router = router(variant);
    let addrs: Vec<SocketAddr> = (0..1000u32)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 40000)))
        .collect();
    // Every key seen once first (also with N = 0), so runs differ by requests on known keys.
    for addr in &addrs {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(*addr));
        let res = rt.block_on(router.clone().oneshot(req)).unwrap();
        assert!(res.status().is_success());
    }
    measured(&rt, &router, &addrs, n);
}

/// The requests counted: `ratelimit-instructions.sh` has callgrind collect inside this function only
/// (`--toggle-collect`), so start-up work that varies from run to run (tower_governor's
/// clock calibrates against wall time) is left out.
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, router: &Router, addrs: &[SocketAddr], n: usize) {
    for i in 0..n {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(addrs[i % addrs.len()]));
        let res = rt.block_on(router.clone().oneshot(req)).unwrap();
        assert!(res.status().is_success());
    }
}

fn main() {
    tower_scale_testkit::bench_main("RL_VARIANT", "RL_N", VARIANTS, 1000, run);
}
