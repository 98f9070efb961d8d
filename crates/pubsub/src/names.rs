//! Every metric this crate emits through the [`metrics`] facade: names, kinds, labels and what each
//! counts. Label values are bounded sets.
//!
//! ```
//! use tower_scale_pubsub::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "pubsub_published_total"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of messages published by this instance; label `delivery` (`pubsub`, `stream`).
pub const PUBSUB_PUBLISHED_TOTAL: MetricDef = MetricDef::new(
    "pubsub_published_total",
    MetricKind::Counter,
    &["delivery"],
    "Messages published by this instance, by delivery (`pubsub`, `stream`).",
);

/// Counter of messages dropped for slow subscribers (the sum of
/// [`Event::Lagged`](crate::Event::Lagged) counts).
pub const PUBSUB_LAGGED_TOTAL: MetricDef = MetricDef::new(
    "pubsub_lagged_total",
    MetricKind::Counter,
    &[],
    "Messages dropped for slow subscribers.",
);

/// Counter of reconnections after which subscribers got
/// [`Event::Interrupted`](crate::Event::Interrupted); label `delivery`.
pub const PUBSUB_INTERRUPTIONS_TOTAL: MetricDef = MetricDef::new(
    "pubsub_interruptions_total",
    MetricKind::Counter,
    &["delivery"],
    "Reconnections after which subscribers were told of a gap, by delivery.",
);

/// Gauge: 1 while the subscriber (`delivery="pubsub"`) or stream reader (`delivery="stream"`)
/// connection is up, 0 while it reconnects.
pub const PUBSUB_CONNECTED: MetricDef = MetricDef::new(
    "pubsub_connected",
    MetricKind::Gauge,
    &["delivery"],
    "1 while the subscriber or stream reader connection is up, 0 while it reconnects.",
);

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[
    PUBSUB_PUBLISHED_TOTAL,
    PUBSUB_LAGGED_TOTAL,
    PUBSUB_INTERRUPTIONS_TOTAL,
    PUBSUB_CONNECTED,
];
