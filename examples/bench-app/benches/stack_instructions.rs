//! Instructions per request (deterministic, for callgrind) of the contract's `/hello` stack,
//! whole and with one layer left out at a time, against the Rust peer's stack (tower-http
//! compression + tower-sessions + tower_governor) and bare axum. Every store is in memory, so
//! the figures are the layers' own cost, without Redis round trips.
//!
//! ```not_rust
//! scripts/bench/stack-instructions.sh     # the table
//! # or one variant, with N = 0 and N = 20000 (the difference / 20000 is one request):
//! BENCH_VARIANT=tower_scale BENCH_N=20000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/dev/null target/release/deps/stack_instructions-<hash>
//! ```
//!
//! Without `BENCH_VARIANT` (as under `cargo bench`), it runs every variant 1,000 times.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::handler::Handler;
use axum::http::{Request, Response, header};
use axum::routing::get;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_scale::breaker::{BreakerConfig, BreakerLayer, CircuitBreaker};
use tower_scale::compression::{CompressionLayer, Encoding};
use tower_scale::ratelimit::{MemoryStore, PeerIp, Quota, RateLimitLayer};
use tower_scale::session::{MemoryStore as SessionMemory, SessionManagerLayer};
use tower_scale::shutdown::{Shutdown, ShutdownConfig};

async fn hello() -> &'static str {
    "hello"
}

/// The layers of the contract's `/hello`, outermost first.
const LAYERS: [&str; 5] = ["shutdown", "ratelimit", "session", "compression", "breaker"];

/// tower-scale's `/hello` route without the layers in `without`, as the bench app builds it:
/// rate limit → session → compression → breaker around the handler (`Handler::layer`). The
/// shutdown layer goes around the router, in [`run`]. With `around_route`, the layers go around
/// the route instead (`MethodRouter::route_layer`: their inner service is then a boxed `Route`,
/// which a layer that clones its inner per request clones with an allocation).
fn tower_scale(without: &[&str], around_route: bool) -> Router {
    let has = |layer: &str| !without.contains(&layer);
    let limit = has("ratelimit").then(|| {
        RateLimitLayer::new(
            MemoryStore::new(100_000),
            [Quota::per_second(1_000_000).burst(1_000_000_000)],
        )
        .unwrap()
        .key_with(PeerIp::default())
    });
    let sessions = has("session").then(|| {
        SessionManagerLayer::new(SessionMemory::new())
            .secure(false)
            .unwrap()
    });
    // The compressed body is boxed into axum's `Body` here rather than by axum at the top (the
    // same one allocation), so that the stack has one response type with or without it.
    let gzip = has("compression").then(|| {
        ServiceBuilder::new()
            .map_response(|res: Response<_>| res.map(Body::new))
            .layer(
                CompressionLayer::new()
                    .encodings(&[Encoding::Gzip])
                    .level(Encoding::Gzip, 6),
            )
    });
    let breaker = has("breaker").then(|| {
        BreakerLayer::new(CircuitBreaker::named("hello", BreakerConfig::default()).unwrap())
    });
    let stack = ServiceBuilder::new()
        .option_layer(limit)
        .option_layer(sessions)
        .option_layer(gzip)
        .option_layer(breaker);
    let route = if around_route {
        get(hello).route_layer(stack)
    } else {
        get(hello.layer(stack))
    };
    Router::new().route("/hello", route)
}

/// The Rust peer's `/hello` (shared/peers/rust-tower), its session store in memory.
fn peer() -> Router {
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let sessions = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
        .with_secure(false);
    Router::new().route(
        "/hello",
        get(hello).layer(
            ServiceBuilder::new()
                .layer(tower_http::compression::CompressionLayer::new())
                .layer(sessions)
                .layer(tower_governor::GovernorLayer::new(Arc::new(governor))),
        ),
    )
}

/// The same layers (the breaker aside) from `tower_scale::stack` and a TOML config, as the
/// quick-start builds its app: every store in memory.
fn from_stack() -> Router {
    let config = tower_scale::stack::StackConfig::from_toml(
        r#"
        [shutdown]
        pre_stop_delay = "0s"

        [rate_limit]
        quotas = [{ count = 1000000, period = "1s", burst = 1000000000 }]
        key = { type = "peer_ip" }

        [session]
        secure = false

        [compression]
        encodings = ["gzip"]
        "#,
    )
    .unwrap();
    let stack = tower_scale::stack::Stack::build(&config).unwrap();
    served(stack.apply(Router::new().route("/hello", get(hello))))
}

