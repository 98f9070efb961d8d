//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_cache::{
    BoxFuture, Cache, LockConfig, ManualClock, MemoryStore, RedisStore, Store, StoreError,
};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer};

/// A backend on `server` with a short command timeout.
pub fn backend(server: &RedisServer) -> RedisBackend {
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(250);
    RedisBackend::new(config).unwrap()
}

/// A backend whose commands may take long: the stampede tests measure coalescing, not
/// timeouts, on a small shared machine.
pub fn patient_backend(server: &RedisServer) -> RedisBackend {
    patient(RedisConfig::new(server.url()))
}

/// A backend on `cluster` whose commands may take long (see [`patient_backend`]).
pub fn patient_cluster_backend(cluster: &RedisCluster) -> RedisBackend {
    patient(RedisConfig::cluster(cluster.urls()))
}

/// `config` with no command timeout short enough to fire and no breaker.
fn patient(mut config: RedisConfig) -> RedisBackend {
    // Tests counting origin calls must not see a timeout (which fails open to the origin)
    // just because the machine is overloaded.
    config.command_timeout = Duration::from_secs(60);
    config.breaker_enabled = false;
    RedisBackend::new(config).unwrap()
}

/// The cross-instance lock with generous bounds: on an overloaded machine the leader's fetch
/// and store may take seconds; the stampede tests are about coalescing, not the lock's expiry.
pub fn patient_lock() -> LockConfig {
    let mut lock = LockConfig::default();
    lock.ttl = Duration::from_secs(120);
    lock.wait = Duration::from_secs(120);
    lock
}

/// A backend on the local cluster.
pub fn cluster_backend(cluster: &RedisCluster) -> RedisBackend {
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = Duration::from_millis(500);
    RedisBackend::new(config).unwrap()
}

/// Calls per command of `nodes` since their last `CONFIG RESETSTAT`, summed over the nodes
/// and sorted by name, without the kit's own `INFO`/`CONFIG` calls and the cluster client's
/// housekeeping.
pub fn redis_calls(nodes: &[RedisServer]) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = Vec::new();
    for (name, n) in nodes.iter().flat_map(RedisServer::command_calls) {
        if ["info", "ping", "readonly"].contains(&name.as_str())
            || ["config", "cluster", "client", "hello"]
                .iter()
                .any(|p| name.starts_with(p))
        {
            continue;
        }
        match calls.iter_mut().find(|(c, _)| *c == name) {
            Some((_, total)) => *total += n,
            None => calls.push((name, n)),
        }
    }
    calls.sort();
    calls
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .map_or("", |v| v.to_str().unwrap())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn fetch(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// Waits (bounded) until `cond` holds; panics after 10 s. Not a timing assertion: the
/// condition is what the test checks, the bound only stops a hung test.
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    tower_scale_testkit::eventually(what, Duration::from_secs(10), cond).await;
}

/// The manual clock's start.
pub const T0: u64 = 1_700_000_000_000;

/// The stores the tests run against: the memory store and a real redis-server.
pub struct Stores {
    /// Stops the server when dropped.
    pub _server: RedisServer,
    pub clock: ManualClock,
    pub caches: Vec<(&'static str, Cache)>,
}

/// A memory cache and a Redis cache (on a fresh server), both on one manual clock.
pub fn stores() -> Stores {
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
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Adds one to `calls`, returning the new count.
pub fn count(calls: &AtomicUsize) -> usize {
    calls.fetch_add(1, Ordering::SeqCst) + 1
}

/// The count.
pub fn calls(calls: &AtomicUsize) -> usize {
    calls.load(Ordering::SeqCst)
}

/// A `method` request for `uri` with `headers`.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Body::empty()).unwrap()
}

/// The moment of a caller's miss at which [`Interleaved`] lets another caller run.
#[derive(Debug, PartialEq)]
pub enum Moment {
    /// Between the caller's read (a miss) and its joining the in-process flight.
    AfterRead,
    /// Between its becoming the flight's leader and its `try_lock`.
    BeforeLock,
}

/// What the other caller of an [`Interleaved`] store runs to the end.
pub type Other = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A store on which, once, another caller (on this cache, or another instance on the same
/// shared store) runs a whole request or fetch of the same key (origin, store, unlock, end
/// of its flight) at one moment of this caller's miss: the windows of a miss, made
/// deterministic. `other` is set once the caches exist.
pub struct Interleaved<S> {
    inner: S,
    at: Moment,
    other: Arc<OnceLock<Other>>,
    done: AtomicBool,
}

impl<S> Interleaved<S> {
    pub fn new(inner: S, at: Moment, other: &Arc<OnceLock<Other>>) -> Self {
        Self {
            inner,
            at,
            other: Arc::clone(other),
            done: false.into(),
        }
    }

    /// At `now`, the first time, the other caller runs to the end.
    async fn other_finishes(&self, now: Moment) {
        if now == self.at && !self.done.swap(true, Ordering::SeqCst) {
            let other = self.other.get().expect("the other caller is set");
            other().await;
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Interleaved<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleaved")
            .field("inner", &self.inner)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Store for Interleaved<S> {
    fn get<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let read = self.inner.get(group, field).await;
            self.other_finishes(Moment::AfterRead).await;
            read
        })
    }

    fn put<'a>(
        &'a self,
        group: &'a str,
        fields: &'a [(&'a str, Bytes)],
        ttl: Duration,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.put(group, fields, ttl, tags)
    }

    fn field_count<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, StoreError>> {
        self.inner.field_count(group)
    }

    fn purge<'a>(&'a self, groups: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.purge(groups)
    }

    fn purge_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.inner.purge_tag(tag)
    }

    fn try_lock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            self.other_finishes(Moment::BeforeLock).await;
            self.inner.try_lock(group, field, ttl).await
        })
    }

    fn unlock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.unlock(group, field, token)
    }

    fn redis_backend(&self) -> Option<&RedisBackend> {
        self.inner.redis_backend()
    }
}
