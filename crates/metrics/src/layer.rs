//! [`MetricsLayer`]: one route table shared by every service it builds.

use std::sync::Arc;

use tower_layer::Layer;

use crate::Metrics;
use crate::routes::Routes;

/// The `route` label of requests that matched no route (axum's fallback, 404s).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";
/// The `route` label once [`MetricsLayer::max_routes`] distinct routes have been seen.
pub const OTHER_ROUTE: &str = "<other>";

/// Records request count, in-flight requests and latency as Prometheus histograms, labelled by
/// method, matched route and status class.
///
/// The `route` label is axum's [`MatchedPath`](axum::extract::MatchedPath) (`/users/{id}`), never the raw path, so the
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
    state: Arc<Routes>,
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
            state: Arc::new(Routes::new(max_routes)),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_routes(inner, Arc::clone(&self.state))
    }
}
