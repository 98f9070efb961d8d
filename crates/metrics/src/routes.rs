//! The metric handles per (route, method, status class), created once and looked up per
//! request without allocating.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use axum::extract::MatchedPath;
use http::Method;
use metrics::{Counter, Gauge, Histogram, SharedString};

use crate::{OTHER_ROUTE, UNMATCHED_ROUTE, names};

const STATUS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
/// The status class of a request whose inner service failed.
pub(crate) const ERROR_CLASS: usize = 5;
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

/// The metric handles of every route seen, and of the unmatched and overflow routes.
pub(crate) struct Routes {
    routes: ArcSwap<HashMap<Box<str>, Arc<RouteEntry>>>,
    max_routes: usize,
    unmatched: Arc<RouteEntry>,
    other: Arc<RouteEntry>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("routes", &self.routes.load().len())
            .field("max_routes", &self.max_routes)
            .finish()
    }
}

impl Routes {
    pub(crate) fn new(max_routes: usize) -> Self {
        Self {
            routes: ArcSwap::from_pointee(HashMap::new()),
            max_routes,
            unmatched: RouteEntry::new(UNMATCHED_ROUTE),
            other: RouteEntry::new(OTHER_ROUTE),
        }
    }

    /// The handles of this request's (route, method): a map lookup and an `Arc` clone, no
    /// allocation once the pair has been seen.
    pub(crate) fn entry(&self, matched: Option<&MatchedPath>, method: &Method) -> Arc<MethodEntry> {
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
                    names::HTTP_REQUESTS_IN_FLIGHT.name,
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
pub(crate) struct MethodEntry {
    method: SharedString,
    route: SharedString,
    in_flight: Gauge,
    classes: [OnceLock<(Counter, Histogram)>; STATUS.len()],
}

impl MethodEntry {
    /// Counts a request in flight (until [`end`](Self::end)).
    #[inline]
    pub(crate) fn begin(&self) {
        self.in_flight.increment(1.0);
    }

    /// A request counted by [`begin`](Self::begin) ended.
    #[inline]
    pub(crate) fn end(&self) {
        self.in_flight.decrement(1.0);
    }

    pub(crate) fn class(&self, class: usize) -> &(Counter, Histogram) {
        self.classes[class].get_or_init(|| {
            let status = SharedString::const_str(STATUS[class]);
            (
                metrics::counter!(
                    names::HTTP_REQUESTS_TOTAL.name,
                    "method" => self.method.clone(),
                    "route" => self.route.clone(),
                    "status" => status.clone(),
                ),
                metrics::histogram!(
                    names::HTTP_REQUEST_DURATION_SECONDS.name,
                    "method" => self.method.clone(),
                    "route" => self.route.clone(),
                    "status" => status,
                ),
            )
        })
    }
}
