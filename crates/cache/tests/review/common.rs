//! Helpers of the review tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Method, Request};

use tower_scale_cache::{Cache, ManualClock, MemoryStore, RedisStore};
use tower_scale_testkit::RedisServer;

use crate::support::patient_backend;

/// The manual clock's start.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// The stores the tests run against: the memory store and a real redis-server.
pub(crate) struct Stores {
    /// Stops the server when dropped.
    pub(crate) _server: RedisServer,
    pub(crate) clock: ManualClock,
    pub(crate) caches: Vec<(&'static str, Cache)>,
}

/// A memory cache and a Redis cache (on a fresh server), both on one manual clock.
pub(crate) fn stores() -> Stores {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let memory = Cache::builder(MemoryStore::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    let redis = Cache::builder(RedisStore::new(patient_backend(&server)))
        .clock(clock.clone())
        .build()
        .unwrap();
    Stores {
        _server: server,
        clock,
        caches: vec![("memory", memory), ("redis", redis)],
    }
}

/// A call counter shared with a handler.
pub(crate) fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Adds one to `calls`, returning the new count.
pub(crate) fn count(calls: &AtomicUsize) -> usize {
    calls.fetch_add(1, Ordering::SeqCst) + 1
}

/// The count.
pub(crate) fn calls(calls: &AtomicUsize) -> usize {
    calls.load(Ordering::SeqCst)
}

/// A `method` request for `uri` with `headers`.
pub(crate) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Body::empty()).unwrap()
}
