//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_ratelimit::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "ratelimit_decisions_total"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of rate-limit decisions; labels `policy` (the policy's name) and `decision`: `allowed`,
/// `rejected`, `store_error` (the store failed, fail-open or fail-closed), `fallback_allowed`,
/// `fallback_rejected` (decided by the in-memory fallback while the store is down).
pub const RATELIMIT_DECISIONS_TOTAL: MetricDef = MetricDef::new(
    "ratelimit_decisions_total",
    MetricKind::Counter,
    &["policy", "decision"],
    "Rate-limit decisions, by policy and decision (`allowed`, `rejected`, `store_error`, `fallback_allowed`, `fallback_rejected`).",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[RATELIMIT_DECISIONS_TOTAL];
