//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_replica::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "replica_routes_total"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of routing decisions, labels `target` and `reason`.
pub const REPLICA_ROUTES_TOTAL: MetricDef = MetricDef::new(
    "replica_routes_total",
    MetricKind::Counter,
    &["target", "reason"],
    "Read/write routing decisions, by target and reason.",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[REPLICA_ROUTES_TOTAL];
