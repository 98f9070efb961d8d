//! RFC 9111 §4.3: stale (and `no-cache`) responses with a validator revalidated with a
//! conditional request; a `304` updates the stored headers and is served from the store, a
//! `200` replaces the entry; the client's own conditionals answered from the store.

use std::time::Duration;

use futures_util::future::join_all;
use tower_scale_cache::{Cache, RedisStore, ResponseCacheConfig, ResponseCacheLayer};

use super::*;

/// The standards preset (revalidation on), with `cache`.
fn standards(cache: &Cache) -> ResponseCacheLayer {
    ResponseCacheLayer::from_config(cache.clone(), &ResponseCacheConfig::standards()).unwrap()
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_and_a_304_refreshes_its_headers() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v1\""),
                ("x-version", "1"),
            ],
            "body one",
        );
        let app = origin.behind(standards(cache));
        let uri = format!("/reval/{name}");
        get(&app, &uri, &[]).await;
        s.clock.advance(Duration::from_secs(11));
        origin.answer(
            304,
            &[
                ("cache-control", "max-age=20"),
                ("etag", "\"v1\""),
                ("x-version", "2"),
            ],
            "",
        );
        let r = get(&app, &uri, &[]).await;
        let seen = origin.last_request();
        assert_eq!(seen["if-none-match"], "\"v1\"", "{name}: conditional");
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.text(), "body one", "{name}: the stored body");
        assert_eq!(r.headers["x-version"], "2", "{name}: updated header");
        assert_eq!(
            r.cache_status(),
            "tower-scale; fwd=stale; fwd-status=304; stored",
            "{name}"
        );
        // Fresh again for the 304's 20 s, with the updated headers, from the store.
        s.clock.advance(Duration::from_secs(15));
        let r = get(&app, &uri, &[]).await;
        assert!(hit(&r), "{name}: {}", r.cache_status());
        assert_eq!(
            (r.text(), &r.headers["x-version"]),
            ("body one", &HeaderValue::from_static("2"))
        );
        assert_eq!(origin.calls(), 2, "{name}");
        // Stale again, and the origin has a new version: a 200 replaces the entry.
        s.clock.advance(Duration::from_secs(10));
        origin.answer(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v2\"")],
            "body two",
        );
        let r = get(&app, &uri, &[]).await;
        assert_eq!(r.text(), "body two", "{name}");
        assert!(hit(&get(&app, &uri, &[]).await), "{name}");
        assert_eq!(origin.calls(), 3, "{name}");
    }
}

#[tokio::test]
async fn no_cache_and_last_modified_revalidate_on_every_use() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let modified = date(&s.clock, -3600);
        let origin = Origin::new(
            &[("cache-control", "no-cache"), ("last-modified", &modified)],
            "doc",
        );
        let app = origin.behind(standards(cache));
        let uri = format!("/no-cache/{name}");
        assert_eq!(
            get(&app, &uri, &[]).await.cache_status(),
            "tower-scale; fwd=uri-miss; stored"
        );
        origin.answer(304, &[], "");
        for n in 2..4 {
            let r = get(&app, &uri, &[]).await;
            assert_eq!(r.text(), "doc", "{name}");
            assert_eq!(
                origin.last_request()["if-modified-since"],
                modified.as_str(),
                "{name}"
            );
            assert_eq!(origin.calls(), n, "{name}: every use goes to the origin");
        }
    }
}

#[tokio::test]
async fn must_revalidate_is_never_served_stale_without_the_origin() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(
            &[
                (
                    "cache-control",
                    "max-age=2, must-revalidate, stale-if-error=60",
                ),
                ("etag", "\"a\""),
            ],
            "x",
        );
        let app = origin.behind(standards(cache));
        let uri = format!("/must/{name}");
        get(&app, &uri, &[]).await;
        s.clock.advance(Duration::from_secs(3));
        origin.answer(503, &[], "down");
        let r = get(&app, &uri, &[]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(origin.last_request()["if-none-match"], "\"a\"", "{name}");
    }
}