/// The router as `axum::serve` runs it: `with_state(())` turns every handler into a route once.
/// Called directly, a router without state would apply the route layers again on every request.
fn served(router: Router) -> Router {
    router.with_state(())
}

fn variants() -> Vec<String> {
    let mut v = vec![
        "bare_axum".to_owned(),
        "peer".to_owned(),
        "tower_scale".to_owned(),
    ];
    v.extend(LAYERS.iter().map(|l| format!("tower_scale_without_{l}")));
    v.push("tower_scale_shutdown_through_router_layer".to_owned());
    v.push("tower_scale_route_layer".to_owned());
    v.push("tower_scale_stack".to_owned());
    v.extend(
        [
            "ratelimit_only",
            "ratelimit_only_no_headers",
            "tower_governor_only",
        ]
        .map(str::to_owned),
    );
    v
}

fn run(variant: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::ZERO;
        config
    });
    match variant {
        "bare_axum" => drive(
            &rt,
            variant,
            n,
            &served(Router::new().route("/hello", get(hello))),
        ),
        "peer" => drive(&rt, variant, n, &served(peer())),
        "tower_scale_stack" => drive(&rt, variant, n, &from_stack()),
        // The in-memory limiters alone. Built here, tokio has no `test-util` (which the rate-limit
        // crate's own benches get from its dev-dependencies, and which makes every
        // `tokio::time::Instant::now` take a lock), as in a release build of an app.
        "ratelimit_only" | "ratelimit_only_no_headers" => {
            let limit = RateLimitLayer::new(
                MemoryStore::new(100_000),
                [Quota::per_second(1_000_000).burst(1_000_000_000)],
            )
            .unwrap()
            .key_with(PeerIp::default())
            .headers(variant == "ratelimit_only");
            drive(
                &rt,
                variant,
                n,
                &served(Router::new().route("/hello", get(hello).route_layer(limit))),
            );
        }
        "tower_governor_only" => {
            let governor = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .finish()
                .unwrap();
            let layer = tower_governor::GovernorLayer::new(Arc::new(governor));
            drive(
                &rt,
                variant,
                n,
                &served(Router::new().route("/hello", get(hello).route_layer(layer))),
            );
        }
        // The shutdown layer through `Router::layer`, which wraps every route in one more boxed
        // `Route` (a clone of the boxed service and a boxed future per request).
        "tower_scale_shutdown_through_router_layer" => {
            drive(
                &rt,
                variant,
                n,
                &served(tower_scale(&[], false).layer(shutdown.layer())),
            );
        }
        other => {
            let without = match other.strip_prefix("tower_scale_without_") {
                Some(layer) if LAYERS.contains(&layer) => layer,
                _ if other == "tower_scale" || other == "tower_scale_route_layer" => "",
                _ => panic!("unknown BENCH_VARIANT {other}; known: {:?}", variants()),
            };
            let route = served(tower_scale(&[without], other == "tower_scale_route_layer"));
            if without == "shutdown" {
                drive(&rt, variant, n, &route);
            } else {
                // Around the whole router, as the bench app does.
                drive(&rt, variant, n, &shutdown.layer().layer(route));
            }
        }
    }
}

/// Sends 1,000 warm-up requests (one per key) and then `n` more through `app`.
fn drive<S>(rt: &tokio::runtime::Runtime, variant: &str, n: usize, app: &S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let addrs: Vec<SocketAddr> = (0..1000u32)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 40000)))
        .collect();
    // Every key seen once first, so that the measured requests are on known keys.
    for addr in &addrs {
        one(rt, variant, app, *addr);
    }
    measured(rt, variant, app, &addrs, n);
}

/// The requests counted: the script has callgrind collect inside this function only
/// (`COLLECT=measured`), so start-up work that varies from run to run (quanta's clock, used by
/// in-memory limiters, calibrates against wall time) is left out.
#[inline(never)]
fn measured<S>(rt: &tokio::runtime::Runtime, variant: &str, app: &S, addrs: &[SocketAddr], n: usize)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    for i in 0..n {
        one(rt, variant, app, addrs[i % addrs.len()]);
    }
}

/// One `GET /hello` from `addr`, its answer checked.
fn one<S>(rt: &tokio::runtime::Runtime, variant: &str, app: &S, addr: SocketAddr)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let mut req = Request::get("/hello")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    rt.block_on(async {
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success(), "{variant}: {}", res.status());
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"hello", "{variant}");
    });
}

fn main() {
    tower_scale_testkit::bench_main("BENCH_VARIANT", "BENCH_N", variants(), 1000, run);
}
