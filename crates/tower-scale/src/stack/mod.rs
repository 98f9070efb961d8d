//! Every layer, stacked in the right order, from one serde config (e.g. a TOML file).
//!
//! Each section of [`StackConfig`] is optional: a missing section leaves its layer out, a
//! present one is in force once the stack is built and applied, or [`Stack::build`] fails
//! naming what is missing. With a `[redis]` section (or `REDIS_URL`, see
//! [`StackConfig::env_overrides`]) the rate limit, the sessions, the cache and pub/sub share
//! state across instances through Redis; without one they live in this process.
//! Environment variables override single fields (`TOWER_SCALE__SECTION__FIELD`), and
//! [`StackConfig::to_toml_redacted`] prints the effective config without its secrets.
//! The [stack guide](https://github.com/tower-scale/tower-scale/blob/main/docs/stack.md) is the reference of every section.
//!
//! # Order, outermost first, and why
//!
//! 1. **`/metrics`**: answered before anything else, so a scrape is never rate limited or
//!    shed.
//! 2. **trace context** (`[tracing]`): the request's span, a child of the caller's
//!    `traceparent`, opened before any layer decides, so every decision is in the trace.
//! 3. **shutdown** (`InFlightLayer`): counts every request, so draining waits for all of them,
//!    and closes keep-alive connections while draining.
//! 4. **metrics**: sees every response, shed and rate-limited ones included, with the full
//!    latency.
//! 5. **pressure** (load shedding): refuses work before anything else is spent on it.
//! 6. **rate limit**: before any session read, so a flood of requests costs no session
//!    lookups.
//! 7. **sessions**: outside the cache, so a cache hit (a handler that never ran) touches no
//!    session and sets no cookie.
//! 8. **response cache**: outside compression, so the stored response is the encoded one and a
//!    hit is served without compressing again (keyed by the `Vary: Accept-Encoding` that
//!    compression adds).
//! 9. **compression**: encodes what the handlers produced.
//! 10. **circuit breakers** per route prefix: next to the handlers that call the downstreams.
//! 11. **replica routing**, then the **offload pool** and the **broadcaster** as request
//!     extensions, then **request decompression**, innermost: the handlers read decompressed
//!     bodies within the limit.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_scale::stack::{Stack, StackConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = StackConfig::from_toml(r#"
//!     [shutdown]
//!     pre_stop_delay = "5s"
//!
//!     [rate_limit]
//!     quotas = [{ count = 100, period = "1s", burst = 200 }]
//!     key = { type = "header", name = "x-api-key" }
//!
//!     [session]
//!     ttl = "7days"
//!     redis = { layout = "record" }
//!
//!     [cache]
//!     ttl = "30s"
//!
//!     [compression]
//! "#)?
//! .env_overrides()?;
//! let stack = Stack::build(&config)?;
//! let app: Router = stack.apply(Router::new().route("/", get(|| async { "hello" })));
//! # Ok(()) }
//! ```

mod build;
mod config;
mod env;
mod redact;
mod serve_metrics;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Response;
use tower::ServiceBuilder;

use crate::breaker::{BreakerLayer, CircuitBreaker};
use crate::cache::ResponseCacheLayer;
use crate::compression::{CompressionLayer, RequestDecompressionLayer};
use crate::metrics::{LagWatch, MetricsLayer, PrometheusMetrics};
use crate::offload::{Offload, PressureLayer};
use crate::pubsub::Broadcaster;
use crate::ratelimit::RateLimitLayer;
use crate::redis::RedisBackend;
use crate::replica::ReadWriteLayer;
use crate::session::SessionManagerLayer;
use crate::shutdown::Shutdown;

pub use self::build::StackBuilder;
pub use self::config::{
    BreakerSection, CacheSection, CompressionSection, DecompressionSection, MetricsSection,
    ReplicaSection, SessionSection, StackConfig, StackError, TracingSection,
};
pub use self::env::ENV_PREFIX;
use self::serve_metrics::ServeMetricsLayer;

/// The breakers of the `[breaker]` section: the layer, and each breaker by its prefix.
#[derive(Clone, Debug)]
pub(crate) struct Breakers {
    layer: BreakerLayer,
    routes: Vec<(String, CircuitBreaker)>,
}

/// The layers built from a [`StackConfig`], ready to wrap a router.
#[derive(Clone, Debug)]
pub struct Stack {
    backend: Option<RedisBackend>,
    serve_metrics: Option<ServeMetricsLayer>,
    trace_context: Option<build::TraceContextLayer>,
    prometheus: Option<PrometheusMetrics>,
    lag: Option<LagWatch>,
    shutdown: Option<Shutdown>,
    metrics: Option<MetricsLayer>,
    pressure: Option<PressureLayer>,
    rate_limit: Option<RateLimitLayer<crate::ratelimit::AnyKey>>,
    session: Option<SessionManagerLayer>,
    cache: Option<ResponseCacheLayer>,
    /// Whether the cache has a local tier (then `/readyz` waits for its invalidation bus).
    cache_l1: bool,
    compression: Option<CompressionLayer>,
    breakers: Option<Breakers>,
    replica: Option<ReadWriteLayer>,
    offload: Option<Offload>,
    pubsub: Option<Broadcaster>,
    decompression: Option<RequestDecompressionLayer>,
}

impl Stack {
    /// Builds every configured layer; no connection is opened yet. The same as
    /// `Stack::builder(config).build()`: see [`StackBuilder::build`] (a section that needs the
    /// runtime probe needs a tokio runtime to start it in).
    pub fn build(config: &StackConfig) -> Result<Self, StackError> {
        Self::builder(config).build()
    }

