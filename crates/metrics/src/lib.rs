//! Observability you can scale by: Prometheus metrics for tower/axum services running as many
//! instances.
//!
//! # Overview
//!
//! - [`MetricsLayer`]: requests total, in flight, and latency as real histograms (buckets)
//!   labelled by method, matched route (axum's `MatchedPath`, never the raw path) and status
//!   class. Histogram buckets add up across instances, so a fleet's p95/p99 is one PromQL
//!   query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))`.
//! - [`RuntimeProbe`]: the tokio runtime's scheduling lag (event-loop lag) on the stable,
//!   multi-threaded runtime, plus workers, alive tasks and global queue depth.
//! - [`PrometheusMetrics`]: the metrics-exporter-prometheus recorder with tower-scale's
//!   buckets, and a `/metrics` handler.
//! - [`names`]: every metric name tower-scale emits.
//!
//! # Example server
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_scale_metrics::{MetricsLayer, PrometheusMetrics, RuntimeProbe};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = PrometheusMetrics::install()?;
//! let _probe = RuntimeProbe::new().spawn();
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(MetricsLayer::new())
//!     .route("/metrics", get(metrics.handler()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Checked example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt;
//! use tower_scale_metrics::{MetricsLayer, PrometheusMetrics};
//!
//! let (recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
//! let _guard = metrics::set_default_local_recorder(&recorder);
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(MetricsLayer::new());
//! app.oneshot(Request::get("/users/7").body(Body::empty()).unwrap()).await.unwrap();
//! let text = metrics.render();
//! assert!(text.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="2xx"} 1"#));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

#[cfg(feature = "exporter")]
mod exporter;
#[cfg(feature = "axum")]
mod future;
#[cfg(feature = "axum")]
mod layer;
pub mod names;
#[cfg(feature = "axum")]
mod routes;
mod runtime;
#[cfg(feature = "axum")]
mod service;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
mod trace_context;

#[cfg(feature = "exporter")]
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
#[doc(inline)]
pub use self::exporter::{
    DEFAULT_LAG_BUCKETS, DEFAULT_LATENCY_BUCKETS, Error, PrometheusMetrics,
    PrometheusMetricsBuilder,
};
#[doc(inline)]
pub use self::runtime::{LagWatch, RuntimeProbe, RuntimeProbeHandle};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[doc(inline)]
pub use self::{
    future::ResponseFuture,
    layer::{MetricsLayer, OTHER_ROUTE, UNMATCHED_ROUTE},
    service::Metrics,
};

#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use self::trace_context::{
    TraceContext, TraceContextFuture, TraceContextLayer, inject_context,
};

pub use metrics;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
