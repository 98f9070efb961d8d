//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_redis::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "redis_command_duration_seconds"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Histogram of Redis command latency in seconds, timeouts included.
pub const REDIS_COMMAND_DURATION_SECONDS: MetricDef = MetricDef::new(
    "redis_command_duration_seconds",
    MetricKind::Histogram,
    &[],
    "Redis command latency in seconds, timeouts included.",
);

/// Counter of failed Redis commands; label `kind`: `timeout`, `connection`, `server`, `pool`,
/// `circuit_open`.
pub const REDIS_COMMAND_ERRORS_TOTAL: MetricDef = MetricDef::new(
    "redis_command_errors_total",
    MetricKind::Counter,
    &["kind"],
    "Failed Redis commands, by kind (`timeout`, `connection`, `server`, `pool`, `circuit_open`).",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[REDIS_COMMAND_DURATION_SECONDS, REDIS_COMMAND_ERRORS_TOTAL];
