//! [`StackBuilder`]: every configured layer built from a [`StackConfig`], with what a file
//! cannot hold (a runtime probe, a recorder) passed in or started here.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;

use crate::breaker::{BreakerLayer, CircuitBreaker};
use crate::cache::{Cache, ResponseCacheLayer};
use crate::compression::{CompressionLayer, RequestDecompressionLayer};
use crate::metrics::{LagWatch, MetricsLayer, PrometheusMetrics, RuntimeProbe};
use crate::offload::{Offload, PressureLayer};
use crate::pubsub::Broadcaster;
use crate::ratelimit::RateLimitLayer;
use crate::redis::RedisBackend;
use crate::replica::ReadWriteLayer;
use crate::session::SessionManagerLayer;
use crate::shutdown::Shutdown;

use super::config::{MetricsSection, StackConfig, StackError};
#[cfg(feature = "otel")]
pub(crate) use crate::metrics::TraceContextLayer;
/// Without `otel`, the `[tracing]` section's layer: none can be built.
#[cfg(not(feature = "otel"))]
#[derive(Clone, Copy, Debug)]
pub(crate) enum TraceContextLayer {}

#[cfg(not(feature = "otel"))]
impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = S;

    fn layer(&self, _inner: S) -> S {
        match *self {}
    }
}
use super::serve_metrics::ServeMetricsLayer;
use super::{Breakers, Stack};

/// Builds a [`Stack`] from a [`StackConfig`]; see [`Stack::builder`].
#[derive(Debug)]
#[must_use]
pub struct StackBuilder<'a> {
    config: &'a StackConfig,
    lag: Option<LagWatch>,
    prometheus: Option<PrometheusMetrics>,
}

/// The recorder the stack installed in this process, with the settings it was built from.
type Installed = (Vec<f64>, BTreeMap<String, String>, PrometheusMetrics);
static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

impl<'a> StackBuilder<'a> {
    pub(crate) fn new(config: &'a StackConfig) -> Self {
        Self {
            config,
            lag: None,
            prometheus: None,
        }
    }

    /// Reads the runtime's scheduling lag from this running probe
    /// (`RuntimeProbe::new().spawn().watch()`) instead of starting one: for `[pressure]
    /// max_lag`, `[compression.adaptive]` and `[metrics] runtime`.
    pub fn lag_from(mut self, watch: LagWatch) -> Self {
        self.lag = Some(watch);
        self
    }

    /// Serves this recorder's exposition at `[metrics] path` instead of installing one (for
    /// `recorder = false`, when the application installs its own).
    pub fn prometheus(mut self, metrics: PrometheusMetrics) -> Self {
        self.prometheus = Some(metrics);
        self
    }

