//! The worker of example-jobs. Run with
//!
//! ```not_rust
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p example-jobs --bin jobs-worker
//! ```
//!
//! On SIGTERM (or Ctrl-C) it takes no new job, lets the jobs in progress finish within
//! `JOBS_DRAIN_TIMEOUT_SECS`, and exits 0; past the deadline it exits 1 and the unfinished jobs
//! go back to the queue (another worker picks them up once this one is seen dead). A second
//! signal exits at once (130).

use std::process::ExitCode;

use example_jobs::{Settings, StatusStore, WorkerDeps, run_worker};
use tower_scale_offload::Offload;
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
    let deps = WorkerDeps {
        // One thread per job slot: a job's frames run one after the other.
        offload: Offload::builder()
            .threads(settings.concurrency)
            .queue(settings.concurrency)
            .build()?,
        statuses: StatusStore::new(RedisBackend::new(redis)?),
        retry: settings.retry,
    };
    // No load balancer in front of a worker: no pre-stop delay. The outer deadline leaves the
    // queue's own drain deadline (`drain_timeout`) room to finish first.
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = std::time::Duration::ZERO;
        config.drain_timeout = settings.drain_timeout + std::time::Duration::from_secs(5);
        config.tasks_timeout = std::time::Duration::from_secs(5);
        config
    });
    shutdown.listen_for_signals();
    tracing::info!(
        concurrency = settings.concurrency,
        retry = ?settings.retry,
        "jobs-worker started"
    );
    let report = run_worker(&settings, deps, &shutdown).await?;
    tracing::info!(?report, "jobs-worker exiting");
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
