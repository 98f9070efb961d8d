//! The response cache layer against real Redis: every storability rule, freshness with a
//! manual clock, stale-while-revalidate, stale-if-error, 304, Vary, tags, unsafe-method
//! purges, stampedes (per instance and across instances), the local tier's purge guarantee,
//! and Redis paused mid-run.

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod compression;
mod entries;
mod failure;
mod local_tier;
mod purge;
mod revalidation;
mod rules;
mod stampede;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::future::join_all;
use support::{Interleaved, Moment, Other, T0, backend, counter, eventually, fetch, send};
use tower_scale_cache::{
    Cache, CacheKey, CacheTags, LockConfig, MakeCacheKey, ManualClock, MemoryStore, RedisStore,
    ResponseCacheLayer, Store,
};
use tower_scale_testkit::{RedisCluster, RedisServer};

/// A Redis cache with a manual clock.
fn cache(server: &RedisServer, clock: &ManualClock) -> Cache {
    Cache::builder(RedisStore::new(backend(server)))
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A Redis server, a manual clock at `T0`, and [`counting_app`] with the default layer on a
/// cache over both; `calls` counts the origin's calls.
struct Setup {
    /// Stops the server when dropped: bind it (`server: _server`) for the test's length.
    server: RedisServer,
    clock: ManualClock,
    calls: Arc<AtomicUsize>,
    app: Router,
}

fn setup(cc: &'static str) -> Setup {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        calls.clone(),
        cc,
    );
    Setup {
        server,
        clock,
        calls,
        app,
    }
}

/// `/item/{id}` (and a `POST` answering `created`): counts `GET` calls and answers `item <id> #<call>` with the given Cache-Control.
fn counting_app<K: MakeCacheKey>(
    layer: ResponseCacheLayer<K>,
    calls: Arc<AtomicUsize>,
    cc: &'static str,
) -> Router {
    Router::new()
        .route(
            "/item/{id}",
            get(move |Path(id): Path<String>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { ([(header::CACHE_CONTROL, cc)], format!("item {id} #{n}")) }
            })
            .post(|| async { "created" }),
        )
        .layer(layer)
}

/// `path` answering `body` with `headers`, counting calls.
fn fixed_route(
    path: &str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    calls: &Arc<AtomicUsize>,
) -> Router {
    let calls = calls.clone();
    Router::new().route(
        path,
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move {
                let mut h = HeaderMap::new();
                for (n, v) in headers {
                    h.append(
                        header::HeaderName::from_static(n),
                        HeaderValue::from_static(v),
                    );
                }
                (h, body)
            }
        }),
    )
}

/// A slow origin: `/slow` sleeps, counts, and answers a fixed body.
fn slow_app(layer: ResponseCacheLayer, calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || {
                let calls = calls.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    calls.fetch_add(1, Ordering::SeqCst);
                    ([(header::CACHE_CONTROL, "max-age=60")], "slow")
                }
            }),
        )
        .layer(layer)
}

/// Every header of a response, sorted (a name once per value), to compare whole sets.
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

fn expected_list(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    list.sort();
    list
}
