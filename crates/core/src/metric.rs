//! The description of one metric, so that each crate lists what it emits in one place and the
//! documentation can be checked against it.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A monotonically increasing count (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations (buckets, sum, count).
    Histogram,
}

impl MetricKind {
    /// The kind as Prometheus writes it in `# TYPE` lines: `counter`, `gauge`, `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric a crate emits: its name, kind, label keys and meaning.
///
/// Each crate that emits metrics lists them in a public `names` module as constants and in one
/// slice, `names::METRICS`; the [metrics guide](https://github.com/tower-scale/tower-scale/blob/main/docs/metrics.md) is checked against those slices by a test.
///
/// ```
/// use tower_scale_core::{MetricDef, MetricKind};
///
/// pub const JOBS_DONE_TOTAL: MetricDef = MetricDef::new(
///     "jobs_done_total",
///     MetricKind::Counter,
///     &["outcome"],
///     "Jobs finished, by outcome (`ok`, `error`).",
/// );
/// assert_eq!(JOBS_DONE_TOTAL.name, "jobs_done_total");
/// assert_eq!(JOBS_DONE_TOTAL.kind.as_str(), "counter");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MetricDef {
    /// The metric's name (Prometheus conventions: `snake_case`, unit suffix, `_total` on
    /// counters).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The label keys, each with a bounded set of values.
    pub labels: &'static [&'static str],
    /// One sentence for operators: what it counts or measures.
    pub help: &'static str,
}

impl MetricDef {
    /// Describes a metric.
    pub const fn new(
        name: &'static str,
        kind: MetricKind,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            labels,
            help,
        }
    }
}
