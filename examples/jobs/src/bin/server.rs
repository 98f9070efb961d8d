//! The HTTP server of example-jobs. Run with
//!
//! ```not_rust
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p example-jobs --bin jobs-server
//! ```
//!
//! (or `examples/jobs/run.sh` for Redis, the server and a worker in one command). Settings:
//! see `Settings` in the library (`HOST`, `PORT`, `REDIS_URL`, `JOBS_NAMESPACE`, ...).

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Duration;

use example_jobs::{AppState, Settings, StatusStore, app, storage};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_shutdown::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    let mut redis = RedisConfig::new(settings.redis_url.clone());
    redis.key_prefix = settings.namespace.clone();
    let state = AppState {
        storage: storage(&settings)?,
        statuses: StatusStore::new(RedisBackend::new(redis)?),
    };
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = settings.pre_stop_delay;
        config.drain_timeout = Duration::from_secs(10);
        config.tasks_timeout = Duration::from_secs(5);
        config
    });
    shutdown.listen_for_signals();
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "jobs-server listening");
    let serve = shutdown.serve(listener, app(state, &shutdown));
    let report = shutdown.run(serve.into_future()).await;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
