//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_shutdown::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "shutdown_phase"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Gauge of the graceful-shutdown phase: 0 running, 1 not ready, 2 draining, 3 cancelling
/// tasks, 4 cleanup, 5 done.
pub const SHUTDOWN_PHASE: MetricDef = MetricDef::new(
    "shutdown_phase",
    MetricKind::Gauge,
    &[],
    "Graceful-shutdown phase: 0 running, 1 not ready, 2 draining, 3 cancelling tasks, 4 cleanup, 5 done.",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[SHUTDOWN_PHASE];
