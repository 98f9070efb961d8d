use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_scale_metrics::LagWatch;
use tower_service::Service;

use crate::offload::retry_after_secs;

/// Counter of requests shed by [`PressureLayer`]; label `reason`: `lag`, `in_flight`, `memory`.
pub const PRESSURE_SHED_TOTAL: &str = tower_scale_metrics::names::PRESSURE_SHED_TOTAL;

/// Thresholds of [`PressureLayer`] (serde, for config files). A threshold left `None` is not
/// checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PressureConfig {
    /// Shed while the runtime probe's recent scheduling lag
    /// ([`LagWatch::recent_max`]: the largest lag of the probe's last window, 1 s by default)
    /// is above this. Needs a probe ([`PressureLayer::lag_from`]). Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub max_lag: Option<Duration>,
    /// Shed while more requests than this are in flight through the layer. Default none.
    pub max_in_flight: Option<usize>,
    /// Shed while the process's resident memory is above this many bytes (Linux:
    /// `/proc/self/statm`). Default none.
    pub max_memory_bytes: Option<u64>,
    /// How often resident memory is read at most. Default 250 ms.
    #[serde(with = "humantime_serde")]
    pub memory_interval: Duration,
    /// `Retry-After` of a shed response. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Status of a shed response. Default 503.
    pub status: u16,
    /// Paths always served (health checks, metrics). Default `/livez`, `/readyz`, `/metrics`.
    pub exempt_paths: Vec<String>,
}

impl Default for PressureConfig {
    fn default() -> Self {
        Self {
            max_lag: Some(Duration::from_millis(200)),
            max_in_flight: None,
            max_memory_bytes: None,
            memory_interval: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
            status: 503,
            exempt_paths: ["/livez", "/readyz", "/metrics"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// Why a request was shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShedReason {
    /// Runtime scheduling lag above `max_lag`.
    Lag,
    /// In-flight requests above `max_in_flight`.
    InFlight,
    /// Resident memory above `max_memory_bytes`.
    Memory,
}

impl ShedReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lag => "lag",
            Self::InFlight => "in_flight",
            Self::Memory => "memory",
        }
    }
}

/// The current values and the thresholds, as [`PressureLayer::snapshot`] sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PressureSnapshot {
    /// Recent scheduling lag ([`LagWatch::recent_max`]), when a probe is attached.
    pub lag: Option<Duration>,
    /// Requests in flight through the layer.
    pub in_flight: usize,
    /// Resident memory at the last reading, in bytes (0 before the first reading or off Linux).
    pub memory_bytes: u64,
    /// Requests shed since the layer was built.
    pub shed_total: u64,
    /// The thresholds.
    pub config: PressureConfig,
}

/// Sheds requests with `503` and `Retry-After` while the service is under pressure: runtime
/// scheduling lag (from [`tower_scale_metrics::RuntimeProbe`]), in-flight requests or resident
/// memory above their thresholds. Health and metrics routes are always served.
///
/// The decision is made in `call`, not in `poll_ready` (axum drives readiness inside `call`),
/// from atomics: no allocation, no lock on the hot path. After a stall, requests are shed until
/// the probe's window (1 s by default) holds no lag above the threshold: a short hysteresis, so
/// the decision neither misses a stall between two requests nor flaps.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use tower::ServiceExt;
/// use tower_scale_offload::{PressureConfig, PressureLayer};
///
/// let mut config = PressureConfig::default();
/// config.max_in_flight = Some(0); // shed everything but the health routes
/// let app = Router::new()
///     .route("/work", get(|| async { "done" }))
///     .route("/livez", get(|| async { "ok" }))
///     .layer(PressureLayer::new(config));
/// let res = app.clone().oneshot(Request::get("/work").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(res.headers()["retry-after"], "1");
/// let res = app.oneshot(Request::get("/livez").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PressureLayer {
    state: Arc<State>,
}

