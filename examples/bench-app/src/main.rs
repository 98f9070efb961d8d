//! tower-scale's bench app: `shared/bench/SCENARIOS.md` served with tower-scale's layers.
//!
//! ```not_rust
//! PORT=3000 REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p example-bench-app
//! BENCH_MODE=bare PORT=3001 cargo run --release -p example-bench-app   # bare axum GET /hello
//! ../shared/bench/run-scenarios.sh http://127.0.0.1:3000
//! ```
//!
//! Environment: `HOST` (127.0.0.1) and `PORT` (3000; 0 picks a free port), `REDIS_URL` (redis://127.0.0.1:6379;
//! with the other `REDIS_*` variables of `RedisConfig::from_env`, e.g. `REDIS_MODE=cluster` and
//! comma-separated seed nodes for a Redis Cluster),
//! `BENCH_MODE` (`full`, the default, or `bare`), `BENCH_HELLO_LIMITER` (`hybrid`, the
//! default: leases through `HybridStore`; or `redis`: one Redis decision per `/hello`),
//! `BENCH_RATELIMIT_HEADERS` (`off`, the default, or `on`: the IETF `RateLimit` fields on the
//! rate-limited routes), `BENCH_PRE_STOP_DELAY` (seconds, 0 by default), `BENCH_SESSION_LOCAL` (`on`, the default: the session store's local
//! copy of recently read sessions; or `off`), `BENCH_CACHE_L1` (`off`, the default, or `on`:
//! the cache's local tier in front of Redis for `/cached/{id}`), `BENCH_METRICS` (`off`, the
//! default, or `on`: `GET /metrics`, and `MetricsLayer` and `PressureLayer` on every route, its
//! in-flight cap from `BENCH_MAX_IN_FLIGHT`). It prints one line once listening (`listening on http://<addr>`) and nothing per request. SIGTERM or
//! SIGINT: stops accepting, finishes in-flight requests, exits 0. Redis unreachable at start:
//! exit 1; a bad setting: exit 2.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use std::future::IntoFuture;

use axum::serve::ListenerExt;
use example_bench_app::{HelloLimiter, Options};
use tower_scale::metrics::PrometheusMetrics;
use tower_scale::redis::{RedisBackend, RedisConfig};
use tower_scale::shutdown::{Shutdown, ShutdownConfig};

/// Which app to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every endpoint of the contract, with tower-scale's layers.
    Full,
    /// The baseline: a bare axum `GET /hello`.
    Bare,
}

/// A setting is invalid (exit 2) or the app cannot start (exit 1).
#[derive(Debug)]
enum Failure {
    Config(String),
    Start(String),
}

fn settings() -> Result<(Mode, SocketAddr, String, Options), Failure> {
    let mode = match std::env::var("BENCH_MODE").as_deref() {
        Err(_) | Ok("" | "full") => Mode::Full,
        Ok("bare") => Mode::Bare,
        Ok(other) => {
            return Err(Failure::Config(format!(
                "BENCH_MODE={other:?}: expected \"full\" or \"bare\""
            )));
        }
    };
    let addr = example_support::listen_addr(3000).map_err(|e| Failure::Config(e.to_string()))?;
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let hello_limiter = match std::env::var("BENCH_HELLO_LIMITER") {
        Err(_) => HelloLimiter::default(),
        Ok(v) => v
            .parse()
            .map_err(|e| Failure::Config(format!("BENCH_HELLO_LIMITER={e}")))?,
    };
    let options = Options {
        hello_limiter,
        ratelimit_headers: switch("BENCH_RATELIMIT_HEADERS", false)?,
        session_local_copy: switch("BENCH_SESSION_LOCAL", true)?,
        cache_l1: switch("BENCH_CACHE_L1", false)?,
    };
    Ok((mode, addr, redis_url, options))
}

/// An `on`/`off` setting; `default` when unset or empty.
fn switch(name: &str, default: bool) -> Result<bool, Failure> {
    match std::env::var(name).as_deref() {
        Err(_) | Ok("") => Ok(default),
        Ok("on") => Ok(true),
        Ok("off") => Ok(false),
        Ok(other) => Err(Failure::Config(format!(
            "{name}={other:?}: expected \"on\" or \"off\""
        ))),
    }
}

