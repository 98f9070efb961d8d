//! [`PressureLayer`]: its constructors, setters and [`Layer`] impl.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_scale_core::{ConfigError, DefaultRefusal};
use tower_scale_metrics::LagWatch;

use crate::config::PressureConfig;
use crate::service::Pressure;
use crate::state::{PressureSnapshot, State};

/// Sheds requests with `503` and `Retry-After` while the service is under pressure: runtime
/// scheduling lag (from [`tower_scale_metrics::RuntimeProbe`]), in-flight requests or resident
/// memory above their thresholds. Health and metrics routes are always served.
///
/// The decision is made in `call`, not in `poll_ready` (axum drives readiness inside `call`),
/// from atomics: no allocation, no lock on the hot path. After a stall, requests are shed until
/// the probe's window (1 s by default) holds no lag above the threshold: a short hysteresis, so
/// the decision neither misses a stall between two requests nor flaps.
///
/// The shed response comes from a [`Refuse`](tower_scale_core::Refuse) policy
/// ([`refuse_with`](Self::refuse_with); default [`DefaultRefusal`]: the configured status and
/// an empty body) with the reason `"overloaded"` and the [`ShedReason`](crate::ShedReason) as
/// its detail; the layer then adds `Retry-After` (unless the response has one) and
/// `x-shed-reason`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_offload::PressureLayer;
///
/// let layer = PressureLayer::new().max_in_flight(Some(0)); // shed all but the health routes
/// let app = Router::new()
///     .route("/work", get(|| async { "done" }))
///     .route("/livez", get(|| async { "ok" }))
///     .layer(layer);
/// let res = app.clone().oneshot(Request::get("/work").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(res.headers()["retry-after"], "1");
/// let res = app.oneshot(Request::get("/livez").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PressureLayer<R = DefaultRefusal> {
    state: Arc<State>,
    refuse: R,
}

impl PressureLayer {
    /// A layer with the defaults of [`PressureConfig`].
    pub fn new() -> Self {
        Self::build(PressureConfig::default(), None)
            .unwrap_or_else(|_| unreachable!("the default config is valid"))
    }

    /// A layer with these thresholds; a status that is not a 4xx or 5xx is an error.
    pub fn from_config(config: &PressureConfig) -> Result<Self, ConfigError> {
        Self::build(config.clone(), None)
    }

    fn build(config: PressureConfig, lag: Option<LagWatch>) -> Result<Self, ConfigError> {
        Ok(Self {
            state: Arc::new(State::new(config, lag)?),
            refuse: DefaultRefusal::new(),
        })
    }
}

impl Default for PressureLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> PressureLayer<R> {
    /// A new state (the counters start afresh) with this config and lag watch.
    fn rebuild(self, config: PressureConfig, lag: Option<LagWatch>) -> Self {
        let state = State::new(config, lag)
            .unwrap_or_else(|_| unreachable!("the status was validated and is not changed"));
        Self {
            state: Arc::new(state),
            refuse: self.refuse,
        }
    }

    /// A new state with `f` applied to the config.
    fn map(self, f: impl FnOnce(&mut PressureConfig)) -> Self {
        let mut config = self.state.config().clone();
        f(&mut config);
        let lag = self.state.lag().cloned();
        self.rebuild(config, lag)
    }

    /// Reads scheduling lag from a running probe
    /// (`RuntimeProbe::new().spawn().watch()`). Call it while building the layer: the
    /// layer's counters start afresh.
    #[must_use]
    pub fn lag_from(self, watch: LagWatch) -> Self {
        let config = self.state.config().clone();
        self.rebuild(config, Some(watch))
    }

    /// Shed while the probe's recent scheduling lag is above this ([`lag_from`](Self::lag_from)).
    #[must_use]
    pub fn max_lag(self, max_lag: Option<Duration>) -> Self {
        self.map(|c| c.max_lag = max_lag)
    }

    /// Shed while more requests than this are in flight through the layer.
    #[must_use]
    pub fn max_in_flight(self, max_in_flight: Option<usize>) -> Self {
        self.map(|c| c.max_in_flight = max_in_flight)
    }

    /// Shed while the process's resident memory is above this many bytes.
    #[must_use]
    pub fn max_memory_bytes(self, max_memory_bytes: Option<u64>) -> Self {
        self.map(|c| c.max_memory_bytes = max_memory_bytes)
    }

    /// How often resident memory is read at most.
    #[must_use]
    pub fn memory_interval(self, memory_interval: Duration) -> Self {
        self.map(|c| c.memory_interval = memory_interval)
    }

    /// `Retry-After` of a shed response.
    #[must_use]
    pub fn retry_after(self, retry_after: Duration) -> Self {
        self.map(|c| c.retry_after = retry_after)
    }

    /// Paths always served (health checks, metrics).
    #[must_use]
    pub fn exempt_paths<I: IntoIterator<Item = T>, T: Into<String>>(self, paths: I) -> Self {
        let paths = paths.into_iter().map(Into::into).collect();
        self.map(|c| c.exempt_paths = paths)
    }

    /// Replaces the response of a shed request (a [`Refuse`](tower_scale_core::Refuse)
    /// policy: [`DefaultRefusal`] with a text body, or a closure).
    #[must_use]
    pub fn refuse_with<R2>(self, refuse: R2) -> PressureLayer<R2> {
        PressureLayer {
            state: self.state,
            refuse,
        }
    }

    /// The current values and thresholds.
    pub fn snapshot(&self) -> PressureSnapshot {
        self.state.snapshot()
    }
}

impl<S, R: Clone> Layer<S> for PressureLayer<R> {
    type Service = Pressure<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Pressure::new(inner, Arc::clone(&self.state), self.refuse.clone())
    }
}