#[tokio::test]
async fn client_conditionals_are_answered_from_the_store() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let modified = date(&s.clock, -60);
        let origin = Origin::new(
            &[
                ("cache-control", "max-age=600"),
                ("etag", "W/\"e\""),
                ("last-modified", &modified),
            ],
            "x",
        );
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/cond/{name}");
        get(&app, &uri, &[]).await;
        let later = date(&s.clock, 0);
        let earlier = date(&s.clock, -120);
        for (headers, status) in [
            (vec![("if-none-match", "\"e\"")], StatusCode::NOT_MODIFIED),
            (vec![("if-none-match", "\"other\"")], StatusCode::OK),
            (
                vec![("if-modified-since", modified.as_str())],
                StatusCode::NOT_MODIFIED,
            ),
            (
                vec![("if-modified-since", later.as_str())],
                StatusCode::NOT_MODIFIED,
            ),
            (
                vec![("if-modified-since", earlier.as_str())],
                StatusCode::OK,
            ),
            // If-None-Match wins over If-Modified-Since.
            (
                vec![
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", later.as_str()),
                ],
                StatusCode::OK,
            ),
        ] {
            let r = get(&app, &uri, &headers).await;
            assert_eq!(r.status, status, "{name} {headers:?}");
            assert!(hit(&r), "{name}");
        }
        assert_eq!(origin.calls(), 1, "{name}");
        // Without Last-Modified and Date, the time it was stored counts.
        let bare = Origin::new(&[("cache-control", "max-age=600")], "x");
        let app = bare.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/cond-bare/{name}");
        get(&app, &uri, &[]).await;
        let now = date(&s.clock, 0);
        let r = get(&app, &uri, &[("if-modified-since", now.as_str())]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{name}");
    }
}

/// An origin that answers a conditional request with `304` after a pause, counting those.
fn slow_validating_origin(revalidations: Arc<AtomicUsize>) -> Router<()> {
    Router::new().fallback(any(move |req: Request<Body>| {
        let revalidations = revalidations.clone();
        async move {
            let conditional = req.headers().contains_key("if-none-match");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut res = axum::response::Response::new(Body::from("payload"));
            res.headers_mut()
                .insert("cache-control", HeaderValue::from_static("max-age=10"));
            res.headers_mut()
                .insert("etag", HeaderValue::from_static("\"p\""));
            if conditional {
                revalidations.fetch_add(1, Ordering::SeqCst);
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                *res.body_mut() = Body::empty();
            }
            res
        }
    }))
}

/// 1,000 concurrent requests for a stale entry, split over two instances (each its own cache
/// handle, local tier and cross-instance lock on the Redis store that `backend` makes): one
/// revalidation, every client served the payload.
async fn a_thousand_requests_revalidate_once(
    backend: impl Fn() -> tower_scale_redis::RedisBackend,
) {
    let clock = ManualClock::new(support::T0);
    let revalidations = Arc::new(AtomicUsize::new(0));
    let instance = || {
        let cache = Cache::builder(RedisStore::new(backend()))
            .clock(clock.clone())
            .l1(1 << 20)
            .lock(support::patient_lock())
            .build()
            .unwrap();
        slow_validating_origin(revalidations.clone()).layer(standards(&cache))
    };
    let (a, b) = (instance(), instance());
    assert_eq!(get(&a, "/hot", &[]).await.text(), "payload");
    clock.advance(Duration::from_secs(11));
    let replies = join_all((0..1000).map(|i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { get(&app, "/hot", &[]).await }
    }))
    .await;
    for r in &replies {
        assert_eq!((r.status, r.text()), (StatusCode::OK, "payload"));
    }
    assert_eq!(
        revalidations.load(Ordering::SeqCst),
        1,
        "one revalidation for 1,000 requests"
    );
}

#[tokio::test]
async fn a_thousand_requests_for_a_stale_entry_revalidate_once_across_two_instances() {
    let server = tower_scale_testkit::RedisServer::start();
    a_thousand_requests_revalidate_once(|| support::patient_backend(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_for_a_stale_entry_revalidate_once_across_two_instances_on_redis_cluster()
 {
    let cluster = tower_scale_testkit::RedisCluster::start();
    a_thousand_requests_revalidate_once(|| support::patient_cluster_backend(&cluster)).await;
}