    /// Builds every configured layer; no connection is opened yet.
    ///
    /// The runtime probe, when a section needs it and none was passed with
    /// [`lag_from`](Self::lag_from), is spawned on the current tokio runtime: outside one,
    /// that section's error says so.
    pub fn build(self) -> Result<Stack, StackError> {
        let config = self.config;
        let err = |section: &'static str| move |e: &dyn std::fmt::Display| config.error(section, e);
        let backend = config
            .redis
            .clone()
            .map(RedisBackend::new)
            .transpose()
            .map_err(|e| err("redis")(&e))?;
        let prometheus = match &config.metrics {
            Some(section) => {
                metrics_recorder(section, self.prometheus).map_err(|e| err("metrics")(&e))?
            }
            None => self.prometheus,
        };
        let serve_metrics = match (&config.metrics, &prometheus) {
            (Some(m), Some(p)) if m.serve => Some(ServeMetricsLayer::new(&m.path, p.clone())),
            (Some(m), None) if m.serve => {
                return Err(err("metrics")(
                    &"serve = true needs a recorder: set recorder = true, or pass one with StackBuilder::prometheus",
                ));
            }
            _ => None,
        };
        let lag = probe(config, self.lag)?;
        let trace_context = trace_context(config)?;
        let rate_limit = config
            .rate_limit
            .as_ref()
            .map(|c| match &backend {
                Some(b) => {
                    RateLimitLayer::from_config(crate::ratelimit::RedisStore::new(b.clone()), c)
                }
                None => {
                    RateLimitLayer::from_config(crate::ratelimit::MemoryStore::new(1_000_000), c)
                }
            })
            .transpose()
            .map_err(|e| err("rate_limit")(&e))?;
        let session = config
            .session
            .as_ref()
            .map(|c| match &backend {
                Some(b) => SessionManagerLayer::from_config(
                    crate::session::RedisStore::from_config(b.clone(), &c.redis)?,
                    &c.config,
                ),
                None => {
                    SessionManagerLayer::from_config(crate::session::MemoryStore::new(), &c.config)
                }
            })
            .transpose()
            .map_err(|e| err("session")(&e))?;
        let cache_l1 = backend.is_some()
            && config
                .cache
                .as_ref()
                .is_some_and(|c| c.tiers.l1_max_bytes.is_some());
        let cache = config
            .cache
            .as_ref()
            .map(|c| {
                let mut tiers = c.tiers.clone();
                let builder = match &backend {
                    Some(b) => {
                        Cache::builder(crate::cache::RedisStore::from_config(b.clone(), &c.redis))
                    }
                    None => {
                        // In memory the store is already local and single-instance: no local
                        // tier or cross-instance lock to add.
                        tiers.l1_max_bytes = None;
                        tiers.lock = None;
                        Cache::builder(crate::cache::MemoryStore::new(
                            c.memory_bytes.unwrap_or(64 * 1024 * 1024),
                        ))
                    }
                };
                let cache = builder.config(tiers).build()?;
                ResponseCacheLayer::from_config(cache, &c.response)
            })
            .transpose()
            .map_err(|e| err("cache")(&e))?;
        let compression = config
            .compression
            .as_ref()
            .map(|c| {
                let mut response = c.response.clone();
                if let Some(adaptive) = &c.adaptive {
                    response.adaptive = adaptive.clone();
                }
                let layer = CompressionLayer::from_config(&response)?;
                Ok::<_, crate::compression::ConfigError>(match (&c.adaptive, &lag) {
                    (Some(_), Some(watch)) => layer.adapt_to_lag(watch.clone()),
                    _ => layer,
                })
            })
            .transpose()
            .map_err(|e| err("compression")(&e))?;
        let pressure = config
            .pressure
            .as_ref()
            .map(|c| {
                let layer = PressureLayer::from_config(c)?;
                Ok::<_, crate::offload::ConfigError>(match (c.max_lag, &lag) {
                    (Some(_), Some(watch)) => layer.lag_from(watch.clone()),
                    _ => layer,
                })
            })
            .transpose()
            .map_err(|e| err("pressure")(&e))?;
        let decompression = match &config.decompression {
            Some(d) if d.max_bytes == 0 => {
                return Err(err("decompression")(&"max_bytes: must be at least 1"));
            }
            Some(d) => Some(RequestDecompressionLayer::new(d.max_bytes)),
            None => None,
        };
        let breakers = config
            .breaker
            .as_ref()
            .map(|section| breakers(section).map_err(|e| err("breaker")(&e)))
            .transpose()?;
        let offload = config
            .offload
            .as_ref()
            .map(Offload::from_config)
            .transpose()
            .map_err(|e| err("offload")(&e))?;
        let pubsub = config
            .pubsub
            .as_ref()
            .map(|c| {
                let builder = Broadcaster::builder().config(c.clone());
                match &backend {
                    Some(b) => builder.redis(b.clone()),
                    None => builder,
                }
                .build()
            })
            .transpose()
            .map_err(|e| err("pubsub")(&e))?;
        let replica = config
            .replica
            .as_ref()
            .map(|c| {
                Ok::<_, crate::replica::Error>(
                    ReadWriteLayer::new(c.secret.as_bytes())?
                        .window(c.window)
                        .cookie_name(c.cookie_name.clone())?
                        .secure(c.secure),
                )
            })
            .transpose()
            .map_err(|e| err("replica")(&e))?;
        Ok(Stack {
            compression,
            cache_l1,
            shutdown: config.shutdown.clone().map(Shutdown::new),
            metrics: config.metrics.as_ref().map(|_| MetricsLayer::new()),
            serve_metrics,
            trace_context,
            prometheus,
            lag,
            pressure,
            backend,
            rate_limit,
            session,
            cache,
            decompression,
            breakers,
            offload,
            pubsub,
            replica,
        })
    }
}

