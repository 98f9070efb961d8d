//! [`StackConfig`] and the sections that are the stack's own (the others are the crates'
//! serde configs), with the parse errors.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerConfig;
use crate::cache::{CacheConfig, RedisStoreConfig as CacheRedisStoreConfig, ResponseCacheConfig};
use crate::compression::{AdaptiveConfig, CompressionConfig};
use crate::offload::{OffloadConfig, PressureConfig};
use crate::pubsub::PubSubConfig;
use crate::ratelimit::RateLimitConfig;
use crate::redis::RedisConfig;
use crate::session::{RedisStoreConfig, SessionConfig};
use crate::shutdown::ShutdownConfig;

use super::redact::redact_urls;

/// The whole stack's config: one optional section per layer; a missing section leaves its
/// layer out, a present one is in force after [`Stack::build`](super::Stack::build) and
/// [`apply`](super::Stack::apply) (or `build` fails naming what is missing).
///
/// The [stack guide](https://github.com/tower-scale/tower-scale/blob/main/docs/stack.md) lists every section and field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// The shared Redis backend; none: every layer keeps its state in this process.
    pub redis: Option<RedisConfig>,
    /// Graceful shutdown (in-flight tracking, drain, readiness).
    pub shutdown: Option<ShutdownConfig>,
    /// Prometheus metrics: the recorder, the HTTP metrics layer, `/metrics`, the runtime probe.
    pub metrics: Option<MetricsSection>,
    /// W3C trace context in and out (`traceparent`, `tracestate`): each request's span joins
    /// its caller's trace (feature `otel`).
    pub tracing: Option<TracingSection>,
    /// Load shedding by runtime lag (the stack starts the probe), in-flight requests or memory.
    pub pressure: Option<PressureConfig>,
    /// Rate limiting (global through Redis when there is a backend).
    pub rate_limit: Option<RateLimitConfig>,
    /// Sessions (in Redis when there is a backend).
    pub session: Option<SessionSection>,
    /// The HTTP response cache (in Redis when there is a backend).
    pub cache: Option<CacheSection>,
    /// Response compression, adaptive to the runtime lag with `[compression.adaptive]`.
    pub compression: Option<CompressionSection>,
    /// Request bodies decompressed, with a limit on the decompressed size.
    pub decompression: Option<DecompressionSection>,
    /// Circuit breakers per route, by path prefix.
    pub breaker: Option<BreakerSection>,
    /// A pool for CPU-bound work, given to handlers as an `Extension<Offload>`.
    pub offload: Option<OffloadConfig>,
    /// Pub/sub rooms (across instances through Redis when there is a backend), given to
    /// handlers as an `Extension<Broadcaster>`.
    pub pubsub: Option<PubSubConfig>,
    /// Read/write routing to the primary or a replica, with read-your-writes.
    pub replica: Option<ReplicaSection>,
    /// The variables that set fields of each section, to name them in build errors.
    #[serde(skip)]
    pub(crate) from_env: Vec<(String, String)>,
}

/// The `[metrics]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsSection {
    /// Install the Prometheus recorder as the process's global `metrics` recorder. Default
    /// `true`. With `false`, pass the recorder's [`PrometheusMetrics`](crate::metrics::PrometheusMetrics)
    /// with [`StackBuilder::prometheus`](super::StackBuilder::prometheus) for `serve`.
    pub recorder: bool,
    /// Answer `GET <path>` with the exposition text, outside every other layer (no rate limit,
    /// no shedding). Default `true`.
    pub serve: bool,
    /// Where the exposition is served. Default `/metrics`.
    pub path: String,
    /// Run the runtime probe (`tokio_*` metrics, scheduling lag). Default `true`.
    pub runtime: bool,
    /// Buckets of `http_request_duration_seconds`, in seconds, increasing. Default 0.5 ms to
    /// 10 s.
    pub latency_buckets: Vec<f64>,
    /// Labels added to every metric (e.g. `service = "shop"`). Default none.
    pub global_labels: BTreeMap<String, String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            recorder: true,
            serve: true,
            path: "/metrics".to_owned(),
            runtime: true,
            latency_buckets: crate::metrics::DEFAULT_LATENCY_BUCKETS.to_vec(),
            global_labels: BTreeMap::new(),
        }
    }
}

/// The `[tracing]` section: with `trace_context`, every request gets a `tracing` span whose
/// OpenTelemetry parent is the caller's W3C `traceparent`/`tracestate`, and the response
/// carries the span's `traceparent` ([`TraceContextLayer`](https://docs.rs/tower-scale-metrics/latest/tower_scale_metrics/struct.TraceContextLayer.html), outside every layer but `/metrics`).
/// Every layer's decision event and Redis command span is inside it. Needs the `otel`
/// feature; the application installs the subscriber that exports the spans
/// (tracing-opentelemetry and an exporter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TracingSection {
    /// Accept and emit W3C trace context. Default `true`; without the `otel` feature, `true`
    /// is refused by [`Stack::build`](super::Stack::build).
    pub trace_context: bool,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            trace_context: true,
        }
    }
}

/// The `[session]` section: the session layer's settings, and with `[session.redis]` how the
/// Redis store lays sessions out (used only with a `[redis]` backend).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionSection {
    /// The cookie, the TTL, sliding and absolute expiry, the error statuses.
    #[serde(flatten)]
    pub config: SessionConfig,
    /// The Redis store's settings (`layout = "hash"` or `"record"`).
    pub redis: RedisStoreConfig,
}

