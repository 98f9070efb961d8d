//! What a [`PressureLayer`](crate::PressureLayer) and its services share: the thresholds, the
//! counters, and the shed decision.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use tokio::time::Instant;
use tower_scale_core::{ConfigError, Refusal, retry_after_value};
use tower_scale_metrics::LagWatch;

use crate::config::PressureConfig;

/// Why a request was shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShedReason {
    /// Runtime scheduling lag above `max_lag`.
    Lag,
    /// In-flight requests above `max_in_flight`.
    InFlight,
    /// Resident memory above `max_memory_bytes`.
    Memory,
}

impl ShedReason {
    /// `lag`, `in_flight` or `memory`: the `reason` label of [`PRESSURE_SHED_TOTAL`] and the
    /// `x-shed-reason` header.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Lag => "lag",
            Self::InFlight => "in_flight",
            Self::Memory => "memory",
        }
    }
}

/// The current values and the thresholds, as
/// [`PressureLayer::snapshot`](crate::PressureLayer::snapshot) sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PressureSnapshot {
    /// Recent scheduling lag ([`LagWatch::recent_max`]), when a probe is attached.
    pub lag: Option<Duration>,
    /// Requests in flight through the layer.
    pub in_flight: usize,
    /// Resident memory at the last reading, in bytes (0 before the first reading or off Linux).
    pub memory_bytes: u64,
    /// Requests shed since the layer was built.
    pub shed_total: u64,
    /// The thresholds.
    pub config: PressureConfig,
}

/// The thresholds and counters of one layer, shared by its services.
pub(crate) struct State {
    config: PressureConfig,
    status: StatusCode,
    retry_after: HeaderValue,
    lag: Option<LagWatch>,
    in_flight: AtomicUsize,
    memory_bytes: AtomicU64,
    memory_read_at: std::sync::Mutex<Option<Instant>>,
    shed_total: AtomicU64,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Fresh counters for `config`, reading lag from `lag` when given.
    pub(crate) fn new(config: PressureConfig, lag: Option<LagWatch>) -> Result<Self, ConfigError> {
        Ok(Self {
            status: config.shed_status()?,
            retry_after: retry_after_value(config.retry_after),
            config,
            lag,
            in_flight: AtomicUsize::new(0),
            memory_bytes: AtomicU64::new(0),
            memory_read_at: std::sync::Mutex::new(None),
            shed_total: AtomicU64::new(0),
        })
    }

    pub(crate) fn config(&self) -> &PressureConfig {
        &self.config
    }

    pub(crate) fn lag(&self) -> Option<&LagWatch> {
        self.lag.as_ref()
    }

    pub(crate) fn snapshot(&self) -> PressureSnapshot {
        PressureSnapshot {
            lag: self.lag.as_ref().map(LagWatch::recent_max),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            shed_total: self.shed_total.load(Ordering::Relaxed),
            config: self.config.clone(),
        }
    }

    /// Counts a request in flight until the guard drops; returns the count with it.
    #[inline]
    pub(crate) fn enter(self: &Arc<Self>) -> (usize, InFlightGuard) {
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        (in_flight, InFlightGuard(Arc::clone(self)))
    }

    /// Why a request should be shed now, with `in_flight` requests in flight.
    pub(crate) fn pressure(&self, in_flight: usize) -> Option<ShedReason> {
        if let (Some(max), Some(watch)) = (self.config.max_lag, &self.lag)
            && watch.recent_max() > max
        {
            return Some(ShedReason::Lag);
        }
        if let Some(max) = self.config.max_in_flight
            && in_flight > max
        {
            return Some(ShedReason::InFlight);
        }
        if let Some(max) = self.config.max_memory_bytes
            && self.memory() > max
        {
            return Some(ShedReason::Memory);
        }
        None
    }

    /// Counts a shed request.
    pub(crate) fn shed(&self, reason: ShedReason) {
        self.shed_total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::names::PRESSURE_SHED_TOTAL.name, "reason" => reason.as_str())
            .increment(1);
    }

    /// The refusal of a request shed for `reason`.
    pub(crate) fn refusal<'a>(&self, reason: &'a ShedReason) -> Refusal<'a> {
        Refusal::new(self.status, "overloaded")
            .retry_after(Some(self.config.retry_after))
            .detail(reason)
    }

    /// The `Retry-After` of a shed response.
    pub(crate) fn retry_after(&self) -> &HeaderValue {
        &self.retry_after
    }

    fn memory(&self) -> u64 {
        let now = Instant::now();
        let due = match self.memory_read_at.try_lock() {
            Ok(mut at) => {
                let due = at.is_none_or(|t| now.duration_since(t) >= self.config.memory_interval);
                if due {
                    *at = Some(now);
                }
                due
            }
            Err(_) => false, // another request is reading it
        };
        if due && let Some(bytes) = resident_memory() {
            self.memory_bytes.store(bytes, Ordering::Relaxed);
        }
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Whether `path` is always served.
    pub(crate) fn exempt(&self, path: &str) -> bool {
        self.config.exempt_paths.iter().any(|p| p == path)
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A request in flight through the layer, counted until dropped.
pub(crate) struct InFlightGuard(Arc<State>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
