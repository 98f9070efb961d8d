//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_breaker::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "breaker_state"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Gauge of a breaker's state, label `breaker`: 0 closed, 1 half-open, 2 open, 3 forced open,
/// 4 disabled.
pub const BREAKER_STATE: MetricDef = MetricDef::new(
    "breaker_state",
    MetricKind::Gauge,
    &["breaker"],
    "A circuit breaker's state: 0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled.",
);

/// Counter of breaker transitions; labels `breaker` (a keyed group's name, never a key), `from`,
/// `to`.
pub const BREAKER_TRANSITIONS_TOTAL: MetricDef = MetricDef::new(
    "breaker_transitions_total",
    MetricKind::Counter,
    &["breaker", "from", "to"],
    "Circuit-breaker state transitions, by breaker (a keyed group's name, never a key), from and to.",
);

/// Gauge of a [`KeyedBreakers`](crate::KeyedBreakers) group: labels `breaker` (the group's
/// name) and `state`; the value is the number of its live breakers in that state.
pub const BREAKER_KEYS: MetricDef = MetricDef::new(
    "breaker_keys",
    MetricKind::Gauge,
    &["breaker", "state"],
    "Live breakers of a keyed group in each state.",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL, BREAKER_KEYS];