    /// A builder, to pass what a file cannot hold: a running probe, a recorder.
    pub fn builder(config: &StackConfig) -> StackBuilder<'_> {
        StackBuilder::new(config)
    }

    /// Wraps `router` in every configured layer, in the documented order.
    ///
    /// The layers are composed into one and applied with a single `Router::layer`: each
    /// `Router::layer` call wraps every route in one more boxed service, which costs a clone of
    /// that boxed service and a boxed future per request and layer.
    pub fn apply<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        // Compression, the cache and decompression change the response body's type; with the
        // layer absent the body stays axum's, so both branches answer axum bodies. axum boxes
        // the body once anyway; a body already boxed is not boxed again.
        let compression = self.compression.clone().map(|l| {
            ServiceBuilder::new()
                .map_response(into_axum_body as fn(_) -> _)
                .layer(l)
        });
        let cache = self.cache.clone().map(|l| {
            ServiceBuilder::new()
                .map_response(into_axum_body as fn(_) -> _)
                .layer(l)
        });
        let decompression = self.decompression.map(|l| {
            ServiceBuilder::new()
                .map_response(into_axum_body as fn(_) -> _)
                .layer(l)
        });
        router.layer(
            ServiceBuilder::new()
                .option_layer(self.serve_metrics.clone())
                .option_layer(self.trace_context)
                .option_layer(self.shutdown.as_ref().map(Shutdown::layer))
                .option_layer(self.metrics.clone())
                .option_layer(self.pressure.clone())
                .option_layer(self.rate_limit.clone())
                .option_layer(self.session.clone())
                .option_layer(cache)
                .option_layer(compression)
                .option_layer(self.breakers.as_ref().map(|b| b.layer.clone()))
                .option_layer(self.replica.clone())
                .option_layer(self.offload.clone().map(axum::Extension))
                .option_layer(self.pubsub.clone().map(axum::Extension))
                .option_layer(decompression),
        )
    }

    /// The stack's own routes, to merge after [`apply`](Self::apply), outside the rate limit
    /// and the load shedding: `/livez` and `/readyz` with `[shutdown]` (ready until shutdown
    /// starts, while Redis, if any, answers, and while the cache's invalidation bus is
    /// subscribed, when it has a local tier), and the `[metrics]` path when it is served.
    /// `None` when there is neither.
    ///
    /// `apply` answers the metrics path too, but only for requests that reach the router's
    /// layers (its routes and its default fallback, which a later `Router::merge` replaces):
    /// merge these routes and it is always served.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Option<Router<S>> {
        let metrics = self.serve_metrics.as_ref().map(|serve| {
            let handler = serve.metrics().handler();
            (serve.path().to_owned(), axum::routing::get(handler))
        });
        let Some(shutdown) = self.shutdown.as_ref() else {
            return metrics.map(|(path, route)| Router::new().route(&path, route));
        };
        let mut health = shutdown.health();
        if let Some(redis) = self.backend.clone() {
            health = health.check("redis", move || {
                let redis = redis.clone();
                async move { redis.ping().await.map(drop).map_err(|e| e.to_string()) }
            });
        }
        if let Some(cache) = self.cache.as_ref().map(|l| l.cache().clone())
            && self.cache_l1
        {
            // An instance whose local tier cannot hear purges must not serve: it could serve
            // a purged entry.
            health = health.check("cache", move || {
                let cache = cache.clone();
                async move {
                    if cache.ready(std::time::Duration::from_secs(1)).await {
                        Ok(())
                    } else {
                        Err("the cache's invalidation bus is not subscribed".to_owned())
                    }
                }
            });
        }
        let routes = health.routes();
        Some(match metrics {
            Some((path, route)) => routes.route(&path, route),
            None => routes,
        })
    }

    /// The runtime probe's measurements, when a section needed the probe.
    pub fn lag(&self) -> Option<&LagWatch> {
        self.lag.as_ref()
    }

    /// The Prometheus recorder's handle, when `[metrics]` installed or was given one.
    pub fn prometheus(&self) -> Option<&PrometheusMetrics> {
        self.prometheus.as_ref()
    }

    /// The breaker of a `[breaker.routes]` prefix (to trip, reset or watch it).
    pub fn breaker(&self, prefix: &str) -> Option<&CircuitBreaker> {
        let breakers = self.breakers.as_ref()?;
        breakers
            .routes
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, b)| b)
    }

    /// The `[offload]` pool, also in every request's extensions (`Extension<Offload>`).
    pub fn offload(&self) -> Option<&Offload> {
        self.offload.as_ref()
    }

    /// The `[pubsub]` broadcaster, also in every request's extensions
    /// (`Extension<Broadcaster>`).
    pub fn pubsub(&self) -> Option<&Broadcaster> {
        self.pubsub.as_ref()
    }

    /// The shared Redis backend, when configured.
    pub fn backend(&self) -> Option<&RedisBackend> {
        self.backend.as_ref()
    }

    /// The shutdown coordinator, when configured (listen for signals, run the server).
    pub fn shutdown(&self) -> Option<&Shutdown> {
        self.shutdown.as_ref()
    }

    /// The session layer, when configured (e.g. for `sessions().destroy_all_for_user`).
    pub fn session(&self) -> Option<&SessionManagerLayer> {
        self.session.as_ref()
    }

    /// The response cache layer, when configured (e.g. to purge through its cache).
    pub fn cache(&self) -> Option<&ResponseCacheLayer> {
        self.cache.as_ref()
    }
}

/// A response with its body boxed into axum's `Body` (not boxed again when it already is one).
fn into_axum_body<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    response.map(Body::new)
}
