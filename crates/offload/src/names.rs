//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_offload::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "pressure_shed_total"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of requests shed by [`PressureLayer`](crate::PressureLayer); label `reason`: `lag`,
/// `in_flight`, `memory`.
pub const PRESSURE_SHED_TOTAL: MetricDef = MetricDef::new(
    "pressure_shed_total",
    MetricKind::Counter,
    &["reason"],
    "Requests shed under pressure, by reason (`lag`, `in_flight`, `memory`).",
);

/// Counter of jobs rejected because the pool and its queue were full.
pub const OFFLOAD_REJECTED_TOTAL: MetricDef = MetricDef::new(
    "offload_rejected_total",
    MetricKind::Counter,
    &[],
    "Offload jobs rejected because the pool and its queue were full.",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[PRESSURE_SHED_TOTAL, OFFLOAD_REJECTED_TOTAL];
