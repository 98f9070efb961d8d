//! Run with
//!
//! ```not_rust
//! cargo run -p example-chat
//! ```
//!
//! and open <http://127.0.0.1:3000>. As several instances sharing one Redis:
//!
//! ```not_rust
//! export REDIS_URL=redis://127.0.0.1:6379
//! PORT=3001 cargo run -p example-chat &
//! PORT=3002 cargo run -p example-chat &
//! ```
//!
//! Settings: `HOST` (default `127.0.0.1`) and `PORT` (default 3000), `REDIS_URL` and the other variables of
//! `RedisConfig::from_env`, `CHAT_SECRET` (optional: signs the session cookie; at least 32
//! bytes, the same on every instance), `CHAT_DELIVERY` (`stream`,
//! the default, or `pub_sub`), `CHAT_RATE` (messages per second per user, default 5).

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use example_chat::{Chat, ChatConfig};
use tower_scale_metrics::PrometheusMetrics;
use tower_scale_pubsub::Delivery;
use tower_scale_ratelimit::Quota;
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut config = ChatConfig::default();
    if let Some(redis) = RedisConfig::from_env()? {
        config.redis = Some(RedisBackend::new(redis)?);
    }
    // Optional: sign session cookies (forged ids are then refused before any Redis call).
    // Every instance needs the same secret, of at least 32 bytes.
    if let Some(secret) = env("CHAT_SECRET") {
        config.sessions.signing_keys = vec![secret];
    }
    if let Some(delivery) = env("CHAT_DELIVERY") {
        config.delivery = match delivery.as_str() {
            "stream" => Delivery::Stream,
            "pub_sub" | "pubsub" => Delivery::PubSub,
            other => {
                return Err(format!("CHAT_DELIVERY={other:?}: expected stream or pub_sub").into());
            }
        };
    }
    if let Some(rate) = env("CHAT_RATE") {
        let n: u32 = rate
            .parse()
            .map_err(|e| format!("CHAT_RATE={rate:?}: {e}"))?;
        config.rate = Quota::per_second(n).burst(n.saturating_mul(2));
    }
    let addr = example_support::listen_addr(3000)?;
    let redis = config.redis.is_some();

    let metrics = PrometheusMetrics::install()?;
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = if redis {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        config
    });
    shutdown.listen_for_signals();
    let chat = Chat::new(config, shutdown.clone())?;
    let app = chat.router().route("/metrics", get(metrics.handler()));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        "chat on http://{} ({})",
        listener.local_addr()?,
        if redis { "Redis" } else { "in memory" }
    );
    let serve = shutdown.serve(listener, app);
    let report = shutdown.run(serve.into_future()).await;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
