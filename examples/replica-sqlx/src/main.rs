//! Run with
//!
//! ```not_rust
//! export PRIMARY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/app_primary
//! export REPLICA_DATABASE_URL=postgres://postgres@127.0.0.1:5432/app_replica
//! export RW_SECRET=a-secret-of-at-least-32-bytes-shared-by-all-instances
//! PORT=3001 cargo run -p example-replica-sqlx &
//! PORT=3002 cargo run -p example-replica-sqlx &
//! ```
//!
//! Settings: `PRIMARY_DATABASE_URL`, `REPLICA_DATABASE_URL` (required), `RW_SECRET` (required,
//! 32+ bytes, the same on every instance), `RW_WINDOW_MS` (default 5000), `HOST` and `PORT` (default
//! `127.0.0.1:3000`).

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Duration;

use example_replica_sqlx::{Pools, app, migrate};
use tower_scale_replica::ReadWriteLayer;
use tower_scale_shutdown::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{name} must be set"))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let primary = required("PRIMARY_DATABASE_URL")?;
    let replica = required("REPLICA_DATABASE_URL")?;
    let secret = required("RW_SECRET")?;
    let window = match std::env::var("RW_WINDOW_MS") {
        Ok(v) => Duration::from_millis(v.parse().map_err(|e| format!("RW_WINDOW_MS: {e}"))?),
        Err(_) => Duration::from_secs(5),
    };
    let addr = example_support::listen_addr(3000)?;

    let pools = Pools::connect_lazy(&primary, &replica, Duration::from_secs(2))?;
    migrate(&pools.primary).await?;
    migrate(&pools.replica).await?;
    let layer = ReadWriteLayer::new(secret.as_bytes())
        .map_err(|e| format!("RW_SECRET: {e}"))?
        .window(window);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // No `/readyz` here for a load balancer to watch: no pre-stop delay. SIGTERM or Ctrl-C
    // drains through the serve loop, which closes no connection a client may be sending on.
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::ZERO;
        config
    });
    shutdown.listen_for_signals();
    let serve = shutdown.serve(listener, app(pools.clone(), layer));
    let report = shutdown.run(serve.into_future()).await;
    pools.primary.close().await;
    pools.replica.close().await;
    match report.exit_code() {
        0 => Ok(()),
        code => Err(format!("the shutdown did not finish in time (exit code {code})").into()),
    }
}
