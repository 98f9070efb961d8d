use std::sync::Arc;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::names;

/// Default latency buckets, in seconds: 0.5 ms to 10 s. Buckets (not summaries) so that the
/// p95/p99 of a whole fleet is computed by summing the instances' bucket counters.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics that get the latency buckets: every name ending so.
const LATENCY_SUFFIX: &str = "_duration_seconds";

/// Default scheduling-lag buckets, in seconds: 100 µs to 1 s.
pub const DEFAULT_LAG_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// An error building the Prometheus recorder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bucket bounds were empty.
    #[error("invalid buckets for {metric}: {reason}")]
    Buckets {
        /// The metric the buckets were for.
        metric: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A global recorder was already installed.
    #[error("a global metrics recorder is already installed: {0}")]
    AlreadyInstalled(String),
}

/// The Prometheus exporter, configured for tower-scale's metrics: histograms with buckets for
/// latency and scheduling lag, rendered by [`PrometheusMetrics::render`] for a `/metrics` route.
///
/// ```
/// use tower_scale_metrics::PrometheusMetrics;
///
/// // In an application: `PrometheusMetrics::builder().install()?` once at start.
/// let (recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("jobs_total").increment(3);
/// });
/// assert!(metrics.render().contains("jobs_total 3"));
/// ```
///
/// Installed as the global recorder ([`PrometheusMetricsBuilder::install`]), each render also
/// collects the process metrics ([`names::PROCESS_METRICS`]: CPU seconds, resident and virtual
/// memory, open and maximum file descriptors, threads, start time) through `metrics-process`.
#[derive(Clone, Debug)]
pub struct PrometheusMetrics {
    handle: Arc<PrometheusHandle>,
    /// Set when the recorder is the global one, which the collector reports to.
    process: Option<metrics_process::Collector>,
}

/// Builder of [`PrometheusMetrics`].
#[derive(Debug)]
#[must_use]
pub struct PrometheusMetricsBuilder {
    latency_buckets: Vec<f64>,
    lag_buckets: Vec<f64>,
    global_labels: Vec<(String, String)>,
}

impl PrometheusMetrics {
    /// A builder with the default buckets.
    pub fn builder() -> PrometheusMetricsBuilder {
        PrometheusMetricsBuilder {
            latency_buckets: DEFAULT_LATENCY_BUCKETS.to_vec(),
            lag_buckets: DEFAULT_LAG_BUCKETS.to_vec(),
            global_labels: Vec::new(),
        }
    }

    /// Installs the global recorder with the default buckets.
    pub fn install() -> Result<Self, Error> {
        Self::builder().install()
    }

    /// The exposition text of every metric (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        if let Some(process) = &self.process {
            process.collect();
        }
        self.handle.render()
    }

    /// An axum handler for `GET /metrics`:
    /// `Router::new().route("/metrics", get(metrics.handler()))`.
    pub fn handler(
        &self,
    ) -> impl Fn() -> std::future::Ready<([(http::HeaderName, &'static str); 1], String)>
    + Clone
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        move || {
            std::future::ready((
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                this.render(),
            ))
        }
    }
}

impl PrometheusMetricsBuilder {
    /// Buckets of the latency histograms (`http_request_duration_seconds`,
    /// `redis_command_duration_seconds`: every `*_duration_seconds`), in seconds, increasing.
    pub fn latency_buckets(mut self, buckets: &[f64]) -> Self {
        self.latency_buckets = buckets.to_vec();
        self
    }

    /// Buckets of `tokio_scheduling_lag_seconds`, in seconds, increasing.
    pub fn lag_buckets(mut self, buckets: &[f64]) -> Self {
        self.lag_buckets = buckets.to_vec();
        self
    }

    /// A label added to every metric (e.g. `instance`, `service`).
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((key.into(), value.into()));
        self
    }

    /// Builds the recorder without installing it (for tests, or to compose recorders).
    pub fn build(self) -> Result<(PrometheusRecorder, PrometheusMetrics), Error> {
        let mut builder = PrometheusBuilder::new();
        // Every `*_duration_seconds` histogram of every crate (HTTP requests, Redis commands,
        // ...) gets the latency buckets; the scheduling lag its own.
        for (metric, matcher, buckets) in [
            (
                names::HTTP_REQUEST_DURATION_SECONDS.name,
                Matcher::Suffix(LATENCY_SUFFIX.to_owned()),
                &self.latency_buckets,
            ),
            (
                names::RUNTIME_SCHEDULING_LAG_SECONDS.name,
                Matcher::Full(names::RUNTIME_SCHEDULING_LAG_SECONDS.name.to_owned()),
                &self.lag_buckets,
            ),
        ] {
            check_buckets(metric, buckets)?;
            builder = builder
                .set_buckets_for_metric(matcher, buckets)
                .map_err(|e| Error::Buckets {
                    metric,
                    reason: e.to_string(),
                })?;
        }
        for (k, v) in self.global_labels {
            builder = builder.add_global_label(k, v);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Ok((
            recorder,
            PrometheusMetrics {
                handle: Arc::new(handle),
                process: None,
            },
        ))
    }

    /// Builds the recorder and installs it as the global `metrics` recorder.
    pub fn install(self) -> Result<PrometheusMetrics, Error> {
        let (recorder, mut metrics) = self.build()?;
        metrics::set_global_recorder(recorder)
            .map_err(|e| Error::AlreadyInstalled(e.to_string()))?;
        let process = metrics_process::Collector::default();
        process.describe();
        metrics.process = Some(process);
        Ok(metrics)
    }
}

fn check_buckets(metric: &'static str, buckets: &[f64]) -> Result<(), Error> {
    let reason = if buckets.is_empty() {
        "no bucket bounds".to_owned()
    } else if buckets.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        "bounds must be finite and positive".to_owned()
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        "bounds must be strictly increasing".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::Buckets { metric, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_buckets_are_named() {
        for (buckets, needle) in [
            (&[][..], "no bucket"),
            (&[0.1, 0.05][..], "increasing"),
            (&[f64::NAN][..], "finite"),
        ] {
            let err = PrometheusMetrics::builder()
                .latency_buckets(buckets)
                .build()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && err.contains("http_request_duration"),
                "{err}"
            );
        }
    }
}