/// The recorder of the `[metrics]` section: the one passed in, or the process's global one,
/// installed by the first stack that asks (a process has one global recorder: later stacks
/// share it when they ask for the same buckets and labels).
fn metrics_recorder(
    section: &MetricsSection,
    given: Option<PrometheusMetrics>,
) -> Result<Option<PrometheusMetrics>, String> {
    if !section.path.starts_with('/') {
        return Err(format!("path: {:?} does not start with /", section.path));
    }
    if given.is_some() || !section.recorder {
        return Ok(given);
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((buckets, labels, metrics)) = &*installed {
        if *buckets == section.latency_buckets && *labels == section.global_labels {
            return Ok(Some(metrics.clone()));
        }
        return Err(
            "this process's recorder was installed by another stack with other \
                    latency_buckets or global_labels (a process has one global recorder)"
                .to_owned(),
        );
    }
    let mut builder = PrometheusMetrics::builder().latency_buckets(&section.latency_buckets);
    for (k, v) in &section.global_labels {
        builder = builder.global_label(k.clone(), v.clone());
    }
    let metrics = builder.install().map_err(|e| match e {
        crate::metrics::Error::AlreadyInstalled(_) => "another global metrics recorder is \
            installed: set recorder = false and pass its PrometheusMetrics with \
            StackBuilder::prometheus"
            .to_owned(),
        e => e.to_string(),
    })?;
    *installed = Some((
        section.latency_buckets.clone(),
        section.global_labels.clone(),
        metrics.clone(),
    ));
    Ok(Some(metrics))
}

/// The runtime probe's lag, when a section needs it: the one passed in, or a probe spawned on
/// the current runtime.
fn probe(config: &StackConfig, given: Option<LagWatch>) -> Result<Option<LagWatch>, StackError> {
    let needed_by = [
        (
            config
                .pressure
                .as_ref()
                .is_some_and(|p| p.max_lag.is_some()),
            "pressure",
            "max_lag",
        ),
        (
            config
                .compression
                .as_ref()
                .is_some_and(|c| c.adaptive.is_some()),
            "compression",
            "adaptive",
        ),
        (
            config.metrics.as_ref().is_some_and(|m| m.runtime),
            "metrics",
            "runtime",
        ),
    ];
    let Some(&(_, section, field)) = needed_by.iter().find(|(needed, _, _)| *needed) else {
        return Ok(given);
    };
    if given.is_some() {
        return Ok(given);
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(config.error(
            section,
            format!(
                "{field} needs the runtime probe, which the stack starts on the tokio runtime: \
                 build the stack inside one, or pass a probe with StackBuilder::lag_from"
            ),
        ));
    }
    Ok(Some(RuntimeProbe::new().spawn().watch()))
}

/// The `[tracing]` section's layer, when `trace_context` is on.
#[cfg(feature = "otel")]
fn trace_context(config: &StackConfig) -> Result<Option<TraceContextLayer>, StackError> {
    let on = config.tracing.as_ref().is_some_and(|t| t.trace_context);
    Ok(on.then(TraceContextLayer::new))
}

/// Without `otel`: `trace_context = true` is refused.
#[cfg(not(feature = "otel"))]
fn trace_context(config: &StackConfig) -> Result<Option<TraceContextLayer>, StackError> {
    if config.tracing.as_ref().is_some_and(|t| t.trace_context) {
        return Err(config.error(
            "tracing",
            "trace_context = true needs tower-scale's `otel` feature (W3C trace context \
             through OpenTelemetry)",
        ));
    }
    Ok(None)
}

/// One breaker per route prefix of the `[breaker]` section.
fn breakers(section: &super::config::BreakerSection) -> Result<Breakers, String> {
    let status = StatusCode::from_u16(section.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| format!("status: {} is not a 4xx or 5xx status", section.status))?;
    if section.routes.is_empty() {
        return Err("routes: no route; add one: [breaker.routes.\"/prefix\"]".to_owned());
    }
    let mut routes = Vec::with_capacity(section.routes.len());
    for (prefix, c) in &section.routes {
        if !prefix.starts_with('/') {
            return Err(format!("routes.{prefix:?}: a path prefix starts with /"));
        }
        let breaker = CircuitBreaker::named(prefix.as_str(), c.clone())
            .map_err(|e| format!("routes.{prefix:?}.{e}"))?;
        routes.push((prefix.clone(), breaker));
    }
    let layer = BreakerLayer::by_path_prefix(routes.iter().map(|(p, b)| (p.as_str(), b.clone())))
        .status(status);
    Ok(Breakers { layer, routes })
}
