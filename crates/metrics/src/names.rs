//! The names of every metric tower-scale emits, in one place so dashboards and the crates agree.
//!
//! Names follow Prometheus conventions: `snake_case`, a unit suffix (`_seconds`, `_bytes`), and
//! `_total` on counters. Labels are always bounded sets (routes are matched paths, methods are
//! the standard nine plus `OTHER`, statuses are classes).

/// Counter of finished HTTP requests; labels `method`, `route`, `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Histogram of HTTP request latency in seconds (call to response head); labels `method`,
/// `route`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// Gauge of HTTP requests in flight; labels `method`, `route`.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";

/// Histogram of how late the runtime probe's timer woke up, in seconds: the scheduling lag of
/// the tokio runtime (Node.js calls it event-loop lag).
pub const RUNTIME_SCHEDULING_LAG_SECONDS: &str = "tokio_scheduling_lag_seconds";
/// Gauge of the last measured scheduling lag, in seconds.
pub const RUNTIME_SCHEDULING_LAG_LAST_SECONDS: &str = "tokio_scheduling_lag_last_seconds";
/// Gauge of the runtime's worker threads.
pub const RUNTIME_WORKERS: &str = "tokio_workers";
/// Gauge of the runtime's alive tasks.
pub const RUNTIME_ALIVE_TASKS: &str = "tokio_alive_tasks";
/// Gauge of the tasks waiting in the runtime's global queue.
pub const RUNTIME_GLOBAL_QUEUE_DEPTH: &str = "tokio_global_queue_depth";
