use tower_scale_breaker::SharedState;
use tower_scale_core::{BoxFuture, SystemClock};

use crate::RedisBackend;

/// Shares circuit breakers' open periods across instances through Redis
/// (`<prefix>:breaker:<name>`, expiring with the open period), for
/// [`tower_scale_breaker::SharedBreaker`].
///
/// ```no_run
/// use std::time::Duration;
/// use tower_scale_breaker::{BreakerConfig, CircuitBreaker, SharedBreaker};
/// use tower_scale_redis::{RedisBackend, RedisBreakerState, RedisConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let payments = CircuitBreaker::named("payments", BreakerConfig::default())?;
/// // Every instance opens when one of them does; each still decides alone if Redis is down.
/// let _sharing = SharedBreaker::spawn(
///     &payments,
///     RedisBreakerState::new(backend),
///     Duration::from_millis(500),
/// );
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisBreakerState {
    backend: RedisBackend,
}

impl RedisBreakerState {
    /// Shares breakers through `backend`.
    pub fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }
}

impl SharedState for RedisBreakerState {
    fn publish_open(&self, name: &str, until_ms: u64) -> BoxFuture<'_, Result<(), String>> {
        let key = self.backend.keys().key("breaker", name);
        Box::pin(async move {
            let ttl = until_ms.saturating_sub(SystemClock::now_ms()).max(1);
            self.backend
                .query::<()>(redis::cmd("SET").arg(&key).arg(until_ms).arg("PX").arg(ttl))
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn open_until(&self, name: &str) -> BoxFuture<'_, Result<Option<u64>, String>> {
        let key = self.backend.keys().key("breaker", name);
        Box::pin(async move {
            let value: Option<String> = self
                .backend
                .query(redis::cmd("GET").arg(&key))
                .await
                .map_err(|e| e.to_string())?;
            // Garbage in the key is reported, not trusted.
            value
                .map(|v| v.parse::<u64>().map_err(|e| format!("{key}: {v:?}: {e}")))
                .transpose()
        })
    }
}
