//! The serde configs: [`OffloadConfig`] (with [`PoolKind`]) and [`PressureConfig`], and their
//! validation.

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tower_scale_core::ConfigError;

/// Which threads run offloaded work.
///
/// Both are bounded to [`OffloadBuilder::threads`](crate::OffloadBuilder::threads) concurrent jobs; the
/// [performance tables](https://github.com/tower-scale/tower-scale/blob/main/docs/performance.md) compare them. The default is [`PoolKind::Rayon`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// A dedicated rayon thread pool of `threads` threads: no thread is created per job, and
    /// the pool's threads never compete with tokio's blocking I/O.
    #[default]
    Rayon,
    /// tokio's blocking pool, with at most `threads` jobs running at once.
    TokioBlocking,
}

/// Configuration of an [`Offload`](crate::Offload) pool (serde, for config files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OffloadConfig {
    /// Pool kind. Default rayon.
    pub pool: PoolKind,
    /// Jobs running at once. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Jobs allowed to wait for a thread; past `threads + queue` jobs, [`Offload::run`](crate::Offload::run) fails
    /// at once with [`OffloadError::Overloaded`](crate::OffloadError::Overloaded). Default 64 per thread.
    pub queue: Option<usize>,
    /// The `Retry-After` suggested to rejected callers. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            pool: PoolKind::Rayon,
            threads: None,
            queue: None,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Thresholds of [`PressureLayer`](crate::PressureLayer) (serde, for config files). A threshold left `None` is not
/// checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PressureConfig {
    /// Shed while the runtime probe's recent scheduling lag
    /// ([`LagWatch::recent_max`](tower_scale_metrics::LagWatch::recent_max): the largest lag of the probe's last window, 1 s by default)
    /// is above this. Needs a probe ([`PressureLayer::lag_from`](crate::PressureLayer::lag_from)). Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub max_lag: Option<Duration>,
    /// Shed while more requests than this are in flight through the layer. Default none.
    pub max_in_flight: Option<usize>,
    /// Shed while the process's resident memory is above this many bytes (Linux:
    /// `/proc/self/statm`). Default none.
    pub max_memory_bytes: Option<u64>,
    /// How often resident memory is read at most. Default 250 ms.
    #[serde(with = "humantime_serde")]
    pub memory_interval: Duration,
    /// `Retry-After` of a shed response. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Status of a shed response, a 4xx or 5xx (another is a [`ConfigError`]). Default 503.
    pub status: u16,
    /// Paths always served (health checks, metrics). Default `/livez`, `/readyz`, `/metrics`.
    pub exempt_paths: Vec<String>,
}

impl Default for PressureConfig {
    fn default() -> Self {
        Self {
            max_lag: Some(Duration::from_millis(200)),
            max_in_flight: None,
            max_memory_bytes: None,
            memory_interval: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
            status: 503,
            exempt_paths: ["/livez", "/readyz", "/metrics"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

impl PressureConfig {
    /// The status of a shed response: a 4xx or 5xx, else an error naming `status`.
    pub(crate) fn shed_status(&self) -> Result<StatusCode, ConfigError> {
        StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| {
                ConfigError::new(
                    "status",
                    format!("{} is not a 4xx or 5xx status", self.status),
                )
            })
    }
}