/// The `[cache]` section: the response cache's rules and the cache's tiers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheSection {
    /// Storability, TTLs, stale windows, size cap.
    #[serde(flatten)]
    pub response: ResponseCacheConfig,
    /// The local tier and the cross-instance lock (used with Redis only: without it the
    /// store is already in this process).
    pub tiers: CacheConfig,
    /// Bytes of the in-memory store when there is no Redis. Default 64 MiB.
    pub memory_bytes: Option<u64>,
    /// The Redis store's settings (`index_every_entry` for a rolling upgrade; used only with
    /// a `[redis]` backend).
    pub redis: CacheRedisStoreConfig,
}

/// The `[compression]` section: the compression layer's settings, and with a
/// `[compression.adaptive]` table, lower levels while the runtime lags (the stack connects the
/// layer to its runtime probe).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CompressionSection {
    /// Encodings, levels, minimum size, offload (the `adaptive` field here is not read: the
    /// one below is).
    #[serde(flatten)]
    pub response: CompressionConfig,
    /// The adaptive mode, on when present.
    #[serde(default)]
    pub adaptive: Option<AdaptiveConfig>,
}

/// The response settings with `adaptive` replaced by the section's (absent when off), so that
/// the output reads back as the same section.
impl Serialize for CompressionSection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut map = match serde_json::to_value(&self.response).map_err(S::Error::custom)? {
            serde_json::Value::Object(map) => map,
            _ => return Err(S::Error::custom("CompressionConfig is not a table")),
        };
        match &self.adaptive {
            Some(adaptive) => {
                let value = serde_json::to_value(adaptive).map_err(S::Error::custom)?;
                map.insert("adaptive".to_owned(), value);
            }
            None => {
                map.remove("adaptive");
            }
        }
        map.serialize(serializer)
    }
}

/// The `[decompression]` section: request bodies in gzip, br, zstd or deflate are
/// decompressed for the handlers; past `max_bytes` decompressed, reading the body fails and
/// axum's extractors answer `413 Payload Too Large`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DecompressionSection {
    /// The largest decompressed body, in bytes. Default 8 MiB.
    pub max_bytes: usize,
}

impl Default for DecompressionSection {
    fn default() -> Self {
        Self {
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The `[breaker]` section: one circuit breaker per path prefix.
///
/// ```toml
/// [breaker.routes."/payments"]
/// sliding_window = { type = "count", size = 20 }
/// minimum_calls = 10
/// wait_in_open = "10s"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerSection {
    /// Status of a request refused by an open breaker, a 4xx or 5xx. Default 503.
    pub status: u16,
    /// Path prefix (segment by segment: `/api` covers `/api/x`, not `/apis`) to the settings
    /// of its breaker; the longest prefix wins, a path under none is not guarded. Each
    /// breaker is named by its prefix in metrics (`breaker_state{breaker="/payments"}`).
    pub routes: BTreeMap<String, BreakerConfig>,
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            status: 503,
            routes: BTreeMap::new(),
        }
    }
}

/// The `[replica]` section: requests carry a `DbRoute` (primary or replica) in their
/// extensions; after a write, the client's reads go to the primary for `window`, through a
/// cookie signed with `secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReplicaSection {
    /// The cookie's signing secret, the same on every instance: at least 32 bytes. Required.
    pub secret: String,
    /// How long after a write the client reads from the primary. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The cookie's name. Default `ts_rw`.
    pub cookie_name: String,
    /// The cookie's `Secure` attribute. Default `false`.
    pub secure: bool,
}

impl Default for ReplicaSection {
    fn default() -> Self {
        Self {
            secret: String::new(),
            window: Duration::from_secs(5),
            cookie_name: "ts_rw".to_owned(),
            secure: false,
        }
    }
}

/// Every field, the secret hidden.
impl fmt::Debug for ReplicaSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaSection")
            .field(
                "secret",
                &format_args!("[{} bytes redacted]", self.secret.len()),
            )
            .field("window", &self.window)
            .field("cookie_name", &self.cookie_name)
            .field("secure", &self.secure)
            .finish()
    }
}

/// A stack that could not be built or configured; the message names the section, and the
/// environment variable when one set the value.
#[derive(Debug, thiserror::Error)]
#[error("[{section}]: {message}")]
pub struct StackError {
    section: &'static str,
    message: String,
}

impl StackError {
    pub(crate) fn new(section: &'static str, e: impl fmt::Display) -> Self {
        Self {
            section,
            message: e.to_string(),
        }
    }

    /// The config section at fault (`toml` for a file that does not parse, `env` for an
    /// environment variable that does not).
    pub fn section(&self) -> &'static str {
        self.section
    }
}

impl StackConfig {
    /// Parses TOML; unknown keys are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Self, StackError> {
        toml::from_str(text).map_err(|e| StackError::new("toml", redact_urls(&e.to_string())))
    }

    /// Reads and parses a TOML file.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Self, StackError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| StackError::new("toml", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// An error of `section`, naming the environment variables that set its fields, if any.
    pub(crate) fn error(&self, section: &'static str, e: impl fmt::Display) -> StackError {
        let vars: Vec<&str> = self
            .from_env
            .iter()
            .filter(|(s, _)| s == section)
            .map(|(_, var)| var.as_str())
            .collect();
        if vars.is_empty() {
            StackError::new(section, e)
        } else {
            StackError::new(
                section,
                format!("{e} (set from the environment: {})", vars.join(", ")),
            )
        }
    }
}
