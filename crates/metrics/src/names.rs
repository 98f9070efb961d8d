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

/// Histogram of Redis command latency in seconds (`tower-scale-redis`).
pub const REDIS_COMMAND_DURATION_SECONDS: &str = "redis_command_duration_seconds";
/// Counter of failed Redis commands, label `kind` (`tower-scale-redis`).
pub const REDIS_COMMAND_ERRORS_TOTAL: &str = "redis_command_errors_total";

/// Counter of requests `ResponseCacheLayer` answered, label `result`: `hit`, `stale`, `miss`,
/// `bypass` (`tower-scale-cache`; the typed `Cache` API counts none).
pub const CACHE_REQUESTS_TOTAL: &str = "cache_requests_total";
/// Counter of rate-limit decisions, labels `policy` and `decision`: `allowed`, `rejected`
/// (`tower-scale-ratelimit`).
pub const RATELIMIT_DECISIONS_TOTAL: &str = "ratelimit_decisions_total";
/// Gauge of a circuit breaker's state, label `breaker`: 0 closed, 1 half-open, 2 open,
/// 3 forced open, 4 disabled (`tower-scale-breaker`).
pub const BREAKER_STATE: &str = "breaker_state";
/// Counter of circuit-breaker transitions, labels `breaker`, `from`, `to`
/// (`tower-scale-breaker`).
pub const BREAKER_TRANSITIONS_TOTAL: &str = "breaker_transitions_total";
/// Gauge of a keyed breaker group's live breakers per state, labels `breaker` (the group's
/// name, never a key) and `state` (`tower-scale-breaker`).
pub const BREAKER_KEYS: &str = "breaker_keys";
/// Counter of session store operations, label `op`: `load`, `save`, `destroy`, and `result`:
/// `ok`, `error` (`tower-scale-session`).
pub const SESSION_OPERATIONS_TOTAL: &str = "session_operations_total";
/// Gauge of the graceful-shutdown phase: 0 running, 1 not ready, 2 draining, 3 cancelling
/// tasks, 4 cleanup, 5 done (`tower-scale-shutdown`).
pub const SHUTDOWN_PHASE: &str = "shutdown_phase";
/// Counter of messages published and delivered, label `event`: `published`, `delivered`,
/// `lagged` (`tower-scale-pubsub`).
pub const PUBSUB_MESSAGES_TOTAL: &str = "pubsub_messages_total";
/// Counter of requests shed under pressure, label `reason` (`tower-scale-offload`).
pub const PRESSURE_SHED_TOTAL: &str = "pressure_shed_total";
/// Counter of offload jobs rejected because the pool was full (`tower-scale-offload`).
pub const OFFLOAD_REJECTED_TOTAL: &str = "offload_rejected_total";
/// Counter of read/write routing decisions, labels `target` and `reason`
/// (`tower-scale-replica`).
pub const REPLICA_ROUTES_TOTAL: &str = "replica_routes_total";