struct State {
    config: PressureConfig,
    status: StatusCode,
    retry_after: HeaderValue,
    lag: Option<LagWatch>,
    in_flight: AtomicUsize,
    memory_bytes: AtomicU64,
    memory_read_at: std::sync::Mutex<Option<Instant>>,
    shed_total: AtomicU64,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl PressureLayer {
    /// A layer with these thresholds. A status outside 100..=999 falls back to 503.
    pub fn new(config: PressureConfig) -> Self {
        Self::build(config, None)
    }

    /// Reads scheduling lag from a running probe
    /// (`RuntimeProbe::new().spawn().watch()`). Call it while building the layer: the
    /// layer's counters start afresh.
    #[must_use]
    pub fn lag_from(self, watch: LagWatch) -> Self {
        Self::build(self.state.config.clone(), Some(watch))
    }

    fn build(config: PressureConfig, lag: Option<LagWatch>) -> Self {
        let status = StatusCode::from_u16(config.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self {
            state: Arc::new(State {
                status,
                retry_after: HeaderValue::from(retry_after_secs(config.retry_after)),
                config,
                lag,
                in_flight: AtomicUsize::new(0),
                memory_bytes: AtomicU64::new(0),
                memory_read_at: std::sync::Mutex::new(None),
                shed_total: AtomicU64::new(0),
            }),
        }
    }

    /// The current values and thresholds.
    pub fn snapshot(&self) -> PressureSnapshot {
        let s = &self.state;
        PressureSnapshot {
            lag: s.lag.as_ref().map(LagWatch::recent_max),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            memory_bytes: s.memory_bytes.load(Ordering::Relaxed),
            shed_total: s.shed_total.load(Ordering::Relaxed),
            config: s.config.clone(),
        }
    }
}

impl State {
    fn pressure(&self, in_flight: usize) -> Option<ShedReason> {
        if let (Some(max), Some(watch)) = (self.config.max_lag, &self.lag)
            && watch.recent_max() > max
        {
            return Some(ShedReason::Lag);
        }
        if let Some(max) = self.config.max_in_flight
            && in_flight > max
        {
            return Some(ShedReason::InFlight);
        }
        if let Some(max) = self.config.max_memory_bytes
            && self.memory() > max
        {
            return Some(ShedReason::Memory);
        }
        None
    }

    fn memory(&self) -> u64 {
        let now = Instant::now();
        let due = match self.memory_read_at.try_lock() {
            Ok(mut at) => {
                let due = at.is_none_or(|t| now.duration_since(t) >= self.config.memory_interval);
                if due {
                    *at = Some(now);
                }
                due
            }
            Err(_) => false, // another request is reading it
        };
        if due && let Some(bytes) = resident_memory() {
            self.memory_bytes.store(bytes, Ordering::Relaxed);
        }
        self.memory_bytes.load(Ordering::Relaxed)
    }

    fn exempt(&self, path: &str) -> bool {
        self.config.exempt_paths.iter().any(|p| p == path)
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

impl<S> Layer<S> for PressureLayer {
    type Service = Pressure<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Pressure {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The middleware built by [`PressureLayer`].
#[derive(Clone, Debug)]
pub struct Pressure<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Pressure<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        if state.exempt(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        let in_flight = state.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = InFlightGuard(Arc::clone(state));
        if let Some(reason) = state.pressure(in_flight) {
            state.shed_total.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(PRESSURE_SHED_TOTAL, "reason" => reason.as_str()).increment(1);
            let mut res = Response::new(ResBody::default());
            *res.status_mut() = state.status;
            res.headers_mut()
                .insert(header::RETRY_AFTER, state.retry_after.clone());
            res.headers_mut().insert(
                HeaderName::from_static("x-shed-reason"),
                HeaderValue::from_static(reason.as_str()),
            );
            drop(guard);
            return ResponseFuture {
                kind: Kind::Shed { res: Some(res) },
            };
        }
        ResponseFuture::inner(self.inner.call(req), Some(guard))
    }
}

struct InFlightGuard(Arc<State>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// Response future of [`Pressure`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] fut: F, guard: Option<InFlightGuard> },
        Shed { res: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(fut: F, guard: Option<InFlightGuard>) -> Self {
        Self {
            kind: Kind::Inner { fut, guard },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut, guard } => {
                let out = std::task::ready!(fut.poll(cx));
                drop(guard.take());
                Poll::Ready(out)
            }
            KindProj::Shed { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
