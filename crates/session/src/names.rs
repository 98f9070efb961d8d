//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_session::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "session_operations_total"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of session store operations; labels `op` (`load`, `save`, `destroy`) and
/// `result` (`ok`, `error`). Requests that do not touch the session count nothing.
pub const SESSION_OPERATIONS_TOTAL: MetricDef = MetricDef::new(
    "session_operations_total",
    MetricKind::Counter,
    &["op", "result"],
    "Session store operations, by op (`load`, `save`, `destroy`) and result (`ok`, `error`).",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[SESSION_OPERATIONS_TOTAL];
