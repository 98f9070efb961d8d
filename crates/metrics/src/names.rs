//! The metrics this crate emits (HTTP requests, the runtime probe, the process), each a
//! [`MetricDef`]: name, kind, labels and meaning.
//!
//! Names follow Prometheus conventions: `snake_case`, a unit suffix (`_seconds`, `_bytes`), and
//! `_total` on counters. Labels are always bounded sets (routes are matched paths, methods are
//! the standard nine plus `OTHER`, statuses are classes). Every other crate lists its own
//! metrics in its `names` module (`tower_scale_redis::names`, `tower_scale_breaker::names`, …);
//! `tower_scale::metrics_catalog()` collects them all.
//!
//! ```
//! use tower_scale_metrics::names;
//!
//! assert_eq!(names::HTTP_REQUESTS_TOTAL.labels, ["method", "route", "status"]);
//! assert!(names::METRICS.iter().any(|m| m.name == "process_resident_memory_bytes"));
//! ```

use tower_scale_core::{MetricDef, MetricKind};

/// Counter of finished HTTP requests; labels `method`, `route`, `status`.
pub const HTTP_REQUESTS_TOTAL: MetricDef = MetricDef::new(
    "http_requests_total",
    MetricKind::Counter,
    &["method", "route", "status"],
    "Finished HTTP requests, by method, route and status class.",
);

/// Histogram of HTTP request latency in seconds (call to response head); labels `method`,
/// `route`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: MetricDef = MetricDef::new(
    "http_request_duration_seconds",
    MetricKind::Histogram,
    &["method", "route", "status"],
    "HTTP request latency in seconds, call to response head.",
);

/// Gauge of HTTP requests in flight; labels `method`, `route`.
pub const HTTP_REQUESTS_IN_FLIGHT: MetricDef = MetricDef::new(
    "http_requests_in_flight",
    MetricKind::Gauge,
    &["method", "route"],
    "HTTP requests in flight.",
);

/// Histogram of how late the runtime probe's timer woke up, in seconds: the scheduling lag of
/// the tokio runtime (Node.js calls it event-loop lag).
pub const RUNTIME_SCHEDULING_LAG_SECONDS: MetricDef = MetricDef::new(
    "tokio_scheduling_lag_seconds",
    MetricKind::Histogram,
    &[],
    "How late the runtime probe's timer woke up, in seconds.",
);

/// Gauge of the last measured scheduling lag, in seconds.
pub const RUNTIME_SCHEDULING_LAG_LAST_SECONDS: MetricDef = MetricDef::new(
    "tokio_scheduling_lag_last_seconds",
    MetricKind::Gauge,
    &[],
    "The last measured scheduling lag, in seconds.",
);

/// Gauge of the runtime's worker threads.
pub const RUNTIME_WORKERS: MetricDef = MetricDef::new(
    "tokio_workers",
    MetricKind::Gauge,
    &[],
    "The runtime's worker threads.",
);

/// Gauge of the runtime's alive tasks.
pub const RUNTIME_ALIVE_TASKS: MetricDef = MetricDef::new(
    "tokio_alive_tasks",
    MetricKind::Gauge,
    &[],
    "The runtime's alive tasks.",
);

/// Gauge of the tasks waiting in the runtime's global queue.
pub const RUNTIME_GLOBAL_QUEUE_DEPTH: MetricDef = MetricDef::new(
    "tokio_global_queue_depth",
    MetricKind::Gauge,
    &[],
    "Tasks waiting in the runtime's global queue.",
);

/// Counter of the process's user and system CPU time, in seconds (collected at each scrape).
pub const PROCESS_CPU_SECONDS_TOTAL: MetricDef = MetricDef::new(
    "process_cpu_seconds_total",
    MetricKind::Counter,
    &[],
    "User and system CPU time of the process, in seconds.",
);

/// Gauge of the process's resident memory, in bytes (collected at each scrape).
pub const PROCESS_RESIDENT_MEMORY_BYTES: MetricDef = MetricDef::new(
    "process_resident_memory_bytes",
    MetricKind::Gauge,
    &[],
    "Resident memory of the process, in bytes.",
);

/// Gauge of the process's virtual memory, in bytes (collected at each scrape).
pub const PROCESS_VIRTUAL_MEMORY_BYTES: MetricDef = MetricDef::new(
    "process_virtual_memory_bytes",
    MetricKind::Gauge,
    &[],
    "Virtual memory of the process, in bytes.",
);

/// Gauge of the process's limit of virtual memory, in bytes.
pub const PROCESS_VIRTUAL_MEMORY_MAX_BYTES: MetricDef = MetricDef::new(
    "process_virtual_memory_max_bytes",
    MetricKind::Gauge,
    &[],
    "The process's limit of virtual memory, in bytes.",
);

/// Gauge of the process's open file descriptors (collected at each scrape).
pub const PROCESS_OPEN_FDS: MetricDef = MetricDef::new(
    "process_open_fds",
    MetricKind::Gauge,
    &[],
    "Open file descriptors of the process.",
);

/// Gauge of the process's limit of open file descriptors.
pub const PROCESS_MAX_FDS: MetricDef = MetricDef::new(
    "process_max_fds",
    MetricKind::Gauge,
    &[],
    "The process's limit of open file descriptors.",
);

/// Gauge of the process's threads.
pub const PROCESS_THREADS: MetricDef = MetricDef::new(
    "process_threads",
    MetricKind::Gauge,
    &[],
    "Threads of the process.",
);

/// Gauge of the process's start time, in seconds since the Unix epoch.
pub const PROCESS_START_TIME_SECONDS: MetricDef = MetricDef::new(
    "process_start_time_seconds",
    MetricKind::Gauge,
    &[],
    "Start time of the process, in seconds since the Unix epoch.",
);

/// The process metrics, collected at each render of [`PrometheusMetrics`](crate::PrometheusMetrics).
pub const PROCESS_METRICS: &[MetricDef] = &[
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_MAX_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_THREADS,
    PROCESS_START_TIME_SECONDS,
];

/// Every metric this crate emits.
pub const METRICS: &[MetricDef] = &[
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT,
    RUNTIME_SCHEDULING_LAG_SECONDS,
    RUNTIME_SCHEDULING_LAG_LAST_SECONDS,
    RUNTIME_WORKERS,
    RUNTIME_ALIVE_TASKS,
    RUNTIME_GLOBAL_QUEUE_DEPTH,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_MAX_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_THREADS,
    PROCESS_START_TIME_SECONDS,
];
