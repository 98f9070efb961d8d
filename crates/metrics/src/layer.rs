use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use axum::extract::MatchedPath;
use http::{Method, Request, Response};
use metrics::{Counter, Gauge, Histogram, SharedString};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::names;

/// The `route` label of requests that matched no route (axum's fallback, 404s).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";
/// The `route` label once [`MetricsLayer::max_routes`] distinct routes have been seen.
pub const OTHER_ROUTE: &str = "<other>";

/// Records request count, in-flight requests and latency as Prometheus histograms, labelled by
/// method, matched route and status class.
///
/// The `route` label is axum's [`MatchedPath`] (`/users/{id}`), never the raw path, so the
/// number of series stays bounded: requests that matched no route get
/// [`UNMATCHED_ROUTE`](crate::UNMATCHED_ROUTE), methods outside the standard nine get `OTHER`,
/// and past [`max_routes`](Self::max_routes) distinct routes the rest share
/// [`OTHER_ROUTE`](crate::OTHER_ROUTE). Apply it with `Router::layer` (not around the router
/// from outside), so the matched path is known.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `http_requests_total` | counter | `method`, `route`, `status` (`2xx`… or `error`) |
/// | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
/// | `http_requests_in_flight` | gauge | `method`, `route` |
///
/// Latency is measured from the call to the response head (tokio time, so tests can pause it).
/// Metric handles are created once per (route, method, status class) and cached; the hot path
/// does no allocation after the first request of each.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    state: Arc<State>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsLayer {
    /// A layer recording into the global `metrics` recorder (install one first, e.g. with
    /// [`PrometheusMetrics::install`](crate::PrometheusMetrics::install)).
    pub fn new() -> Self {
        Self::with_max_routes(512)
    }

    /// Caps the number of distinct `route` label values (default 512).
    #[must_use]
    pub fn max_routes(self, max: usize) -> Self {
        Self::with_max_routes(max)
    }

    fn with_max_routes(max_routes: usize) -> Self {
        Self {
            state: Arc::new(State {
                routes: ArcSwap::from_pointee(HashMap::new()),
                max_routes,
                unmatched: RouteEntry::new(UNMATCHED_ROUTE),
                other: RouteEntry::new(OTHER_ROUTE),
            }),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The middleware built by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Metrics<S> {
    /// Wraps `inner` with a new [`MetricsLayer`].
    pub fn new(inner: S) -> Self {
        MetricsLayer::new().layer(inner)
    }

    /// A [`MetricsLayer`] with the defaults, to change with its setters.
    pub fn layer() -> MetricsLayer {
        MetricsLayer::new()
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = self
            .state
            .entry(req.extensions().get::<MatchedPath>(), req.method());
        method.in_flight.increment(1.0);
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(InFlight {
                method,
                start: Instant::now(),
            }),
        }
    }
}

pin_project! {
    /// Response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            let class = match &result {
                Ok(res) => usize::from(res.status().as_u16() / 100).clamp(1, 5) - 1,
                Err(_) => ERROR_CLASS,
            };
            guard.finish(class);
        }
        Poll::Ready(result)
    }
}

/// Decrements the in-flight gauge when the request ends, also when its future is dropped
/// (client gone, timeout).
struct InFlight {
    method: Arc<MethodEntry>,
    start: Instant,
}

impl InFlight {
    fn finish(self, class: usize) {
        let (count, duration) = self.method.class(class);
        count.increment(1);
        duration.record(self.start.elapsed().as_secs_f64());
        // `Drop` decrements the gauge.
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.method.in_flight.decrement(1.0);
    }
}

const STATUS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
const ERROR_CLASS: usize = 5;
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

struct State {
    routes: ArcSwap<HashMap<Box<str>, Arc<RouteEntry>>>,
    max_routes: usize,
    unmatched: Arc<RouteEntry>,
    other: Arc<RouteEntry>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("routes", &self.routes.load().len())
            .field("max_routes", &self.max_routes)
            .finish()
    }
}

impl State {
    /// The handles of this request's (route, method): a map lookup and an `Arc` clone, no
    /// allocation once the pair has been seen.
    fn entry(&self, matched: Option<&MatchedPath>, method: &Method) -> Arc<MethodEntry> {
        let Some(path) = matched.map(MatchedPath::as_str) else {
            return self.unmatched.method(method);
        };
        if let Some(entry) = self.routes.load().get(path) {
            return entry.method(method);
        }
        self.insert(path).method(method)
    }

    #[cold]
    fn insert(&self, path: &str) -> Arc<RouteEntry> {
        let mut found = None;
        self.routes.rcu(|routes| {
            if let Some(entry) = routes.get(path) {
                found = Some(Arc::clone(entry));
                return Arc::clone(routes);
            }
            if routes.len() >= self.max_routes {
                found = Some(Arc::clone(&self.other));
                return Arc::clone(routes);
            }
            let entry = RouteEntry::new(path);
            found = Some(Arc::clone(&entry));
            let mut next = HashMap::clone(routes);
            next.insert(path.into(), entry);
            Arc::new(next)
        });
        found.unwrap_or_else(|| Arc::clone(&self.other))
    }
}

/// Per-route handles: one [`MethodEntry`] per method, created on first use.
struct RouteEntry {
    route: SharedString,
    methods: [OnceLock<Arc<MethodEntry>>; METHODS.len()],
}

impl RouteEntry {
    fn new(route: &str) -> Arc<Self> {
        Arc::new(Self {
            route: SharedString::from_shared(Arc::<str>::from(route)),
            methods: Default::default(),
        })
    }

    fn method(&self, method: &Method) -> Arc<MethodEntry> {
        let i = method_index(method);
        Arc::clone(self.methods[i].get_or_init(|| {
            let method = SharedString::const_str(METHODS[i]);
            Arc::new(MethodEntry {
                in_flight: metrics::gauge!(
                    names::HTTP_REQUESTS_IN_FLIGHT,
                    "method" => method.clone(),
                    "route" => self.route.clone(),
                ),
                method,
                route: self.route.clone(),
                classes: Default::default(),
            })
        }))
    }
}

/// Handles for one (route, method): the in-flight gauge, and per status class a counter and
/// a histogram, created on first use.
struct MethodEntry {
    method: SharedString,
    route: SharedString,
    in_flight: Gauge,
    classes: [OnceLock<(Counter, Histogram)>; STATUS.len()],
}

impl MethodEntry {
    fn class(&self, class: usize) -> &(Counter, Histogram) {
        self.classes[class].get_or_init(|| {
            let status = SharedString::const_str(STATUS[class]);
            (
                metrics::counter!(
                    names::HTTP_REQUESTS_TOTAL,
                    "method" => self.method.clone(),
                    "route" => self.route.clone(),
                    "status" => status.clone(),
                ),
                metrics::histogram!(
                    names::HTTP_REQUEST_DURATION_SECONDS,
                    "method" => self.method.clone(),
                    "route" => self.route.clone(),
                    "status" => status,
                ),
            )
        })
    }
}
