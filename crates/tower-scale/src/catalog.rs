//! Every metric the enabled crates emit, collected from their `names` modules.

use tower_scale_core::MetricDef;

/// The metrics of every enabled crate, each with the crate that emits it, in the order of
/// the [metrics guide](https://github.com/tower-scale/tower-scale/blob/main/docs/metrics.md). A dashboard, an alert rule or a documentation check reads this one list.
///
/// ```
/// # #[cfg(feature = "metrics")] {
/// let catalog = tower_scale::metrics_catalog();
/// assert!(catalog.iter().any(|(krate, m)| *krate == "tower-scale-metrics"
///     && m.name == "http_requests_total"));
/// # }
/// ```
pub fn metrics_catalog() -> Vec<(&'static str, MetricDef)> {
    let lists: &[(&str, &[MetricDef])] = &[
        #[cfg(feature = "metrics")]
        ("tower-scale-metrics", tower_scale_metrics::names::METRICS),
        #[cfg(feature = "redis")]
        ("tower-scale-redis", tower_scale_redis::names::METRICS),
        #[cfg(feature = "offload")]
        ("tower-scale-offload", tower_scale_offload::names::METRICS),
        #[cfg(feature = "ratelimit")]
        (
            "tower-scale-ratelimit",
            tower_scale_ratelimit::names::METRICS,
        ),
        #[cfg(feature = "breaker")]
        ("tower-scale-breaker", tower_scale_breaker::names::METRICS),
        #[cfg(feature = "session")]
        ("tower-scale-session", tower_scale_session::names::METRICS),
        #[cfg(feature = "shutdown")]
        ("tower-scale-shutdown", tower_scale_shutdown::names::METRICS),
        #[cfg(feature = "pubsub")]
        ("tower-scale-pubsub", tower_scale_pubsub::names::METRICS),
        #[cfg(feature = "replica")]
        ("tower-scale-replica", tower_scale_replica::names::METRICS),
        #[cfg(feature = "cache")]
        ("tower-scale-cache", tower_scale_cache::names::METRICS),
    ];
    lists
        .iter()
        .flat_map(|(krate, list)| list.iter().map(move |m| (*krate, *m)))
        .collect()
}