/// `BENCH_METRICS=on`, what an operator runs (for `scripts/dashboard-render.sh`): the global
/// Prometheus recorder (process metrics included), the runtime lag probe, on every route
/// `MetricsLayer` outside `PressureLayer` (the stack's default thresholds: 200 ms of scheduling
/// lag; in-flight requests capped by `BENCH_MAX_IN_FLIGHT` when set), and `GET /metrics`.
/// Off by default: the benchmark measures the contract's layers only.
fn with_metrics(
    router: &mut axum::Router,
    metrics: &PrometheusMetrics,
    max_in_flight: Option<usize>,
) {
    use tower_scale::metrics::{MetricsLayer, RuntimeProbe};
    use tower_scale::offload::PressureLayer;
    // Dropping the handle leaves the probe running for the life of the process.
    let probe = RuntimeProbe::new().spawn();
    let pressure = PressureLayer::new()
        .lag_from(probe.watch())
        .max_in_flight(max_in_flight);
    *router = std::mem::take(router)
        .layer(pressure)
        .layer(MetricsLayer::new())
        .route("/metrics", axum::routing::get(metrics.handler()));
}

/// `BENCH_MAX_IN_FLIGHT`: none when unset.
fn max_in_flight() -> Result<Option<usize>, Failure> {
    match std::env::var("BENCH_MAX_IN_FLIGHT") {
        Err(_) => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|_| {
            Failure::Config(format!(
                "BENCH_MAX_IN_FLIGHT={v:?}: expected a number of requests"
            ))
        }),
    }
}

async fn run() -> Result<(), Failure> {
    let (mode, addr, redis_url, options) = settings()?;
    // No load balancer to tell: no pre-stop delay unless BENCH_PRE_STOP_DELAY (seconds) sets
    // one; in-flight requests get 10 s.
    let pre_stop_delay = match std::env::var("BENCH_PRE_STOP_DELAY") {
        Err(_) => Duration::ZERO,
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| {
                Failure::Config(format!("BENCH_PRE_STOP_DELAY={v:?}: expected seconds"))
            })?,
    };
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = pre_stop_delay;
        config.drain_timeout = Duration::from_secs(10);
        config
    });
    let app = match mode {
        Mode::Bare => None,
        Mode::Full => {
            // Installed before the backend and the layers are built: each takes its metric
            // handles from the recorder installed at that time.
            let metrics = if switch("BENCH_METRICS", false)? {
                let max_in_flight = max_in_flight()?;
                let metrics =
                    PrometheusMetrics::install().map_err(|e| Failure::Start(e.to_string()))?;
                Some((metrics, max_in_flight))
            } else {
                None
            };
            // The `REDIS_*` variables when set (`REDIS_MODE=cluster` with the seed nodes in
            // `REDIS_URL`: a Redis Cluster), else a standalone server at the default URL.
            let config = RedisConfig::from_env()
                .map_err(|e| Failure::Config(e.to_string()))?
                .unwrap_or_else(|| RedisConfig::new(&redis_url));
            let redis = RedisBackend::new(config).map_err(|e| {
                let url = tower_scale::redis::redact_url(&redis_url);
                Failure::Config(format!("REDIS_URL={url:?}: {e}"))
            })?;
            redis.ping().await.map_err(|e| {
                let url = tower_scale::redis::redact_url(&redis_url);
                Failure::Start(format!("Redis at {url} does not answer: {e}"))
            })?;
            let mut app = example_bench_app::app(&redis, &shutdown, options)
                .map_err(|e| Failure::Start(e.to_string()))?;
            if let Some((metrics, max_in_flight)) = &metrics {
                with_metrics(app.get_mut(), metrics, *max_in_flight);
            }
            Some(app)
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Start(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Start(e.to_string()))?;
    println!(
        "example-bench-app: listening on http://{addr} ({}{})",
        if mode == Mode::Bare {
            "bare axum"
        } else {
            "tower-scale"
        },
        if mode == Mode::Bare {
            String::new()
        } else {
            format!(
                ", redis {}, {options:?}",
                tower_scale::redis::redact_url(&redis_url)
            )
        }
    );
    shutdown.listen_for_signals();
    let report = match app {
        None => {
            let stop = shutdown.stop_accepting();
            let make =
                example_bench_app::bare_app().into_make_service_with_connect_info::<SocketAddr>();
            // Small responses go out at once (Node and the Rust peer set TCP_NODELAY too).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, make).with_graceful_shutdown(stop);
            shutdown.run(async move { serve.await }).await
        }
        Some(app) => {
            // tower-scale's serve loop: no keep-alive connection is closed under a proxy that
            // may be writing a request on it.
            let serve = shutdown
                .serve(listener, app)
                .with_connect_info()
                .tcp_nodelay(true);
            shutdown.run(serve.into_future()).await
        }
    };
    match report.exit_code() {
        0 => Ok(()),
        code => Err(Failure::Start(format!(
            "shutdown did not finish in time (exit code {code}): {report:?}"
        ))),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("example-bench-app: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Start(msg)) => {
            eprintln!("example-bench-app: {msg}");
            ExitCode::from(1)
        }
    }
}
