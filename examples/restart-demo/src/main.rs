//! A server for `scripts/bench/shutdown-restart-under-load.sh`: `GET|POST /work` answers after 20 ms.
//!
//! ```not_rust
//! PORT=4001 cargo run --release -p example-restart-demo             # graceful
//! PORT=4001 GRACEFUL=0 cargo run --release -p example-restart-demo  # plain axum::serve
//! ```
//!
//! Graceful mode stops through tower-scale-shutdown: readiness off, a pre-stop delay
//! (`PRE_STOP_DELAY_MS`, default 500), stop accepting, drain in-flight requests. Plain mode is
//! `axum::serve` without graceful shutdown, as many services run: SIGTERM ends the process at
//! once. It listens on `HOST` (127.0.0.1) and `PORT` (4001).

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tower_scale::shutdown::{Shutdown, ShutdownConfig};

async fn work() -> &'static str {
    tokio::time::sleep(Duration::from_millis(20)).await;
    "done"
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    example_support::exit_code(run().await)
}

async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let addr = example_support::listen_addr(4001)?;
    let graceful = std::env::var("GRACEFUL").map_or(true, |v| v != "0");
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new().route("/work", get(work).post(work));
    if !graceful {
        axum::serve(listener, app).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let pre_stop: u64 = std::env::var("PRE_STOP_DELAY_MS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .map_err(|e| format!("PRE_STOP_DELAY_MS: {e}"))?
        .unwrap_or(500);
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::from_millis(pre_stop);
        config.drain_timeout = Duration::from_secs(10);
        config.tasks_timeout = Duration::from_secs(1);
        config
    });
    shutdown.listen_for_signals();
    let app = app.layer(shutdown.layer()).merge(shutdown.health_routes());
    let serve = shutdown.serve(listener, app);
    let report = shutdown.run(serve.into_future()).await;
    Ok(std::process::ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
